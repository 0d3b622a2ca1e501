"""The digit reader of the built-in captioned digits (genforge data make-captions): the evaluators'
MNIST-format classifier (28x28 gray, 10 classes), trained on the crops that
`data.make_captions.measure` cuts from the dataset's own training images.

Why not an MNIST classifier: `measure` crops a digit that was resized to 18 or 30 pixels, blended
into a coloured canvas at its MNIST intensity and resized back, so its crops are blurrier and
fainter than MNIST digits; an MNIST classifier of 96% test accuracy reads only 74% / 82% of the real
test images (seen / held-out prompts, both digits of a pair right), which caps the digit accuracy
that generated images can show. Trained on the crops themselves, the reader's ceiling is near 1.

The stored attributes give each image's digit(s) and count; `measure` is told the count (as the
agreement numbers are), so the crops are exactly those the agreement reads. Training: Adam with a
one-cycle learning rate and a light random affine augmentation (rotation, scale, shift), seeded.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GenforgeError
from .features import ClassifierNet, Evaluator, save_evaluator


@dataclass
class DigitCrops:
    """The 28x28 crops of every digit of a captioned split, with the image each belongs to."""

    crops: torch.Tensor
    """uint8 (N, 1, 28, 28), MNIST's layout: white digit on black, longer side 20 pixels."""
    labels: torch.Tensor
    """The true digit of each crop (int64, N)."""
    owners: torch.Tensor
    """Index of the image each crop was cut from (int64, N)."""
    heldout: torch.Tensor
    """Per image: whether it holds a held-out digit-colour pair (bool, images)."""


def digit_crops(data) -> DigitCrops:
    """Cut every digit of a captioned split of the built-in set with `measure`; the stored attributes
    give the count and the true digits. Refuses data without those attributes."""
    from ..data.make_captions import measure

    metadata = data.extras.get("metadata") or []
    attributes = [row.get("attributes") if isinstance(row, dict) else None for row in metadata]
    if len(attributes) != len(data) or not all(isinstance(a, dict) and "digits" in a and "count" in a
                                               for a in attributes):
        raise GenforgeError(f"{data.name} has no built-in digit attributes (metadata.jsonl rows with "
                            "\"attributes\": count and digits); the digit reader learns from "
                            "genforge data make-captions output")
    if data.channels != 3:
        raise GenforgeError(f"{data.name} has {data.channels}-channel images; the built-in captioned digits are RGB")
    crops, labels, owners = [], [], []
    pixels = data.images.permute(0, 2, 3, 1).numpy()
    for k, (image, wanted) in enumerate(zip(pixels, attributes)):
        got = measure(image, int(wanted["count"]))
        crops += got["crops"]
        labels += [int(d) for d in wanted["digits"]]
        owners += [k] * len(got["crops"])
    return DigitCrops(torch.from_numpy(np.stack(crops))[:, None], torch.tensor(labels), torch.tensor(owners),
                      torch.tensor([bool(a.get("heldout")) for a in attributes]))


def rendered_crops(source: str, root: str | None, canvas: int, seed: int = 0,
                   limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of every digit of `source`'s train split (mnist-5k or mnist, what make-captions drew
    from), each rendered once small and once large as a single digit on a canvas of the built-in set
    (a random seen colour, position and background) and cut by `measure`: more renderings of the
    training digits, and the digits the training images happen not to use. The test split's digits
    come from the source's test split, so none of them is seen here. `limit`: only the first digits."""
    from ..data import load_dataset
    from ..data.make_captions import BACKGROUNDS, COLOURS, HELD_OUT, POSITIONS, SIZES, measure, render, tile_size
    from ..data.transforms import resize_uint8

    if source not in ("mnist-5k", "mnist"):
        raise GenforgeError(f"--mix-source takes mnist-5k or mnist (the digits make-captions drew from), not {source!r}")
    digits = load_dataset(source, root, "train")
    pixels, labels = digits.images[:limit, 0].numpy(), digits.labels[:limit].tolist()
    tiles = {side: resize_uint8(digits.images[:limit], side)[:, 0].numpy() for side in {tile_size(s, canvas) for s in SIZES}}
    rng = np.random.default_rng([seed, 7])
    crops = []
    for i, digit in enumerate(labels):
        seen = [c for c in COLOURS if (digit, c) not in HELD_OUT]
        for size in SIZES:
            attributes = {"count": 1, "digits": [digit], "colours": [seen[rng.integers(len(seen))]], "sizes": [size],
                          "positions": [POSITIONS[rng.integers(len(POSITIONS))]],
                          "background": list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]}
            crops += measure(render(pixels, tiles, [i], attributes, canvas, rng), 1)["crops"]
    return torch.from_numpy(np.stack(crops))[:, None], torch.tensor(labels).repeat_interleave(len(SIZES))


def random_affine(images: torch.Tensor, generator: torch.Generator, degrees: float = 10.0, scale: float = 0.1,
                  shift: float = 2.0) -> torch.Tensor:
    """Float images (N, C, H, W) each rotated by up to `degrees`, scaled by 1 +- `scale` and shifted
    by up to `shift` pixels, with bilinear sampling and zero (black) fill."""
    n, _, h, w = images.shape
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(degrees)
    factor = 1 + (torch.rand(n, generator=generator) * 2 - 1) * scale
    offset = (torch.rand(n, 2, generator=generator) * 2 - 1) * shift * 2 / torch.tensor([w, h])
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack([torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def _predict(network: ClassifierNet, crops: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    device = next(network.parameters()).device
    network.eval()
    return torch.cat([network(chunk.to(device).float() / 255).argmax(1).cpu() for chunk in crops.split(batch_size)])


def read_accuracy(network: ClassifierNet, split: DigitCrops) -> dict[str, float]:
    """Accuracy of the reader on a split's crops: per crop, and per image (every digit right, as the
    agreement counts it) on all, seen and held-out images."""
    right = _predict(network, split.crops) == split.labels
    per_image = torch.ones(len(split.heldout), dtype=torch.long).scatter_reduce(0, split.owners, right.long(), "amin").bool()
    out = {"crops": float(right.float().mean()), "images": float(per_image.float().mean())}
    for name, select in (("seen", ~split.heldout), ("heldout", split.heldout)):
        out[name] = float(per_image[select].float().mean()) if bool(select.any()) else float("nan")
    return out


def train_digit_reader(data: str, root: str | None = None, out: str | Path | None = None, epochs: int = 15,
                       batch_size: int = 128, lr: float = 2e-3, seed: int = 0, width: int = 16,
                       augment: bool = True, mix_source: str | None = "mnist-5k", mix_root: str | None = None,
                       device: str = "auto", overwrite: bool = False, log=print) -> Evaluator:
    """Train the MNIST-format classifier on the digit crops of `data`'s training images (the built-in
    captioned digits), report its accuracy on the test split's crops (seen and held-out images
    apart), save it to `out` as an evaluator file (28x28, 1 channel, 10 classes). `mix_source`
    (mnist-5k, or mnist with `mix_root`; None: only the set's crops) adds that source's training
    digits rendered as the set renders them (`rendered_crops`)."""
    from ..data import load_dataset
    from ..runtime import resolve_device

    if epochs <= 0 or batch_size <= 0 or lr <= 0:
        raise GenforgeError(f"epochs, batch size and learning rate must be positive, got {epochs}, {batch_size}, {lr}")
    if out is not None and Path(out).exists() and not overwrite:
        raise GenforgeError(f"{out} exists; choose another --out or pass --overwrite")
    torch_device = resolve_device(device)
    start = time.perf_counter()
    train_set = load_dataset(data, root, "train")
    train = digit_crops(train_set)
    try:
        test = digit_crops(load_dataset(data, root, "test"))
    except GenforgeError:
        test = None
    if log:
        log(f"cut {len(train.crops)} training crops"
            + (f" and {len(test.crops)} test crops" if test else " (no test split)")
            + f" in {time.perf_counter() - start:.0f}s")

    images, labels = train.crops, train.labels
    if mix_source:
        extra, extra_labels = rendered_crops(mix_source, mix_root, train_set.image_size, seed)
        images, labels = torch.cat([images, extra]), torch.cat([labels, extra_labels])
        if log:
            log(f"added {len(extra)} crops of {mix_source}'s training digits rendered small and large "
                f"({time.perf_counter() - start:.0f}s)")

    torch.manual_seed(seed)
    network = ClassifierNet(1, 10, width).to(torch_device)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    batch_size = min(batch_size, len(images))
    steps_per_epoch = max(1, len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed + 1)
    images = images.float() / 255
    for epoch in range(epochs):
        network.train()
        order = torch.randperm(len(images), generator=g)
        total = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = random_affine(images[idx], g) if augment else images[idx]
            loss = F.cross_entropy(network(x.to(torch_device)), labels[idx].to(torch_device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        if log:
            line = f"epoch {epoch + 1}/{epochs}  loss {total / steps_per_epoch:.4f}"
            if test is not None:
                line += f"  test crops {read_accuracy(network, test)['crops']:.4f}"
            log(line + f"  {time.perf_counter() - start:.0f}s")
    network.eval()
    scores = read_accuracy(network, test if test is not None else train)
    if log:
        split = "test" if test is not None else "train (no test split)"
        log(f"{split} accuracy: crops {scores['crops']:.4f}; images (every digit right) {scores['images']:.4f}, "
            f"seen {scores['seen']:.4f}, held-out {scores['heldout']:.4f}")
    reader = Evaluator(network.requires_grad_(False), f"{data} digit crops", 28, 1, 10, scores["crops"],
                       class_names=[str(d) for d in range(10)])
    if out is not None:
        reader.sha256 = save_evaluator(reader, out, width)
        reader.path = str(out)
    return reader
