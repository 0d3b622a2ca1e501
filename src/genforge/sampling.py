"""Turning trained networks into pictures: latent batches, generation, grids and PNG files."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn


def latent_batch(n: int, latent_dim: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """n latent vectors from N(0, I), the same for the same seed on every device.

    Drawn with numpy's sequential generator, so the first k rows of latent_batch(n, ...) equal
    latent_batch(k, ...): asking for more samples never changes the ones you already had.
    (torch.randn switches to a vectorised algorithm for larger sizes, which would.)
    """
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal((n, latent_dim), dtype=np.float32)).to(device)


@torch.no_grad()
def recalibrate_batchnorm(generator: nn.Module, latent_dim: int, device: torch.device | str,
                          batches: int = 8, batch_size: int = 128, seed: int = 12345,
                          num_classes: int = 0) -> nn.Module:
    """A copy of `generator` whose batch-norm statistics are re-estimated from its own outputs.

    The averaged (EMA) generator's weights differ from the live one whose running statistics it
    carries; recomputing them on fresh latents (as SWA's update_bn does) keeps eval-mode samples
    consistent with the averaged weights. Deterministic: fixed seed, cumulative averages.
    Conditional generators get every class in turn.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return generator
    model = copy.deepcopy(generator)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the batches below
    model.train()
    for i in range(batches):
        z = latent_batch(batch_size, latent_dim, seed + i, device)
        if num_classes:
            model(z, torch.arange(batch_size, device=z.device) % num_classes)
        else:
            model(z)
    return model.eval()


@torch.no_grad()
def generate_gan(generator: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None,
                 batch_size: int = 500) -> torch.Tensor:
    """Images in [0, 1] from a generator whose outputs are in [-1, 1] (labels for conditional ones)."""
    generator.eval()
    if labels is None:
        out = [generator(chunk).float() for chunk in z.split(batch_size)]
    else:
        out = [generator(c, y).float() for c, y in zip(z.split(batch_size), labels.split(batch_size))]
    return torch.cat(out).add_(1).mul_(0.5).clamp_(0, 1)


@torch.no_grad()
def generate_vae(vae: nn.Module, z: torch.Tensor, reconstruction: str, labels: torch.Tensor | None = None,
                 batch_size: int = 500) -> torch.Tensor:
    """Decoder means in [0, 1]: sigmoid of the Bernoulli logits, or the Gaussian means clamped."""
    vae.eval()
    out = []
    for i, chunk in enumerate(z.split(batch_size)):
        cond = () if labels is None else (labels[i * batch_size:(i + 1) * batch_size],)
        x = vae.decode(chunk, *cond).float()
        out.append(torch.sigmoid(x) if reconstruction == "bernoulli" else x.clamp(0, 1))
    return torch.cat(out)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats to uint8, or uint8 unchanged."""
    if images.dtype == torch.uint8:
        return images.cpu()
    return images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """(N, C, H, W) images ([0, 1] floats or uint8) to one H x W x C uint8 array, nrow per row."""
    images = to_uint8(images)
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid.permute(1, 2, 0).numpy()


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Save an H x W x C uint8 array as PNG (gray for one channel), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode_array = array[..., 0] if array.shape[-1] == 1 else array
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(mode_array).save(tmp, format="PNG")
    tmp.replace(path)
    return path


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    return save_png(make_grid(images, nrow), path)


def save_separate(images: torch.Tensor, folder: str | Path, prefix: str = "sample") -> list[Path]:
    """One PNG per image: folder/sample-00000.png, ..."""
    images = to_uint8(images)
    return [save_png(img.permute(1, 2, 0).numpy(), Path(folder) / f"{prefix}-{i:05d}.png") for i, img in enumerate(images)]


# --- truncation and interpolation -------------------------------------------------------------------

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


def save_gif(images: torch.Tensor, path: str | Path, frame_ms: int = 120, scale: int = 1) -> Path:
    """(N, C, H, W) frames ([0, 1] floats or uint8) as a looping animated GIF, each frame shown
    frame_ms milliseconds, enlarged `scale` times (nearest neighbour)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = []
    for img in to_uint8(images):
        array = img.permute(1, 2, 0).numpy()
        frame = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        if scale > 1:
            frame = frame.resize((frame.width * scale, frame.height * scale), Image.NEAREST)
        frames.append(frame)
    tmp = path.with_name(path.name + ".tmp")
    frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    tmp.replace(path)
    return path
