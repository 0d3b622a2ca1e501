"""DCGAN (Radford, Metz and Chintala 2015, "Unsupervised representation learning with deep
convolutional GANs"), sized for 28x28, 32x32 or 64x64 images with 1 or 3 channels.

The paper's guidelines, section 3: strided convolutions instead of pooling, batch norm in both
networks (not on the generator's output nor the discriminator's input), ReLU in the generator with
tanh at the output, LeakyReLU(0.2) in the discriminator, no fully connected hidden layers, weights
drawn from N(0, 0.02).

The generator starts from a base grid (7x7 for 28x28, else 4x4) and doubles it with 4x4 stride-2
transposed convolutions; the discriminator mirrors it and ends in one logit per image.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import GenforgeError


def base_and_doublings(image_size: int) -> tuple[int, int]:
    """28 = 7 * 2^2; 32 = 4 * 2^3; 64 = 4 * 2^4. Any 7*2^k or 4*2^k (k >= 1) works."""
    for base in (4, 7):
        k = math.log2(image_size / base) if image_size >= base * 2 else -1
        if k >= 1 and k.is_integer():
            return base, int(k)
    raise GenforgeError(f"dcgan needs an image size of 4*2^k or 7*2^k (28, 32, 64, ...), got {image_size}; "
                        "resize with --set data.image_size=32")


class Generator(nn.Module):
    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int = 64):
        super().__init__()
        self.latent_dim = latent_dim
        base, doublings = base_and_doublings(image_size)
        ch = width * 2 ** (doublings - 1)  # e.g. 64 * 4 = 256 channels at 4x4 for 32x32 images
        layers = [nn.ConvTranspose2d(latent_dim, ch, base, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
        for _ in range(doublings - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class Discriminator(nn.Module):
    def __init__(self, channels: int, image_size: int, width: int = 64):
        super().__init__()
        base, doublings = base_and_doublings(image_size)
        ch = width
        layers = [nn.Conv2d(channels, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for _ in range(doublings - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        layers.append(nn.Conv2d(ch, 1, base, 1, 0, bias=False))  # base x base -> one logit
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions, N(1, 0.02) for batch-norm scales (the paper, section 4)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build(cfg: ModelConfig) -> dict[str, nn.Module]:
    return {"generator": Generator(cfg.latent_dim, cfg.channels, cfg.image_size, cfg.width),
            "discriminator": Discriminator(cfg.channels, cfg.image_size, cfg.width)}
