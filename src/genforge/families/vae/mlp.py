"""The article's dense VAE (Kingma and Welling 2014, "Auto-encoding variational Bayes"), and its
class-conditional version (Sohn et al. 2015, "Learning structured output representation using deep
conditional generative models").

Encoder: pixels -> hidden layers -> mean and log-variance of a diagonal Gaussian q(z|x).
Reparameterisation: z = mean + exp(logvar / 2) * eps, eps ~ N(0, I) (the paper's eq. 10), so the
sample is differentiable in the encoder's outputs. Decoder: z -> hidden layers -> one value per
pixel: Bernoulli logits, or Gaussian means, depending on the reconstruction loss.

Conditional (num_classes > 0): the label's one-hot vector is appended to the encoder's input and
to z, so q(z|x, y) and p(x|z, y); sampling a class is decoding N(0, I) noise with that label.
With num_classes = 0 the layers are exactly the unconditional ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...config import ModelConfig
from ...errors import GenforgeError

# Floor of a learned per-pixel decoder log-variance. MNIST's border pixels are always 0, so their
# learned variance would shrink without bound and log p(x|z) grow without bound (a continuous
# density on discrete data); 1e-4 is a standard deviation of 0.01, about 2.5 grey levels of 255.
MIN_DECODER_LOGVAR = math.log(1e-4)


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


def check_latent_dim(latent_dim: int) -> None:
    if latent_dim < 1:
        raise GenforgeError(f"model.latent_dim must be at least 1, got {latent_dim}; use e.g. 16")


def append_one_hot(h: torch.Tensor, labels: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """h with the labels' one-hot vectors appended along dim 1 (h unchanged for num_classes 0)."""
    if not num_classes:
        return h
    if labels is None:
        raise GenforgeError(f"this VAE is class-conditional ({num_classes} classes); pass labels")
    return torch.cat([h, F.one_hot(labels.long(), num_classes).to(h.dtype)], dim=1)


class VAE(nn.Module):
    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: int = 512, num_classes: int = 0):
        super().__init__()
        check_latent_dim(latent_dim)
        self.latent_dim = latent_dim
        self.image_shape = image_shape
        self.num_classes = num_classes
        pixels = math.prod(image_shape)
        self.encoder = nn.Sequential(nn.Linear(pixels + num_classes, width), nn.ReLU(),
                                     nn.Linear(width, width // 2), nn.ReLU())
        self.to_mean = nn.Linear(width // 2, latent_dim)
        self.to_logvar = nn.Linear(width // 2, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim + num_classes, width // 2), nn.ReLU(),
                                     nn.Linear(width // 2, width), nn.ReLU(), nn.Linear(width, pixels))
        # Per-pixel log-variance of the Gaussian decoder when vae.decoder_variance=learned; unused
        # (no gradient, never read) by the Bernoulli and fixed-variance decoders.
        self.decoder_logvar = nn.Parameter(torch.zeros(image_shape))

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(append_one_hot(x.flatten(1), labels, self.num_classes))
        return self.to_mean(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(append_one_hot(z, labels, self.num_classes)).view(-1, *self.image_shape)

    def decoder_log_variance(self) -> torch.Tensor:
        """The learned per-pixel log-variance, floored at MIN_DECODER_LOGVAR."""
        return self.decoder_logvar.clamp(min=MIN_DECODER_LOGVAR)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, logvar = self.encode(x, labels)
        return self.decode(reparameterize(mean, logvar), labels), mean, logvar


def build(cfg: ModelConfig) -> dict[str, nn.Module]:
    return {"vae": VAE(cfg.latent_dim, (cfg.channels, cfg.image_size, cfg.image_size), cfg.width, cfg.num_classes)}
