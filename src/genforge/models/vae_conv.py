"""A convolutional VAE: two stride-2 convolutions down, two transposed convolutions up.

Same contract as the dense VAE (encode -> mean, logvar; decode -> per-pixel logits or means), with
convolutions that share weights across positions, which suits images better than dense layers.
Works for any image side divisible by 4 (28 -> 14 -> 7, 32 -> 16 -> 8).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import GenforgeError
from .vae_mlp import reparameterize


class VAE(nn.Module):
    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int = 32, hidden: int = 256):
        super().__init__()
        if image_size % 4:
            raise GenforgeError(f"vae-conv needs an image size divisible by 4, got {image_size}; "
                                "resize with --set data.image_size=32")
        self.latent_dim = latent_dim
        self.grid = image_size // 4
        self.width = width
        flat = 2 * width * self.grid * self.grid
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU())
        self.to_mean = nn.Linear(hidden, latent_dim)
        self.to_logvar = nn.Linear(hidden, latent_dim)
        self.decoder_input = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, flat), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.to_mean(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.decoder_input(z).view(-1, 2 * self.width, self.grid, self.grid)
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, logvar = self.encode(x)
        return self.decode(reparameterize(mean, logvar)), mean, logvar


def build(cfg: ModelConfig) -> dict[str, nn.Module]:
    return {"vae": VAE(cfg.latent_dim, cfg.channels, cfg.image_size, cfg.width)}
