"""DiffAugment (Zhao et al. 2020, "Differentiable augmentation for data-efficient GAN training").

The same random, differentiable transformations are applied to real and to generated images before
the discriminator sees them (section 3 of the paper), so that the discriminator cannot memorise
a small training set while the generator still learns the un-augmented distribution: gradients
flow through the transformations to the generator.

Each operation draws its parameters per image, from `generator` when given (reproducible
under a seed) or else from torch's global RNG on the images' device (which the training
checkpoints, so resuming stays exact). Images are in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


def _rand(n: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """n uniforms in [0, 1), one per image, shaped (n, 1, 1, 1), on x's device."""
    if generator is None:
        return torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype)
    return torch.rand(n, 1, 1, 1, generator=generator, device=generator.device).to(x.device, x.dtype)


def _randint(low: int, high: int, n: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """n integers in [low, high), on x's device."""
    if generator is None:
        return torch.randint(low, high, (n,), device=x.device)
    return torch.randint(low, high, (n,), generator=generator, device=generator.device).to(x.device)


def color(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Brightness + U[-0.5, 0.5), saturation x U[0, 2), contrast x U[0.5, 1.5), per image (the
    paper's 'Color'; saturation does nothing to gray images)."""
    n = x.shape[0]
    x = x + (_rand(n, x, generator) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(n, x, generator) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(n, x, generator) + 0.5) + mean


def translation(x: torch.Tensor, generator: torch.Generator | None = None, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ratio * size pixels in x and in y (integers, the same range both
    ways), filling the uncovered border with zeros (the paper's 'Translation', 1/8 of the size)."""
    n, _, h, w = x.shape
    max_y, max_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shift_y = _randint(-max_y, max_y + 1, n, x, generator).view(n, 1, 1)
    shift_x = _randint(-max_x, max_x + 1, n, x, generator).view(n, 1, 1)
    # Output pixel (i, j) reads input pixel (i - shift_y, j - shift_x) of the image padded by one
    # ring of zeros; indices that fall outside are clamped onto that ring.
    rows = (torch.arange(h, device=x.device).view(1, h, 1) - shift_y + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) - shift_x + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, generator: torch.Generator | None = None, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of side ratio * size per image at a random centre (DeVries and Taylor 2017;
    the paper's 'Cutout', half the image size); the square may be cut off by the border."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    centre_y = _randint(0, h + (1 - size_y % 2), n, x, generator).view(n, 1, 1)
    centre_x = _randint(0, w + (1 - size_x % 2), n, x, generator).view(n, 1, 1)
    top, left = centre_y - size_y // 2, centre_x - size_x // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)
    return x * (~inside).unsqueeze(1).to(x.dtype)


OPERATIONS: dict[str, Callable[..., torch.Tensor]] = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(policy: str | Sequence[str]) -> list[str]:
    """'color,translation' -> ['color', 'translation']; unknown names are a ValueError."""
    names = [p.strip() for p in policy.split(",")] if isinstance(policy, str) else list(policy)
    names = [p for p in names if p]
    unknown = [p for p in names if p not in OPERATIONS]
    if unknown:
        raise ValueError(f"unknown DiffAugment operation(s) {unknown}; known: {', '.join(OPERATIONS)}")
    return names


def diff_augment(x: torch.Tensor, policy: str | Sequence[str], generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the policy's operations in the order given (the paper's is color, translation,
    cutout); an empty policy returns x itself."""
    for name in parse_policy(policy):
        x = OPERATIONS[name](x, generator)
    return x
