"""What `genforge data info` reports about a dataset: counts, shape, classes, pixel statistics, preview."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .base import ImageDataset

PREVIEW_PER_CLASS = 8
PREVIEW_MAX_CLASSES = 10  # up to 10 classes: one row each; more: a random draw
PREVIEW_IMAGES = 64


@dataclass
class DatasetSummary:
    name: str
    count: int
    height: int
    width: int
    channels: int
    class_counts: dict[str, int] = field(default_factory=dict)
    """Class name -> number of images; empty for unlabelled data."""
    mean: list[float] = field(default_factory=list)
    """Per-channel pixel mean on the 0..255 scale."""
    std: list[float] = field(default_factory=list)
    """Per-channel pixel standard deviation on the 0..255 scale (population, over all pixels)."""
    skipped: int = 0
    captions: CaptionStats | None = None
    """Caption statistics of captioned data; None otherwise."""


@dataclass
class CaptionStats:
    """What `genforge data info` says about the captions of a captioned dataset."""

    count: int
    per_image_min: int
    per_image_max: int
    words_min: int
    words_mean: float
    words_max: int
    vocabulary: int
    """Distinct words (lower-cased, punctuation split off as the tokenizer does)."""
    top_words: list[tuple[str, int]]
    once: int
    """Words that occur in a single caption."""


def caption_stats(captions: list[list[str]], top: int = 12) -> CaptionStats:
    from collections import Counter

    from ..text.tokenizer import split_words

    lengths, counts = [], Counter()
    for texts in captions:
        for text in texts:
            words = split_words(text)
            lengths.append(len(words))
            counts.update(set(words))
    per_image = [len(t) for t in captions]
    return CaptionStats(len(lengths), min(per_image), max(per_image), min(lengths), sum(lengths) / len(lengths),
                        max(lengths), len(counts), counts.most_common(top), sum(1 for c in counts.values() if c == 1))


def pixel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (N, C, H, W), accumulated in float64 chunk by chunk."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].to(torch.float64)
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
    n = images.numel() / c
    mean = total / n
    std = (squares / n - mean * mean).clamp_min(0).sqrt()
    return mean.tolist(), std.tolist()


def summarize(data: ImageDataset) -> DatasetSummary:
    counts: dict[str, int] = {}
    if data.labels is not None:
        per_class = torch.bincount(data.labels, minlength=data.num_classes).tolist()
        names = data.class_names or [str(i) for i in range(len(per_class))]
        counts = {names[i] if i < len(names) else str(i): n for i, n in enumerate(per_class)}
    mean, std = pixel_stats(data.images)
    return DatasetSummary(data.name, len(data), int(data.images.shape[-2]), int(data.images.shape[-1]),
                          data.channels, counts, mean, std, len(data.extras.get("skipped", [])),
                          caption_stats(data.captions) if data.captions else None)


def preview_indices(data: ImageDataset, seed: int = 0) -> list[int]:
    """The images of a captioned preview: 32 random ones (4 rows of 8), seeded."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(len(data), generator=g)[:32].tolist()


def preview_images(data: ImageDataset, seed: int = 0) -> tuple[torch.Tensor, int]:
    """Images for a grid and its row length: for paired data, rows of inputs (A) each above its targets
    (B); else 8 random images per class, one row each, for up to 10 classes; otherwise 64 random
    images. Seeded by `seed`."""
    g = torch.Generator().manual_seed(seed)
    if data.targets is not None and data.targets.shape[1:] == data.images.shape[1:]:
        # Paired data: 8 random pairs, A (the input) in the first row, B (the target) under it, twice.
        per_row = min(8, len(data))
        idx = torch.randperm(len(data), generator=g)[:2 * per_row if len(data) >= 2 * per_row else per_row]
        rows = [part for k in range(0, len(idx), per_row)
                for part in (data.images[idx[k:k + per_row]], data.targets[idx[k:k + per_row]])]
        return torch.cat(rows), per_row
    if data.labels is not None and 1 < data.num_classes <= PREVIEW_MAX_CLASSES:
        rows = []
        for c in range(data.num_classes):
            idx = torch.nonzero(data.labels == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=g)[:PREVIEW_PER_CLASS]]
            row = data.images[idx]
            if len(row) < PREVIEW_PER_CLASS:  # pad short classes with black so rows stay aligned
                pad = torch.zeros((PREVIEW_PER_CLASS - len(row), *data.images.shape[1:]), dtype=torch.uint8)
                row = torch.cat([row, pad])
            rows.append(row)
        return torch.cat(rows), PREVIEW_PER_CLASS
    idx = torch.randperm(len(data), generator=g)[:PREVIEW_IMAGES]
    return data.images[idx], 8


def save_preview(data: ImageDataset, path: str | Path) -> Path:
    """The preview grid; for captioned data also PATH.txt beside it: the first caption of each image,
    in grid order (row, column)."""
    from ..imageio import atomic_write_text, save_grid

    if data.captions:
        idx = preview_indices(data)
        lines = [f"row {k // 8 + 1} col {k % 8 + 1}: {data.captions[i][0]}" for k, i in enumerate(idx)]
        atomic_write_text(Path(path).with_suffix(".txt"), "\n".join(lines) + "\n")
        return save_grid(data.images[idx], path, nrow=8)
    images, nrow = preview_images(data)
    return save_grid(images, path, nrow=nrow)
