"""Turning a trained VAE decoder into pictures."""

from __future__ import annotations

import torch
from torch import nn


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
