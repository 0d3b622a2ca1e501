"""Turning a trained generator into pictures: batch-norm recalibration for averaged weights, and generation."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ...nn.latents import latent_batch


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
