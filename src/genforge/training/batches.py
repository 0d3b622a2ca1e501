"""Training batches: a function of (seed, step) alone, so resuming needs no sampler state."""

from __future__ import annotations

from pathlib import Path

import torch

from ..conditioning import Batch, Condition
from ..data import ImageDataset
from ..data.transforms import random_crop_flip
from ..errors import GenforgeError


class BatchSampler:
    """The batch for step s is a function of (seed, s) alone: each epoch is a fresh permutation
    seeded by (seed, epoch), drop-last. So resuming at step s needs no sampler state.
    Optional augmentation (random crop, horizontal flip) is drawn from a generator seeded by
    (seed, step) alone, for the same reason.

    `batch_size` is the global batch. With `parts` > 1 (ranks x accumulated micro-batches) the
    global batch of a step is cut into `parts` equal shares and `__call__(step, part)` returns share
    `part`: the images a step trains on do not depend on how many processes share them."""

    def __init__(self, data: ImageDataset, batch_size: int, seed: int, device: torch.device,
                 random_crop: int = 0, hflip: bool = False, channels_last: bool = False, parts: int = 1,
                 on_host: bool = False):
        if batch_size > len(data):
            raise GenforgeError(f"batch size {batch_size} is larger than the dataset ({len(data)} images); "
                                f"use --batch-size {len(data)} or less")
        if batch_size % parts:
            raise GenforgeError(f"batch size {batch_size} does not split into {parts} equal shares (ranks x "
                                f"train.accumulate); use a --batch-size divisible by {parts}")
        self.parts, self.share = parts, batch_size // parts
        # uint8 on the device, converted per batch; or, with on_host, left where they are (e.g.
        # memory-mapped, memory_mapped()) and each batch gathered there and copied to the device.
        place = (lambda t: t) if on_host else (lambda t: t.to(device))
        self.on_host = on_host
        self.images = place(data.images)
        self.labels = place(data.labels) if data.labels is not None else None
        self.targets = place(data.targets) if data.targets is not None else None
        self.captions = data.captions
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.channels_last = channels_last
        self.per_epoch = len(data) // batch_size
        self._epoch, self._order = -1, None
        self.random_crop, self.hflip = random_crop, hflip

    def __call__(self, step: int, part: int = 0) -> Batch:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(len(self.images), generator=g)
            self._order = self._order if self.on_host else self._order.to(self.device)
            self._epoch = epoch
        start = i * self.batch_size + part * self.share
        return self._gather(self._order[start:start + self.share], step, 0, part)

    def extra(self, step: int, k: int, part: int = 0) -> Batch:
        """The k-th additional batch of step s (k >= 1), for steps that need more than one (e.g.
        gan.d_steps): distinct images drawn with a generator seeded by (seed, step, k) alone."""
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 1_009 + k)
        idx = torch.randperm(len(self.images), generator=g)[part * self.share:(part + 1) * self.share]
        return self._gather(idx if self.on_host else idx.to(self.device), step, k, part)

    def _gather(self, idx: torch.Tensor, step: int, k: int = 0, part: int = 0) -> Batch:
        labels = self.labels.index_select(0, idx) if self.labels is not None else None
        images = self.images.index_select(0, idx)
        targets = self.targets.index_select(0, idx) if self.targets is not None else None
        if self.on_host:
            to = lambda t: t.to(self.device, non_blocking=True) if t is not None else None  # noqa: E731
            labels, images, targets = to(labels), to(images), to(targets)
        if self.random_crop or self.hflip:
            seed = (self.seed * 1_000_003 + step) * 2 + 1  # a function of (seed, step, k) only
            seed = seed if k == 0 else seed * 1_009 + k
            g = torch.Generator().manual_seed(seed if part == 0 else seed * 7_919 + part)  # each share its own draws
            size = self.random_crop or images.shape[-1]
            if targets is None:
                images = random_crop_flip(images, size, self.hflip, g)
            else:  # paired data: one crop and flip for both sides
                both = random_crop_flip(torch.cat([images, targets], 1), size, self.hflip, g)
                images, targets = both[:, :images.shape[1]], both[:, images.shape[1]:]
        if self.channels_last:  # reorder the uint8 batch (1 byte a pixel); to_signed/to_unit keep the format
            images = images.contiguous(memory_format=torch.channels_last)
            targets = targets.contiguous(memory_format=torch.channels_last) if targets is not None else None
        extra = lambda j: self.extra(step, j, part)  # noqa: E731
        captions = self._captions(idx, step, k, part) if self.captions is not None else None
        if targets is not None:  # paired data: learn to generate the target given the source image
            return Batch(targets, Condition(labels=labels, image=images), step, extra)
        return Batch(images, Condition(labels=labels), step, extra, captions)

    def _captions(self, idx: torch.Tensor, step: int, k: int, part: int = 0) -> list[str]:
        """One caption per image, drawn among the image's captions by a generator seeded by (seed, step, k);
        the draws are made for the global batch and cut like it, so they do not depend on the number of shares."""
        g = torch.Generator().manual_seed(((self.seed * 1_000_003 + step) * 1_009 + k) * 2 + 3)
        picks = torch.rand(self.batch_size, generator=g)[part * self.share:(part + 1) * self.share].tolist()
        return [texts[int(u * len(texts))] for u, texts in zip(picks, (self.captions[i] for i in idx.tolist()))]


CACHED_ARRAYS = ("images", "targets")


def write_image_cache(data: ImageDataset, folder: Path) -> None:
    """Write `data`'s decoded uint8 images (and paired targets) to folder/images.npy (targets.npy), atomically."""
    import numpy as np

    from ..imageio import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    for name in CACHED_ARRAYS:
        tensor = getattr(data, name)
        if tensor is not None:
            with atomic_path(folder / f"{name}.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, tensor.contiguous().numpy())


def memory_mapped(data: ImageDataset, folder: Path) -> ImageDataset:
    """`data` with its images (and targets) replaced by memory maps of write_image_cache's files.
    Every process of the machine that maps them shares their pages; labels stay in memory."""
    import dataclasses

    import numpy as np

    # copy-on-write ('c'): a writable array for torch, its pages shared until written (never, here)
    mapped = {name: torch.from_numpy(np.load(folder / f"{name}.npy", mmap_mode="c"))
              for name in CACHED_ARRAYS if getattr(data, name) is not None}
    return dataclasses.replace(data, **mapped)
