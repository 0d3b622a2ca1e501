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

from ...config import ModelConfig
from ...errors import GenforgeError
from .layers import ClassHead, ConditionalBatchNorm2d, maybe_spectral_norm


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


class ConditionalGenerator(nn.Module):
    """The DCGAN generator with class-conditional batch norm (de Vries et al. 2017): the label
    picks each layer's scale and shift, as in the generators of Miyato and Koyama 2018. The label
    is also appended to z as a one-hot vector (Mirza and Osindero 2014), which makes the class
    take hold within the first few hundred steps; batch norm alone is slow to condition this
    small, shallow network."""

    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int, num_classes: int):
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        base, doublings = base_and_doublings(image_size)
        ch = width * 2 ** (doublings - 1)
        self.convs = nn.ModuleList([nn.ConvTranspose2d(latent_dim + num_classes, ch, base, 1, 0, bias=False)])
        self.norms = nn.ModuleList([ConditionalBatchNorm2d(ch, num_classes)])
        for _ in range(doublings - 1):
            self.convs.append(nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False))
            self.norms.append(ConditionalBatchNorm2d(ch // 2, num_classes))
            ch //= 2
        self.to_image = nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False)
        init_weights(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        one_hot = torch.nn.functional.one_hot(labels, self.num_classes).to(z.dtype)
        h = torch.cat([z, one_hot], 1).view(z.shape[0], -1, 1, 1)
        for conv, norm in zip(self.convs, self.norms):
            h = torch.relu(norm(conv(h), labels))
        return torch.tanh(self.to_image(h))


class Discriminator(nn.Module):
    """DCGAN's discriminator; with `spectral_norm`, every weight is spectrally normalised and batch
    norm is left out (Miyato et al. 2018). With `num_classes`, a ClassHead on the flattened last
    features adds a projection term and/or an auxiliary classifier."""

    def __init__(self, channels: int, image_size: int, width: int = 64, num_classes: int = 0,
                 spectral_norm: bool = False, class_head: str = "projection"):
        super().__init__()
        base, doublings = base_and_doublings(image_size)
        bias = spectral_norm  # a bias is redundant only in front of batch norm
        ch = width
        layers = [nn.Conv2d(channels, ch, 4, 2, 1, bias=bias), nn.LeakyReLU(0.2, True)]
        for _ in range(doublings - 1):
            layers.append(nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=bias))
            if not spectral_norm:
                layers.append(nn.BatchNorm2d(ch * 2))
            layers.append(nn.LeakyReLU(0.2, True))
            ch *= 2
        layers.append(nn.Conv2d(ch, 1, base, 1, 0, bias=bias))  # base x base -> one logit
        self.net = nn.Sequential(*layers)
        init_weights(self)  # before spectral norm, which turns .weight into a computed value
        for layer in self.net:
            if isinstance(layer, nn.Conv2d):
                maybe_spectral_norm(layer, spectral_norm)
        self.class_head = ClassHead(ch * base * base, num_classes, class_head, spectral_norm) if num_classes else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, return_class_logits: bool = False):
        """Logits (N,); with return_class_logits (acgan heads) also class logits (N, num_classes)."""
        if self.class_head is None:
            return self.net(x).flatten()
        features = self.net[:-1](x)
        # phi(x) is the whole last feature map, flattened: the unconditional logit is a linear
        # function of it (the base x base convolution) and so is the class term. Pooling it, as
        # the deeper ResNet does, would leave this shallow network a bag of 10x10 patches, which
        # tells digits apart poorly.
        flat = features.flatten(1)
        logits = self.net[-1](features).flatten() + self.class_head.projection(flat, labels)
        if return_class_logits:
            return logits, self.class_head.class_logits(flat)
        return logits


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions, N(1, 0.02) for batch-norm scales (the paper, section 4)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build(cfg: ModelConfig) -> dict[str, nn.Module]:
    """dcgan (unconditional) or, when cfg.num_classes is set, cdcgan (conditional batch norm in the
    generator, projection / auxiliary classifier in the discriminator)."""
    if cfg.num_classes:
        generator = ConditionalGenerator(cfg.latent_dim, cfg.channels, cfg.image_size, cfg.width, cfg.num_classes)
    else:
        generator = Generator(cfg.latent_dim, cfg.channels, cfg.image_size, cfg.width)
    return {"generator": generator,
            "discriminator": Discriminator(cfg.channels, cfg.image_size, cfg.width, cfg.num_classes,
                                           cfg.spectral_norm, cfg.class_head)}
