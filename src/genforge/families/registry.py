"""The registry of model families and named models, and the functions everything above the
families calls: build networks, load a family's data, check settings, sample.

Adding a family: a folder with its networks, step, sampler and config section (see
docs/design.md), then one line below (and its config module in families/__init__.py).
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path

import torch

from ..conditioning import check_conditions, provided_conditions
from ..config import RunConfig
from ..config import resolve_config as _resolve_config
from ..data import ImageDataset, load_split
from ..errors import GenforgeError
from .contract import Family, ModelSpec, Networks, SampleRequest
from .diffusion.family import DIFFUSION
from .diffusion.family import HINTS as DIFFUSION_HINTS
from .diffusion.family import MODELS as DIFFUSION_MODELS
from .gan.family import GAN
from .gan.family import MODELS as GAN_MODELS
from .pix2pix.family import MODELS as PIX2PIX_MODELS
from .pix2pix.family import PIX2PIX
from .stylegan2.family import HINTS as STYLEGAN2_HINTS
from .stylegan2.family import MODELS as STYLEGAN2_MODELS
from .stylegan2.family import STYLEGAN2
from .vae.family import HINTS as VAE_HINTS
from .vae.family import MODELS as VAE_MODELS
from .vae.family import VAE

FAMILIES: dict[str, Family] = {}
MODELS: dict[str, ModelSpec] = {}
HINTS: dict[str, str] = {}
"""Names that are not models, with what to use instead (e.g. 'iwae' is an objective)."""


def register_family(family: Family, models: dict[str, ModelSpec], hints: dict[str, str] | None = None) -> None:
    """Add a family and its named models (the one line a new family needs)."""
    clash = [name for name in models if name in MODELS and MODELS[name].family is not family]
    if clash:
        raise ValueError(f"model name(s) {clash} already belong to another family")
    FAMILIES[family.name] = family
    MODELS.update(models)
    HINTS.update(hints or {})


def unregister_family(name: str) -> None:
    """Remove a family and its models (tests register toy families and take them away again)."""
    family = FAMILIES.pop(name)
    for model in [m for m, spec in MODELS.items() if spec.family is family]:
        del MODELS[model]


register_family(GAN, GAN_MODELS)
register_family(VAE, VAE_MODELS, VAE_HINTS)
register_family(PIX2PIX, PIX2PIX_MODELS)
register_family(DIFFUSION, DIFFUSION_MODELS, DIFFUSION_HINTS)
register_family(STYLEGAN2, STYLEGAN2_MODELS, STYLEGAN2_HINTS)


def model_spec(name: str) -> ModelSpec:
    if name in HINTS:
        raise GenforgeError(f"unknown model {name!r}; {HINTS[name]}")
    if name not in MODELS:
        raise GenforgeError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def family_of(cfg: RunConfig) -> Family:
    return model_spec(cfg.model.name).family


def check_config(cfg: RunConfig) -> RunConfig:
    """The model exists and its family accepts these settings together; returns cfg."""
    spec = model_spec(cfg.model.name)
    if spec.family.check_config is not None:
        spec.family.check_config(cfg, spec)
    return cfg


def resolve_config(preset: str | None = None, config_file: str | None = None,
                   overrides: list[dict] | None = None) -> RunConfig:
    """defaults < preset < config file < overrides (each a nested dict), checked by the model's family."""
    return check_config(_resolve_config(preset, config_file, overrides))


def build_networks(cfg: RunConfig, folder: str | Path | None = None) -> Networks:
    """The named networks of a resolved config (model.image_size and model.channels set); with the
    `folder` of a run (or export), from the files its family kept there (Family.keep_files)."""
    if not cfg.model.image_size or not cfg.model.channels:
        raise ValueError("model config must be resolved (image_size and channels) before building")
    spec = model_spec(cfg.model.name)
    if folder is not None and spec.family.kept_files is not None:
        cfg = spec.family.kept_files(cfg, Path(folder))
    return spec.build(cfg)


def load_data(cfg: RunConfig, split: str | None = None) -> ImageDataset:
    """A split of the run's dataset, as the model's family sees it (e.g. pairs split into source and target)."""
    data = load_split(cfg.data, split)
    family = family_of(cfg)
    return family.prepare_data(data, cfg) if family.prepare_data is not None else data


def resolve_model(cfg: RunConfig, data: ImageDataset) -> RunConfig:
    """Fill the model settings left at 0 from the model's defaults and the data's shape, after
    matching the conditions the model needs with those the data provides."""
    spec = model_spec(cfg.model.name)
    m = cfg.model
    check_conditions(m.name, spec.conditions, provided_conditions(data.labels, data.targets, data.captions), cfg.data.name)
    crop = cfg.data.random_crop
    if crop > data.image_size:
        raise GenforgeError(f"data.random_crop is {crop} but the images are {data.image_size}x{data.image_size}; "
                            f"load them larger with --set data.image_size={crop + crop // 8} or lower the crop")
    image_size = crop or data.image_size  # the networks see the per-batch crops
    if m.image_size and m.image_size != image_size:
        raise GenforgeError(f"model.image_size is {m.image_size} but the data is {data.image_size}x{data.image_size}; "
                            f"resize the data with --set data.image_size={m.image_size}")
    if m.channels and m.channels != data.channels:
        raise GenforgeError(f"model.channels is {m.channels} but the data has {data.channels}; "
                            f"convert with --set data.channels={m.channels}")
    num_classes = data.num_classes if spec.conditional else 0
    model = dataclasses.replace(m, latent_dim=m.latent_dim or spec.latent_dim, width=m.width or spec.width,
                                image_size=image_size, channels=data.channels, num_classes=num_classes)
    return RunConfig(**{**cfg.sections(), "model": model})


def inference_networks(family: Family, nets: Networks, averaged: Networks, cfg: RunConfig,
                       device: torch.device) -> Networks:
    """The networks to sample with: averaged (EMA) copies in place of the live ones, then the
    family's own preparation (e.g. batch-norm recalibration)."""
    nets = {**nets, **averaged}
    return family.prepare_inference(nets, cfg, device) if family.prepare_inference is not None else nets


@contextmanager
def _modes_kept(nets: Networks):
    """Restore each network's training flag afterwards (samplers switch to eval mode)."""
    modes = {name: net.training for name, net in nets.items()}
    try:
        yield
    finally:
        for name, net in nets.items():
            net.train(modes[name])


@torch.no_grad()
def sample(family: Family, nets: Networks, request: SampleRequest, cfg: RunConfig) -> torch.Tensor:
    """family.sample, in eval mode, restoring each network's training flag afterwards."""
    with _modes_kept(nets):
        return family.sample(nets, request, cfg)


@torch.no_grad()
def preview(family: Family, nets: Networks, request: SampleRequest, cfg: RunConfig) -> tuple[torch.Tensor, int]:
    """The training snapshot's grid images and images per row (default: the samples, 8 per row)."""
    if family.preview is None:
        return sample(family, nets, request, cfg), 8
    with _modes_kept(nets):
        return family.preview(nets, request, cfg)
