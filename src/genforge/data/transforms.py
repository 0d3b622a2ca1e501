"""Preprocessing applied once, when the dataset is loaded (not per batch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images to size x size with antialiased bilinear filtering.

    Antialiasing (a triangle filter widened by the scale factor, as PIL's BILINEAR does) keeps
    downscaling free of aliasing; upscaling is plain bilinear interpolation.
    """
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


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
