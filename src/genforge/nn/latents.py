"""Latent vectors for the families that sample from N(0, I): seeded batches (the same on every
device, prefix-stable), truncated batches and spherical interpolation paths."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def latent_batch(n: int, latent_dim: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """n latent vectors from N(0, I), the same for the same seed on every device.

    Drawn with numpy's sequential generator, so the first k rows of latent_batch(n, ...) equal
    latent_batch(k, ...): asking for more samples never changes the ones you already had.
    (torch.randn switches to a vectorised algorithm for larger sizes, which would.)
    """
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal((n, latent_dim), dtype=np.float32)).to(device)


def truncated_latent_batch(n: int, latent_dim: int, seed: int, truncation: float,
                           device: torch.device | str = "cpu") -> torch.Tensor:
    """n latent vectors from N(0, I) truncated to [-truncation, truncation] per coordinate.

    The truncation trick of BigGAN (Brock et al. 2019, section 3.1): values outside the range
    are redrawn, which trades variety for fidelity. Drawn exactly by inverting the normal CDF
    of a uniform draw between Phi(-t) and Phi(t) (no rejection loop), in float64 on the CPU,
    so the same seed gives the same latents on every device.
    """
    if truncation <= 0:
        raise ValueError("truncation must be positive")
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(n, latent_dim, generator=generator, dtype=torch.float64)
    low = torch.special.ndtr(torch.tensor(-float(truncation), dtype=torch.float64))
    z = torch.special.ndtri(low + u * (1 - 2 * low))
    return z.clamp_(-truncation, truncation).float().to(device)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation (Shoemake 1985), as recommended for Gaussian latents by
    White 2016 ("Sampling generative networks"): sin((1-t) w)/sin(w) a + sin(t w)/sin(w) b, with w
    the angle between a and b. Unlike a straight line, the midpoint of two typical latents keeps
    a typical norm. On the last dimension; a straight line where a and b are (nearly) parallel."""
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    cos = (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1, keepdim=True).clamp(-1, 1)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    parallel = sin.abs() < 1e-6
    safe_sin = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / safe_sin)
    wb = torch.where(parallel, t, torch.sin(t * omega) / safe_sin)
    return wa * a + wb * b


def interpolation_latents(seeds: list[int], steps: int, latent_dim: int, truncation: float | None = None,
                          device: torch.device | str = "cpu") -> torch.Tensor:
    """Latents along the path seed[0] -> seed[1] -> ...: `steps` points per leg, both ends
    included, so leg i's last point is leg i+1's first. Shape ((len(seeds) - 1) * steps, latent_dim)."""
    if len(seeds) < 2 or steps < 2:
        raise ValueError("interpolation needs at least two seeds and two steps")
    ends = [truncated_latent_batch(1, latent_dim, s, truncation) if truncation else latent_batch(1, latent_dim, s)
            for s in seeds]
    t = torch.linspace(0, 1, steps).view(-1, 1)
    legs = [slerp(a.expand(steps, -1), b.expand(steps, -1), t) for a, b in zip(ends, ends[1:])]
    return torch.cat(legs).to(device)
