"""Model registry. Each family lives in its own file and exposes ``build(ModelConfig) -> dict``
of named networks ("generator" and "discriminator" for GANs, "vae" for VAEs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..config import ModelConfig
from ..errors import GenforgeError
from . import dcgan, gan_mlp, pix2pix, resnet_gan, vae_conv, vae_mlp


@dataclass(frozen=True)
class ModelSpec:
    family: str
    """'gan', 'vae' or 'pix2pix': selects the training step and the sampler."""
    build: Callable[[ModelConfig], dict[str, nn.Module]]
    latent_dim: int
    """Default latent size."""
    width: int
    """Default base width."""
    conditional: bool = False
    """Class-conditional: networks take labels (generator(z, labels), discriminator(x, labels),
    vae.encode(x, labels), vae.decode(z, labels)); model.num_classes is taken from the data."""
    options: str = ""
    """Name of a RunConfig section that `build` also takes (build(model_cfg, section)), or ''."""
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
    # Image-to-image: generator(source) -> image, discriminator(source, image); settings in section pix2pix.
    "pix2pix": ModelSpec("pix2pix", pix2pix.build, 0, 64, options="pix2pix"),
    # Class-conditional VAEs (Sohn et al. 2015). beta-VAE and IWAE are objectives, not networks:
    # any VAE trains as one with --set vae.kl_weight=BETA or --set vae.objective=iwae.
    "cvae-mlp": ModelSpec("vae", vae_mlp.build, 16, 512, conditional=True),
    "cvae-conv": ModelSpec("vae", vae_conv.build, 16, 32, conditional=True),
}


# Names of VAE variants that are objectives or shorthands, not networks: the settings that give them.
VARIANT_HINTS = {
    "iwae": "iwae is an objective: use --model vae-mlp or vae-conv with --set vae.objective=iwae",
    "beta-vae": "beta-vae is an objective: use --model vae-mlp or vae-conv with --set vae.kl_weight=BETA",
    "vae": "choose the dense (--model vae-mlp) or the convolutional (--model vae-conv) VAE",
    "cvae": "choose the dense (--model cvae-mlp) or the convolutional (--model cvae-conv) conditional VAE",
}


def model_spec(name: str) -> ModelSpec:
    if name in VARIANT_HINTS:
        raise GenforgeError(f"unknown model {name!r}; {VARIANT_HINTS[name]}")
    if name not in MODELS:
        raise GenforgeError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_networks(cfg: ModelConfig, run_cfg=None) -> dict[str, nn.Module]:
    """Build the networks of a fully resolved ModelConfig (image_size and channels set).

    Families with their own section (ModelSpec.options) get it from `run_cfg` (a RunConfig), or its
    defaults when run_cfg is None.
    """
    if not cfg.image_size or not cfg.channels:
        raise ValueError("model config must be resolved (image_size and channels) before building")
    spec = model_spec(cfg.name)
    if spec.options:
        return spec.build(cfg, getattr(run_cfg, spec.options) if run_cfg is not None else None)
    return spec.build(cfg)
