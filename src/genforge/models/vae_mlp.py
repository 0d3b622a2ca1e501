"""The article's dense VAE (Kingma and Welling 2014, "Auto-encoding variational Bayes").

Encoder: pixels -> hidden layers -> mean and log-variance of a diagonal Gaussian q(z|x).
Reparameterisation: z = mean + exp(logvar / 2) * eps, eps ~ N(0, I) (the paper's eq. 10), so the
sample is differentiable in the encoder's outputs. Decoder: z -> hidden layers -> one value per
pixel: Bernoulli logits, or Gaussian means, depending on the reconstruction loss.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


class VAE(nn.Module):
    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: int = 512):
        super().__init__()
        self.latent_dim = latent_dim
        self.image_shape = image_shape
        pixels = math.prod(image_shape)
        self.encoder = nn.Sequential(nn.Linear(pixels, width), nn.ReLU(), nn.Linear(width, width // 2), nn.ReLU())
        self.to_mean = nn.Linear(width // 2, latent_dim)
        self.to_logvar = nn.Linear(width // 2, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, width // 2), nn.ReLU(), nn.Linear(width // 2, width),
                                     nn.ReLU(), nn.Linear(width, pixels))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x.flatten(1))
        return self.to_mean(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.image_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, logvar = self.encode(x)
        return self.decode(reparameterize(mean, logvar)), mean, logvar


def build(cfg: ModelConfig) -> dict[str, nn.Module]:
    return {"vae": VAE(cfg.latent_dim, (cfg.channels, cfg.image_size, cfg.image_size), cfg.width)}
