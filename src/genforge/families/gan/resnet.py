"""ResNet GAN of the SNGAN kind (Miyato et al. 2018, appendix B.4; Gulrajani et al. 2017, appendix
F) for 28x28, 32x32 or 64x64 images with 1 or 3 channels; class-conditional as in Miyato and
Koyama 2018 (conditional batch norm in the generator, a projection discriminator).

Generator: z -> dense -> base x base grid (4x4, or 7x7 for 28x28) -> one up-sampling residual
block per doubling (BN, ReLU, nearest x2, 3x3 conv, BN, ReLU, 3x3 conv; 1x1 conv shortcut) ->
BN, ReLU, 3x3 conv, tanh. Channels halve at every block: 8w, 4w, 2w, w for 32x32 (w = width).

Discriminator: one down-sampling residual block per doubling (the first without a leading ReLU,
average pooling), one more block at the base size, ReLU, global sum pooling, a dense logit.
Channels double: w, 2w, 4w, 4w for 32x32. No batch norm: it is meant to be used with spectral
normalisation (model.spectral_norm) or a gradient penalty.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...config import ModelConfig
from .dcgan import base_and_doublings
from .layers import ClassHead, ConditionalBatchNorm2d, maybe_spectral_norm


def _init(module: nn.Module) -> None:
    """Xavier-uniform weights as in the SNGAN code: gain sqrt(2) inside residual branches (ReLU
    follows), 1 for the 1x1 shortcuts and dense layers; zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            gain = math.sqrt(2) if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) else 1.0
            nn.init.xavier_uniform_(m.weight, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class UpBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, num_classes: int = 0):
        super().__init__()
        self.conditional = num_classes > 0
        norm = (lambda c: ConditionalBatchNorm2d(c, num_classes)) if num_classes else nn.BatchNorm2d
        self.norm1, self.norm2 = norm(in_ch), norm(out_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cond = (labels,) if self.conditional else ()
        h = F.interpolate(F.relu(self.norm1(x, *cond)), scale_factor=2)
        h = self.conv2(F.relu(self.norm2(self.conv1(h), *cond)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class DownBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if (down or in_ch != out_ch) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The first block sees pixels, which a leading ReLU would clip (Miyato et al.'s "optimized" block).
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.shortcut is None:
            return h + x
        if self.first:  # pool, then project: cheaper and the same as the paper's order
            return h + self.shortcut(F.avg_pool2d(x, 2))
        s = self.shortcut(x)
        return h + (F.avg_pool2d(s, 2) if self.down else s)


class Generator(nn.Module):
    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int = 64, num_classes: int = 0):
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.base, doublings = base_and_doublings(image_size)
        widths = [width * 2 ** (doublings - i) for i in range(doublings + 1)]  # 8w, 4w, 2w, w for 32x32
        self.dense = nn.Linear(latent_dim, widths[0] * self.base * self.base)
        self.blocks = nn.ModuleList(UpBlock(a, b, num_classes) for a, b in zip(widths, widths[1:]))
        self.norm = nn.BatchNorm2d(widths[-1])
        self.to_image = nn.Conv2d(widths[-1], channels, 3, 1, 1)
        _init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.dense(z).view(z.shape[0], -1, self.base, self.base)
        for block in self.blocks:
            h = block(h, labels)
        return torch.tanh(self.to_image(F.relu(self.norm(h))))


class Discriminator(nn.Module):
    def __init__(self, channels: int, image_size: int, width: int = 64, num_classes: int = 0,
                 spectral_norm: bool = False, class_head: str = "projection"):
        super().__init__()
        _, doublings = base_and_doublings(image_size)
        widths = [channels] + [width * 2 ** i for i in range(doublings)]  # C, w, 2w, 4w for 32x32
        blocks = [DownBlock(a, b, down=True, first=(i == 0)) for i, (a, b) in enumerate(zip(widths, widths[1:]))]
        blocks.append(DownBlock(widths[-1], widths[-1], down=False))
        self.blocks = nn.Sequential(*blocks)
        self.dense = nn.Linear(widths[-1], 1)
        _init(self)  # before spectral norm, which turns .weight into a computed value
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                maybe_spectral_norm(m, spectral_norm)
        self.class_head = ClassHead(widths[-1], num_classes, class_head, spectral_norm) if num_classes else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, return_class_logits: bool = False):
        """Logits (N,); with return_class_logits (acgan heads) also class logits (N, num_classes)."""
        pooled = F.relu(self.blocks(x)).sum((2, 3))  # global sum pooling
        logits = self.dense(pooled).flatten()
        if self.class_head is None:
            return logits
        logits = logits + self.class_head.projection(pooled, labels)
        if return_class_logits:
            return logits, self.class_head.class_logits(pooled)
        return logits


def build(cfg: ModelConfig) -> dict[str, nn.Module]:
    """resnet-gan, or resnet-cgan when cfg.num_classes is set."""
    return {"generator": Generator(cfg.latent_dim, cfg.channels, cfg.image_size, cfg.width, cfg.num_classes),
            "discriminator": Discriminator(cfg.channels, cfg.image_size, cfg.width, cfg.num_classes,
                                           cfg.spectral_norm, cfg.class_head)}
