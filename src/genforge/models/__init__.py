"""Model registry. Each family lives in its own file and exposes ``build(ModelConfig) -> dict``
of named networks ("generator" and "discriminator" for GANs, "vae" for VAEs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..config import ModelConfig
from ..errors import GenforgeError
from . import dcgan, gan_mlp, resnet_gan, vae_conv, vae_mlp


@dataclass(frozen=True)
class ModelSpec:
    family: str
    """'gan' or 'vae': selects the training step and the sampler."""
    build: Callable[[ModelConfig], dict[str, nn.Module]]
    latent_dim: int
    """Default latent size."""
    width: int
    """Default base width."""
    conditional: bool = False
    """Class-conditional: networks take labels (generator(z, labels), discriminator(x, labels),
    vae.encode(x, labels), vae.decode(z, labels)); model.num_classes is taken from the data."""
    batchnorm_discriminator: bool = False
    """GANs whose discriminator uses batch norm unless model.spectral_norm is set (then gradient
    penalties, which need each image's own gradient, are refused)."""


MODELS: dict[str, ModelSpec] = {
    "gan-mlp": ModelSpec("gan", gan_mlp.build, 100, 256),
    "dcgan": ModelSpec("gan", dcgan.build, 100, 64, batchnorm_discriminator=True),
    "cdcgan": ModelSpec("gan", dcgan.build, 100, 64, conditional=True, batchnorm_discriminator=True),
    "resnet-gan": ModelSpec("gan", resnet_gan.build, 128, 64),
    "resnet-cgan": ModelSpec("gan", resnet_gan.build, 128, 64, conditional=True),
    "vae-mlp": ModelSpec("vae", vae_mlp.build, 16, 512),
    "vae-conv": ModelSpec("vae", vae_conv.build, 16, 32),
}


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise GenforgeError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_networks(cfg: ModelConfig) -> dict[str, nn.Module]:
    """Build the networks of a fully resolved ModelConfig (image_size and channels set)."""
    if not cfg.image_size or not cfg.channels:
        raise ValueError("model config must be resolved (image_size and channels) before building")
    return model_spec(cfg.name).build(cfg)
