"""Blocks shared by several GAN families: spectral normalisation as a switch, and conditional
batch norm."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def maybe_spectral_norm(module: nn.Module, enabled: bool) -> nn.Module:
    """`module` with spectral normalisation of its weight (Miyato et al. 2018) when `enabled`.

    The weight is divided by its largest singular value, estimated by one power iteration per
    forward pass in training mode, which bounds the layer's Lipschitz constant by about 1.
    """
    return spectral_norm(module) if enabled else module


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift are looked up per class (de Vries et al. 2017; used by
    Miyato and Koyama 2018 in the generator): y = gamma[label] * BN(x) + beta[label].

    Scales start at 1 and shifts at 0, so an untrained layer equals plain batch norm.
    """

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_features, affine=False)
        self.scale = nn.Embedding(num_classes, num_features)
        self.shift = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scale = self.scale(labels)[:, :, None, None]
        shift = self.shift(labels)[:, :, None, None]
        return self.norm(x) * scale + shift


class ClassHead(nn.Module):
    """The class-conditional part of a discriminator, on its pooled features h (N, features).

    'projection' (Miyato and Koyama 2018, eq. 3): adds <embed(y), h> to the adversarial logit.
    'acgan' (Odena et al. 2017): a linear classifier of h whose cross-entropy the step adds to
    both networks' losses. 'both': the two together.
    """

    def __init__(self, features: int, num_classes: int, kind: str = "projection", spectral_norm: bool = False):
        super().__init__()
        self.embed = self.classifier = None
        if kind in ("projection", "both"):
            embed = nn.Embedding(num_classes, features)
            nn.init.xavier_uniform_(embed.weight)
            self.embed = maybe_spectral_norm(embed, spectral_norm)
        if kind in ("acgan", "both"):
            self.classifier = maybe_spectral_norm(nn.Linear(features, num_classes), spectral_norm)

    def projection(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """<embed(y), h> per image, or 0 without a projection head."""
        if self.embed is None:
            return h.new_zeros(h.shape[0])
        return (self.embed(labels) * h).sum(1)

    def class_logits(self, h: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise ValueError("this discriminator has no auxiliary classifier (model.class_head=projection)")
        return self.classifier(h)
