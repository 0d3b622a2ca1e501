"""Preprocessing: applied once when the dataset is loaded (resize, channels, centre crop), or per batch
(random crop and flip, drawn from a generator seeded by (seed, step) so that resume stays exact)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

RESIZE_CHUNK_VALUES = 2 ** 22
"""Pixel values (N * C * H * W) resized at once: 16 MB as float32. A fixed 4096 images per chunk was
3.2 GB of floats for 256x256 colour pairs, before the float output of the same size."""


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 0) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images to size x size with antialiased bilinear filtering, `chunk`
    images at a time (0: as many as RESIZE_CHUNK_VALUES allows), into one preallocated output.

    Antialiasing (a triangle filter widened by the scale factor, as PIL's BILINEAR does) keeps
    downscaling free of aliasing; upscaling is plain bilinear interpolation.
    """
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    chunk = chunk or max(1, RESIZE_CHUNK_VALUES // max(1, images[0].numel(), images.shape[1] * size * size))
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8, device=images.device)
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + chunk] = x.round_().clamp_(0, 255)
    return out


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert uint8 (N, C, H, W) to 1 channel (ITU-R 601 luma, as PIL's 'L') or 3 (gray repeated)."""
    c = images.shape[1]
    if c == channels:
        return images
    if channels == 3 and c == 1:
        return images.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and c == 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {c} channels to {channels}")


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central size x size window of (N, C, H, W) images (each side at least `size`)."""
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]


def square(images: torch.Tensor) -> torch.Tensor:
    """Centre-crop non-square (N, C, H, W) images to min(H, W) on both sides."""
    return center_crop(images, min(images.shape[-2:]))


def random_crop_flip(images: torch.Tensor, size: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per image, a random size x size window and (if `flip`) a horizontal flip with probability 1/2.

    The offsets and flips are drawn on the CPU from `generator` (so they depend only on its seed,
    whatever the device), then applied on the images' device with one gather. Returns a new tensor.
    """
    n, c, h, w = images.shape
    if size == h == w:  # flip only: a select between the batch and its mirror is cheaper than a gather
        flipped = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
        return torch.where(flipped.to(images.device)[:, None, None, None], images.flip(-1), images)
    top = torch.randint(0, h - size + 1, (n,), generator=generator)
    left = torch.randint(0, w - size + 1, (n,), generator=generator)
    flipped = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    steps = torch.arange(size)
    rows = top[:, None] + steps  # (n, size)
    cols = left[:, None] + torch.where(flipped[:, None], size - 1 - steps, steps)  # (n, size)
    device = images.device
    rows, cols = rows.to(device), cols.to(device)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    return images[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
