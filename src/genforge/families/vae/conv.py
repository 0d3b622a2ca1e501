"""A convolutional VAE: two stride-2 convolutions down, two transposed convolutions up.

Same contract as the dense VAE (encode -> mean, logvar; decode -> per-pixel logits or means), with
convolutions that share weights across positions, which suits images better than dense layers.
Works for any image side divisible by 4 (28 -> 14 -> 7, 32 -> 16 -> 8).

Conditional (num_classes > 0): the label's one-hot vector joins the encoder after the
convolutions (before its dense layer) and joins z at the decoder's input, as in the dense model.
"""

from __future__ import annotations

import torch
from torch import nn

from ...config import ModelConfig
from ...errors import GenforgeError
from .mlp import MIN_DECODER_LOGVAR, append_one_hot, check_latent_dim, reparameterize


class VAE(nn.Module):
    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int = 32, hidden: int = 256,
                 num_classes: int = 0):
        super().__init__()
        check_latent_dim(latent_dim)
        if image_size % 4:
            raise GenforgeError(f"vae-conv needs an image size divisible by 4, got {image_size}; "
                                "resize with --set data.image_size=32")
        self.latent_dim = latent_dim
        self.grid = image_size // 4
        self.width = width
        self.num_classes = num_classes
        flat = 2 * width * self.grid * self.grid
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),
            nn.Flatten())
        self.encoder_dense = nn.Sequential(nn.Linear(flat + num_classes, hidden), nn.ReLU())
        self.to_mean = nn.Linear(hidden, latent_dim)
        self.to_logvar = nn.Linear(hidden, latent_dim)
        self.decoder_input = nn.Sequential(nn.Linear(latent_dim + num_classes, hidden), nn.ReLU(),
                                           nn.Linear(hidden, flat), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1))
        # Per-pixel log-variance of the Gaussian decoder when vae.decoder_variance=learned.
        self.decoder_logvar = nn.Parameter(torch.zeros(channels, image_size, image_size))

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder_dense(append_one_hot(self.encoder(x), labels, self.num_classes))
        return self.to_mean(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.decoder_input(append_one_hot(z, labels, self.num_classes))
        return self.decoder(h.view(-1, 2 * self.width, self.grid, self.grid))

    def decoder_log_variance(self) -> torch.Tensor:
        """The learned per-pixel log-variance, floored at MIN_DECODER_LOGVAR."""
        return self.decoder_logvar.clamp(min=MIN_DECODER_LOGVAR)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, logvar = self.encode(x, labels)
        return self.decode(reparameterize(mean, logvar), labels), mean, logvar


def build(cfg: ModelConfig) -> dict[str, nn.Module]:
    return {"vae": VAE(cfg.latent_dim, cfg.channels, cfg.image_size, cfg.width, num_classes=cfg.num_classes)}
