"""The article's fully connected GAN for 28x28 digits (Goodfellow et al. 2014).

Generator: a latent vector through dense layers to 784 = 28x28 pixels in [-1, 1] (tanh).
Discriminator: 784 -> 1024 -> 512 -> 256 -> 1, returning a logit (no sigmoid: the losses work on
logits for numerical stability).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...config import ModelConfig


class Generator(nn.Module):
    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: int = 256):
        super().__init__()
        self.latent_dim = latent_dim
        self.image_shape = image_shape
        layers, size = [], latent_dim
        for hidden in (width, width * 2, width * 4):  # 256 -> 512 -> 1024, widening towards the pixels
            layers += [nn.Linear(size, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2)]
            size = hidden
        layers += [nn.Linear(size, math.prod(image_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.image_shape)


class Discriminator(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], hidden: tuple[int, ...] = (1024, 512, 256)):
        super().__init__()
        layers, size = [], math.prod(image_shape)
        for h in hidden:
            layers += [nn.Linear(size, h), nn.LeakyReLU(0.2)]
            size = h
        layers.append(nn.Linear(size, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)


def build(cfg: ModelConfig) -> dict[str, nn.Module]:
    shape = (cfg.channels, cfg.image_size, cfg.image_size)
    return {"generator": Generator(cfg.latent_dim, shape, cfg.width), "discriminator": Discriminator(shape)}
