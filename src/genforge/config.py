"""Typed configuration: model, data and training settings, presets, files and overrides.

A run's configuration is resolved once (defaults < preset < config file < command-line flags),
checked in ``__post_init__``, and saved as ``config.yaml`` in the run directory. Resuming compares
the new command's resolved configuration with the saved one.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import GenforgeError

MAX_SEED = 2**32
"""Seeds are in [0, 2**32): numpy's limit, and small enough that the derived per-step seeds fit torch's."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise GenforgeError(message)


@dataclass
class ModelConfig:
    name: str = "dcgan"
    """Model name: one of genforge.families.registry.MODELS (gan-mlp, dcgan, vae-mlp, vae-conv, ...)."""
    latent_dim: int = 0
    """Size of the latent vector z; 0 picks the model's default (100 for GANs, 16 for VAEs)."""
    width: int = 0
    """Base width: channels of the widest conv layer / 8 for conv models, first hidden size for
    dense ones; 0 picks the model's default."""
    image_size: int = 0
    """Image side in pixels; 0 takes it from the data (after data.image_size resizing)."""
    channels: int = 0
    """Image channels (1 or 3); 0 takes them from the data."""
    num_classes: int = 0
    """Number of classes for class-conditional models; 0 for unconditional ones."""
    spectral_norm: bool = False
    """GANs: spectral normalisation (Miyato et al. 2018) of every discriminator weight; the dcgan
    discriminators then drop their batch norm, as in the paper's SN-GANs."""
    class_head: str = "projection"
    """Class-conditional GAN discriminators: 'projection' (Miyato and Koyama 2018), 'acgan' (an
    auxiliary classifier, Odena et al. 2017) or 'both'."""

    def __post_init__(self) -> None:
        check(isinstance(self.spectral_norm, bool),
               f"model.spectral_norm must be true or false, got {self.spectral_norm!r}")
        check(self.class_head in ("projection", "acgan", "both"),
               f"model.class_head must be projection, acgan or both, got {self.class_head!r}")
        check(self.latent_dim >= 0, f"model.latent_dim must be positive, got {self.latent_dim}; use e.g. 100")
        check(self.width >= 0, f"model.width must be positive, got {self.width}; use e.g. 64")
        check(self.image_size >= 0, f"model.image_size must be positive, got {self.image_size}")
        check(self.channels in (0, 1, 3), f"model.channels must be 1 or 3, got {self.channels}")
        check(self.num_classes >= 0, f"model.num_classes must be >= 0, got {self.num_classes}")


@dataclass
class DataConfig:
    name: str = "mnist-5k"
    """Dataset name from genforge.data.DATASETS (mnist-5k is embedded; mnist reads IDX files)."""
    root: str = ""
    """Folder holding the dataset's files; empty means $GENFORGE_DATA/NAME or ~/.cache/genforge/data/NAME."""
    split: str = "train"
    """Which split to train on."""
    image_size: int = 0
    """Resize images to this side (antialiased bilinear) once at load; 0 keeps the native size."""
    channels: int = 0
    """Convert images to 1 (luma) or 3 channels at load; 0 keeps them."""
    skip_bad: bool = False
    """Skip unreadable, non-image or mismatched files with a warning (count and first names) instead
    of failing on the first one."""
    crop: str = "center"
    """How non-square images are made square before resizing to image_size: 'center' crop or 'stretch'."""
    random_crop: int = 0
    """Per-batch augmentation: train on a random random_crop x random_crop window of each image
    (e.g. image_size 36, random_crop 32); 0 turns it off. Drawn from (seed, step): resume stays exact."""
    hflip: bool = False
    """Per-batch augmentation: flip each image horizontally with probability 1/2."""
    workers: int = 0
    """Processes decoding image files at load; 0 picks min(CPU count, 8), 1 decodes in the main process."""
    memory: str = "device"
    """Where the decoded uint8 images live while training: 'device' (the whole set copied to the
    training device once: fastest, but every process holds all of it) or 'mmap' (written once to
    the run's data-cache/images.npy and memory-mapped: the processes of a job share one copy in the
    page cache, only each batch goes to the device; for datasets larger than memory)."""

    def __post_init__(self) -> None:
        check(bool(self.name), "data.name is empty; use e.g. --data mnist-5k")
        check(self.image_size >= 0, f"data.image_size must be >= 0, got {self.image_size}")
        check(self.channels in (0, 1, 3), f"data.channels must be 0, 1 or 3, got {self.channels}")
        for flag in ("skip_bad", "hflip"):
            check(isinstance(getattr(self, flag), bool), f"data.{flag} must be true or false, got {getattr(self, flag)!r}")
        check(self.crop in ("center", "stretch"), f"data.crop must be center or stretch, got {self.crop!r}")
        check(self.random_crop >= 0, f"data.random_crop must be >= 0, got {self.random_crop}")
        check(self.workers >= 0, f"data.workers must be >= 0, got {self.workers}")
        check(self.memory in ("device", "mmap"), f"data.memory must be device or mmap, got {self.memory!r}")
        check(not (self.random_crop and self.image_size and self.random_crop > self.image_size),
               f"data.random_crop ({self.random_crop}) must not exceed data.image_size ({self.image_size})")


@dataclass
class TrainConfig:
    steps: int = 2000
    """Total optimisation steps (generator steps for GANs). Raising it on a finished run trains on."""
    batch_size: int = 64
    """Images per step: the global batch, split evenly over the ranks of a torchrun job and over
    train.accumulate micro-batches, so the same setting trains on the same images however it runs."""
    accumulate: int = 1
    """Gradient accumulation: each rank runs the step on this many micro-batches of
    batch_size / (ranks x accumulate) images and sums their gradients before the optimiser steps."""
    optimizer: str = "adam"
    """'adam' or 'sgd' (plain gradient descent, optional momentum)."""
    lr: float = 2e-4
    """Learning rate (both networks of a GAN unless lr_d is set)."""
    betas: tuple[float, float] = (0.5, 0.999)
    """Adam's beta1 and beta2 (0.5 for GANs as in Radford et al. 2015)."""
    momentum: float = 0.0
    """SGD momentum."""
    seed: int = 0
    """Seed for initialisation, data order and noise; the same seed gives the same run on CPU."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu' or 'cuda'."""
    precision: str = "auto"
    """'auto', 'fp32', 'bf16' or 'fp16' (autocast; fp16 uses a gradient scaler). 'auto' resolves per
    device when training starts (bf16 on CPUs with native bf16 and on CUDA GPUs that support it,
    fp16 on older CUDA GPUs, fp32 otherwise); the resolved value is what config.yaml records."""
    log_every: int = 50
    """Steps between status lines and metrics.jsonl records."""
    sample_every: int = 500
    """Steps between sample grids from a fixed latent batch."""
    checkpoint_every: int = 500
    """Steps between checkpoints (one is also written at the end and on SIGINT/SIGTERM)."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep."""
    channels_last: bool = True
    """Hold convolutional networks and their batches in channels-last (NHWC) memory format, which
    the CPU (oneDNN) and GPU (cuDNN) convolution kernels run fastest in; same results up to rounding."""
    log: str = "jsonl"
    """Where the numbers go besides the console: 'jsonl' (metrics.jsonl) or 'tensorboard' (also
    TensorBoard event files in the run's tensorboard/ folder: losses, metrics, learning rates and
    sample grids; needs the optional extra tensorboard)."""
    compile: bool = False
    """Compile the networks with torch.compile; falls back to eager mode (one log line) where the
    compiler is unavailable. Compiling takes a minute or more at start-up."""

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # YAML gives lists
        check(self.steps > 0, f"train.steps must be positive, got {self.steps}")
        check(self.batch_size > 0, f"train.batch_size must be positive, got {self.batch_size}; use e.g. 64")
        check(isinstance(self.accumulate, int) and self.accumulate > 0,
              f"train.accumulate must be a positive integer, got {self.accumulate!r}; use e.g. 2")
        check(self.batch_size % self.accumulate == 0,
              f"train.batch_size ({self.batch_size}) must be divisible by train.accumulate ({self.accumulate}); "
              f"use e.g. --batch-size {self.batch_size // self.accumulate * self.accumulate or self.accumulate}")
        check(self.optimizer in ("adam", "sgd"), f"train.optimizer must be adam or sgd, got {self.optimizer!r}")
        check(math.isfinite(self.lr) and self.lr > 0,
              f"train.lr must be positive and finite, got {self.lr}; use e.g. 0.0002")
        check(0 <= self.seed < MAX_SEED, f"train.seed must be in [0, 2**32), got {self.seed}; use e.g. 0")
        check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
               f"train.betas must be two numbers in [0, 1), got {list(self.betas)}")
        check(0 <= self.momentum < 1, f"train.momentum must be in [0, 1), got {self.momentum}")
        check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
               f"train.device must be auto, cpu or cuda, got {self.device!r}")
        check(self.precision in ("auto", "fp32", "bf16", "fp16"),
               f"train.precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        for name in ("log_every", "sample_every", "checkpoint_every", "keep_checkpoints"):
            check(getattr(self, name) > 0, f"train.{name} must be positive, got {getattr(self, name)}")
        check(self.log in ("jsonl", "tensorboard"), f"train.log must be jsonl or tensorboard, got {self.log!r}")
        for name in ("channels_last", "compile"):
            check(isinstance(getattr(self, name), bool), f"train.{name} must be true or false, got {getattr(self, name)!r}")


METRIC_NAMES = ("fid", "kid", "is", "pr", "acc", "nll")
"""Every metric genforge eval knows (the one list; metrics.evaluate uses it too)."""


@dataclass
class EvalConfig:
    """Metrics computed during training (genforge train --eval-every N); see docs/evaluation.md."""

    every: int = 0
    """Steps between evaluations during training; 0 turns them off. Numbers go to metrics.jsonl as eval_*."""
    metrics: str = ""
    """Comma-separated metrics (fid, kid, is, pr, acc, nll); empty = fid,kid,is,pr (+ acc when conditional)."""
    n_samples: int = 2000
    """Generated (and at most reference) images per evaluation during training."""
    evaluator: str = ""
    """Evaluator file from genforge train-evaluator; empty = evaluators/DATA.pt when it exists."""
    inception_weights: str = ""
    """pt_inception-2015-12-05-6726825d.pth of pytorch-fid for Inception features instead of the classifier's."""
    seed: int = 0
    """Latent seed of the evaluation samples (the same latents at every evaluation)."""
    nll_k: int = 100
    """Importance samples per test image when nll is among the metrics during training."""

    def __post_init__(self) -> None:
        check(self.every >= 0, f"eval.every must be >= 0 (0 = off), got {self.every}")
        check(self.n_samples >= 2, f"eval.n_samples must be at least 2, got {self.n_samples}; use e.g. 2000")
        check(self.nll_k >= 1, f"eval.nll_k must be positive, got {self.nll_k}")
        check(0 <= self.seed < MAX_SEED, f"eval.seed must be in [0, 2**32), got {self.seed}; use e.g. 0")
        bad = [m for m in (x.strip() for x in self.metrics.split(",")) if m and m not in METRIC_NAMES]
        check(not bad, f"eval.metrics has unknown metric(s) {', '.join(bad)}; choose from {', '.join(METRIC_NAMES)}")


class RunConfig:
    """Everything that defines a run, one attribute per section (cfg.model, cfg.train, cfg.gan, ...).
    Saved as config.yaml in the run directory.

    The core sections (model, data, train, eval) are defined here; each model family registers its
    own section from its folder (`register_section`), so this module names no family.
    """

    def __init__(self, **sections: Any):
        unknown = set(sections) - set(SECTIONS)
        if unknown:
            raise TypeError(f"unknown section(s) {sorted(unknown)}")
        for name, cls in SECTIONS.items():
            value = sections.get(name)
            object.__setattr__(self, name, cls() if value is None else value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("RunConfig is immutable; use genforge.config.replace(cfg, section={...})")

    def sections(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SECTIONS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return "RunConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.sections().items()) + ")"

    def to_dict(self) -> dict[str, Any]:
        d = {name: asdict(section) for name, section in self.sections().items()}
        d["train"]["betas"] = list(d["train"]["betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "configuration") -> RunConfig:
        d = d or {}
        if not isinstance(d, dict):
            raise GenforgeError(f"{source}: expected sections model/data/train, got {type(d).__name__}")
        unknown = set(d) - set(SECTIONS)
        if unknown:
            raise GenforgeError(f"{source}: unknown section(s) {sorted(unknown)}; the sections are {', '.join(SECTIONS)}")
        parts = {}
        for name, sub_cls in SECTIONS.items():
            section = {} if d.get(name) is None else d[name]
            if not isinstance(section, dict):
                raise GenforgeError(f"{source}: section {name} must be a mapping")
            names = {g.name for g in fields(sub_cls)}
            bad = set(section) - names
            if bad:
                raise GenforgeError(f"{source}: unknown key(s) {sorted(bad)} in section {name}; "
                                    f"known keys: {', '.join(sorted(names))}")
            try:
                parts[name] = sub_cls(**{k: _coerce(sub_cls, k, v, source) for k, v in section.items()})
            except TypeError as exc:
                raise GenforgeError(f"{source}: {exc}") from None
        return cls(**parts)


# The sections of a RunConfig, in config.yaml order: the core ones, the families' (registered by
# their folders), then eval.
SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig}


def register_section(name: str, cls: type) -> None:
    """Add a family's config section (a dataclass with defaults for every field) before `eval`."""
    if name in SECTIONS and SECTIONS[name] is not cls:
        raise ValueError(f"config section {name!r} is already registered")
    evaluation = SECTIONS.pop("eval")
    SECTIONS[name] = cls
    SECTIONS["eval"] = evaluation


# Presets: named partial configurations, applied before the config file and the flags.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The demo: about two minutes in all on 2 CPU cores.
    "demo-dcgan": {
        "model": {"name": "dcgan", "width": 32},
        "data": {"name": "mnist-5k"},
        "train": {"steps": 3000, "batch_size": 64, "lr": 2e-4, "log_every": 100, "sample_every": 500,
                  "checkpoint_every": 500},
    },
    # The demo's GAN: the class-conditional cgan-mnist recipe on the embedded digits; its grids have
    # one row per digit. Steps chosen for about a minute on 2 idle cores (docs/benchmarks.md).
    "demo-cgan": {
        "model": {"name": "cdcgan", "width": 32, "class_head": "both"},
        "data": {"name": "mnist-5k"},
        "train": {"steps": 2000, "batch_size": 64, "lr": 2e-4, "betas": [0.5, 0.999], "log_every": 100,
                  "sample_every": 250, "checkpoint_every": 500},
        "gan": {"loss": "non-saturating", "ema_decay": 0.999},
    },
    "demo-vae": {
        "model": {"name": "vae-conv", "latent_dim": 16},
        "data": {"name": "mnist-5k"},
        "train": {"steps": 2000, "batch_size": 64, "lr": 1e-3, "betas": [0.9, 0.999], "log_every": 100,
                  "sample_every": 250, "checkpoint_every": 500},
    },
    "dcgan-mnist": {
        "model": {"name": "dcgan", "width": 64},
        "data": {"name": "mnist"},
        "train": {"steps": 5000, "batch_size": 64, "lr": 2e-4},
    },
    # GAN presets (docs/gan.md lists them with their sources). The CIFAR ones name the cifar10
    # dataset; train on the JPEG zip with --data zip:PATH/train.zip. Step counts are the papers';
    # on a CPU, lower them with --steps.
    "cgan-mnist": {  # class-conditional DCGAN: conditional BN + one-hot z; projection + auxiliary classifier
        "model": {"name": "cdcgan", "width": 32, "class_head": "both"},
        "data": {"name": "mnist"},
        "train": {"steps": 5000, "batch_size": 64, "lr": 2e-4, "betas": [0.5, 0.999]},
        "gan": {"loss": "non-saturating", "ema_decay": 0.999},
    },
    "acgan-mnist": {  # the same generator, an auxiliary classifier instead of the projection
        "model": {"name": "cdcgan", "width": 32, "class_head": "acgan"},
        "data": {"name": "mnist"},
        "train": {"steps": 5000, "batch_size": 64, "lr": 2e-4, "betas": [0.5, 0.999]},
        "gan": {"loss": "non-saturating", "ema_decay": 0.999, "acgan_weight": 1.0},
    },
    "sngan-cifar": {  # Miyato et al. 2018, table 3 setting C: hinge, n_dis 5, lr 2e-4, betas (0, 0.9)
        "model": {"name": "resnet-gan", "width": 32, "latent_dim": 128, "spectral_norm": True},
        "data": {"name": "cifar10"},
        "train": {"steps": 50000, "batch_size": 64, "lr": 2e-4, "betas": [0.0, 0.9]},
        "gan": {"loss": "hinge", "d_steps": 5, "ema_decay": 0.9999},
    },
    "sngan-cifar-diffaug": {  # the same with DiffAugment (Zhao et al. 2020), for less data or compute
        "model": {"name": "resnet-gan", "width": 32, "latent_dim": 128, "spectral_norm": True},
        "data": {"name": "cifar10"},
        "train": {"steps": 50000, "batch_size": 64, "lr": 2e-4, "betas": [0.0, 0.9]},
        "gan": {"loss": "hinge", "d_steps": 5, "ema_decay": 0.9999, "diffaugment": "color,translation,cutout"},
    },
    "wgan-gp-cifar": {  # Gulrajani et al. 2017, appendix F: lambda 10, n_critic 5, lr 2e-4, betas (0, 0.9)
        "model": {"name": "resnet-gan", "width": 32, "latent_dim": 128},
        "data": {"name": "cifar10"},
        "train": {"steps": 100000, "batch_size": 64, "lr": 2e-4, "betas": [0.0, 0.9]},
        "gan": {"loss": "wasserstein", "gradient_penalty": 10.0, "d_steps": 5, "ema_decay": 0.9999},
    },
    "cgan-cifar": {  # Miyato and Koyama 2018: projection discriminator, conditional BN, hinge + SN
        "model": {"name": "resnet-cgan", "width": 32, "latent_dim": 128, "spectral_norm": True},
        "data": {"name": "cifar10"},
        "train": {"steps": 50000, "batch_size": 64, "lr": 2e-4, "betas": [0.0, 0.9]},
        "gan": {"loss": "hinge", "d_steps": 5, "ema_decay": 0.9999},
    },
    "cdcgan-cifar": {  # CPU-sized conditional CIFAR-10: the cgan-mnist recipe at width 64 with flips
        "model": {"name": "cdcgan", "width": 64, "class_head": "both"},
        "data": {"name": "cifar10", "hflip": True},
        "train": {"steps": 9000, "batch_size": 64, "lr": 2e-4, "betas": [0.5, 0.999]},
        "gan": {"loss": "non-saturating", "ema_decay": 0.999, "acgan_weight": 1.0},
    },
    # Diffusion presets (docs/diffusion.md lists them with their sources). EDM objective and Heun
    # sampler (Karras et al. 2022) with DDPM's U-Net (Ho et al. 2020, appendix B) narrowed for CPUs.
    "diffusion-mnist": {  # CPU-sized: width 32, one block per level, attention at 7x7; EMA half-life 10k images
        "model": {"name": "diffusion-unet", "width": 32},
        "data": {"name": "mnist"},
        "train": {"steps": 20000, "batch_size": 64, "lr": 5e-4, "betas": [0.9, 0.999]},
        "diffusion": {"channel_mult": "1,2,2", "res_blocks": 1, "attention_resolutions": "7", "dropout": 0.1,
                      "ema_halflife_images": 10000, "sampler": "heun", "steps": 18},
    },
    "cdiffusion-mnist": {  # the same, class-conditional, condition dropout 0.1 for guidance (Ho and Salimans 2022)
        "model": {"name": "cdiffusion-unet", "width": 32},
        "data": {"name": "mnist"},
        "train": {"steps": 20000, "batch_size": 64, "lr": 5e-4, "betas": [0.9, 0.999]},
        "diffusion": {"channel_mult": "1,2,2", "res_blocks": 1, "attention_resolutions": "7", "dropout": 0.1,
                      "ema_halflife_images": 10000, "cond_dropout": 0.1, "sampler": "heun", "steps": 18},
    },
    # Text-to-image on the built-in captioned digits (genforge data make-captions --out captions):
    # the U-Net cross-attends to a 2-layer text encoder trained with it, the pooled caption joins the
    # noise embedding, and 10% of the captions are dropped for classifier-free guidance. 48x48 RGB,
    # 3 levels (48, 24, 12) with attention at 12x12. No flips: they would swap left and right.
    "tdiffusion-captions": {
        "model": {"name": "tdiffusion-unet", "width": 32},
        "data": {"name": "folder:captions"},
        "train": {"steps": 20000, "batch_size": 32, "lr": 5e-4, "betas": [0.9, 0.999], "sample_every": 1000},
        "diffusion": {"channel_mult": "1,2,2", "res_blocks": 1, "attention_resolutions": "12", "dropout": 0.1,
                      "ema_halflife_images": 10000, "cond_dropout": 0.1, "sampler": "heun", "steps": 18,
                      "guidance": 0.0},
        "text": {"vocab_size": 1000, "context": 24, "width": 64, "layers": 2, "heads": 4},
    },
    # Text-to-image StyleGAN2 on the same captioned digits (docs/text-to-image.md): the pooled caption of
    # a 2-layer text encoder (the one of tdiffusion-captions) enters the mapping network and D's projection,
    # and D also sees real images with mismatched captions as fake (Reed et al. 2016). The 48x48 images
    # are resized to 64x64 (data.image_size; padding would add a border the captions do not describe).
    # No ADA and no flips: flips, rotations, shifts and colour changes would change what the captions say.
    # R1 gamma from ADA's heuristic 0.0002 x 64^2 / 32 (Karras et al. 2020b, appendix D.3).
    "tstylegan2-captions": {
        "model": {"name": "tstylegan2", "width": 16, "latent_dim": 128},
        "data": {"name": "folder:captions", "image_size": 64},
        "train": {"steps": 20000, "batch_size": 32, "lr": 0.0025, "betas": [0.0, 0.99], "sample_every": 1000},
        "stylegan2": {"mapping_layers": 2, "channel_max": 128, "conv_path": "scaled", "r1_gamma": 0.025,
                      "pl_weight": 2.0, "mixing_prob": 0.9, "ema_halflife_images": 10000, "ema_rampup": 0.05,
                      "ada": False},
        "text": {"vocab_size": 1000, "context": 24, "width": 64, "layers": 2, "heads": 4},
    },
    "diffusion-cifar": {  # CPU-sized CIFAR-10 (use --data zip:.../train.zip): width 64, attention at 8x8, flips
        "model": {"name": "diffusion-unet", "width": 64},
        "data": {"name": "cifar10", "hflip": True},
        "train": {"steps": 50000, "batch_size": 64, "lr": 5e-4, "betas": [0.9, 0.999]},
        "diffusion": {"channel_mult": "1,2,2", "res_blocks": 1, "attention_resolutions": "8", "dropout": 0.1,
                      "ema_halflife_images": 50000, "sampler": "heun", "steps": 18},
    },
    # EDM's CIFAR-10 configuration for GPUs (Karras et al. 2022, appendix F.2 and table 7, the DDPM++
    # network at 32x32, unconditional): 128 channels x (2, 2, 2), 4 blocks per level, attention at 16,
    # dropout 0.13, batch 512, Adam lr 1e-3 ramped up over 10M images, EMA half-life 0.5M images,
    # 200M images (390,625 steps), x-flips; Heun with 18 steps (35 NFE). Not reproduced: the paper's
    # non-leaking geometric augmentation and its DDPM++ details (resampling filters, skip scaling).
    "edm-cifar": {
        "model": {"name": "diffusion-unet", "width": 128},
        "data": {"name": "cifar10", "hflip": True},
        "train": {"steps": 390625, "batch_size": 512, "lr": 1e-3, "betas": [0.9, 0.999], "log_every": 100,
                  "sample_every": 10000, "checkpoint_every": 5000},
        "diffusion": {"objective": "edm", "channel_mult": "2,2,2", "res_blocks": 4, "attention_resolutions": "16",
                      "dropout": 0.13, "ema_halflife_images": 500000, "lr_warmup_images": 10000000,
                      "sampler": "heun", "steps": 18},
    },
    # StyleGAN2 + ADA presets (docs/stylegan2.md lists them with their sources). The CPU ones keep the
    # ADA paper's CIFAR-10 recipe (2-layer mapping, Adam lr 0.0025 betas (0, 0.99), R1 gamma 0.01,
    # class-conditional, ADA target 0.6) and narrow the networks; they keep path length and mixing.
    "stylegan2-mnist": {  # CPU-sized: 16..128 feature maps, w 128, batch 32; MNIST padded to 32x32
        "model": {"name": "cstylegan2", "width": 16, "latent_dim": 128},
        "data": {"name": "mnist"},
        "train": {"steps": 20000, "batch_size": 32, "lr": 0.0025, "betas": [0.0, 0.99]},
        "stylegan2": {"mapping_layers": 2, "channel_max": 128, "conv_path": "scaled", "r1_gamma": 0.01,
                      "pl_weight": 2.0, "mixing_prob": 0.9, "ema_halflife_images": 10000, "ema_rampup": 0.05,
                      "ada": True, "ada_target": 0.6},
    },
    "stylegan2-cifar": {  # CPU-sized CIFAR-10 (use --data zip:.../train.zip): 32..256 feature maps, w 256, flips
        "model": {"name": "cstylegan2", "width": 32, "latent_dim": 256},
        "data": {"name": "cifar10", "hflip": True},
        "train": {"steps": 50000, "batch_size": 32, "lr": 0.0025, "betas": [0.0, 0.99]},
        "stylegan2": {"mapping_layers": 2, "channel_max": 256, "conv_path": "scaled", "r1_gamma": 0.01,
                      "pl_weight": 2.0, "mixing_prob": 0.9, "ema_halflife_images": 10000, "ema_rampup": 0.05,
                      "ada": True, "ada_target": 0.6},
    },
    # The ADA paper's CIFAR-10 configuration for GPUs (Karras et al. 2020b, appendix D, the 'cifar'
    # configuration): 512 feature maps at every resolution, 2-layer mapping, minibatch-stddev groups of
    # 32, R1 gamma 0.01, no path length, no style mixing, EMA half-life 500k images with ramp-up 0.05,
    # batch 64, Adam lr 0.0025 betas (0, 0.99), class-conditional, x-flips, ADA target 0.6, 100M images.
    "stylegan2-cifar-paper": {
        "model": {"name": "cstylegan2", "width": 512, "latent_dim": 512},
        "data": {"name": "cifar10", "hflip": True},
        "train": {"steps": 1562500, "batch_size": 64, "lr": 0.0025, "betas": [0.0, 0.99], "log_every": 100,
                  "sample_every": 10000, "checkpoint_every": 5000},
        "stylegan2": {"mapping_layers": 2, "channel_max": 512, "conv_path": "grouped", "mbstd_group": 32,
                      "r1_gamma": 0.01, "pl_weight": 0.0, "mixing_prob": 0.0, "ema_halflife_images": 500000,
                      "ema_rampup": 0.05, "ada": True, "ada_target": 0.6},
    },
    "vae-mnist": {
        "model": {"name": "vae-mlp", "latent_dim": 16},
        "data": {"name": "mnist"},
        "train": {"steps": 10000, "batch_size": 128, "lr": 1e-3, "betas": [0.9, 0.999]},
    },
    # The conditional VAE that draws the requested digit (docs/benchmarks.md): a 4-D latent leaves
    # z room for style only, so the label decides the class; 80 epochs, the last 40 decaying the lr.
    "cvae-mnist": {
        "model": {"name": "cvae-mlp", "latent_dim": 4},
        "data": {"name": "mnist"},
        "train": {"steps": 48000, "batch_size": 100, "lr": 1e-3, "betas": [0.9, 0.999]},
        "vae": {"binarize": "dynamic", "lr_decay_start": 24000, "lr_decay_steps": 24000},
    },
}


def _coerce(cls: type, key: str, value: Any, source: str) -> Any:
    """Turn a string from the command line (or a YAML/TOML scalar) into the field's type.

    Every value is type-checked: booleans are not numbers, numbers must be finite, a list or a
    mapping is never a scalar setting."""
    ftype = {f.name: f.type for f in fields(cls)}[key]
    try:
        if isinstance(value, (dict, list, type(None))) and not (ftype.startswith("tuple") and isinstance(value, list)):
            raise ValueError
        if ftype != "bool" and isinstance(value, bool):
            raise ValueError
        if ftype == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if ftype == "float":
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if ftype.startswith("tuple"):
            if isinstance(value, str):
                value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
            if any(isinstance(v, (bool, dict, list)) for v in value):
                raise ValueError
            numbers = tuple(float(v) for v in value)
            if not all(math.isfinite(v) for v in numbers):
                raise ValueError
            return numbers
        if ftype == "str":
            return str(value)
        if ftype == "bool":
            if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                return value.strip().lower() in ("true", "yes", "on", "1")
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        kind = {"int": "an integer", "float": "a finite number", "str": "a string", "bool": "true or false"}.get(
            ftype, "a list of finite numbers")
        raise GenforgeError(f"{source}: {cls.__name__.replace('Config', '').lower()}.{key} must be "
                            f"{kind}, got {value!r}") from None
    return value


def deep_update(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = v
    return out


def read_config_file(path: str | Path) -> dict:
    """Read a YAML (.yaml/.yml) or TOML (.toml) file whose top-level keys are sections (model, data, train, ...)."""
    path = Path(path)
    if not path.is_file():
        raise GenforgeError(f"config file {path} does not exist; check the path given to --config")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise GenforgeError(f"config file {path} must end in .yaml, .yml or .toml")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenforgeError(f"config file {path} is not valid {path.suffix[1:].upper()}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GenforgeError(f"config file {path} must hold a mapping with sections model, data, train")
    check_sections(data, f"config file {path}")
    return data


def check_sections(data: dict, source: str) -> None:
    """Every section of a config file is a mapping of settings: `model: vae-mlp` or `train: 500`
    would otherwise be silently replaced by the command line's own (empty) sections."""
    for name, section in data.items():
        if section is not None and not isinstance(section, dict):
            raise GenforgeError(f"{source}: section {name!r} must be a mapping of settings (e.g. "
                                f"`model: {{name: vae-mlp}}` or `train: {{steps: 500}}`), got {type(section).__name__} "
                                f"{section!r}; write its settings as keys under it")


def parse_override(text: str) -> dict:
    """'train.lr=0.001' -> {'train': {'lr': '0.001'}} (typed later by RunConfig.from_dict)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise GenforgeError(f"--set {text!r} must look like section.key=value, e.g. --set train.lr=0.001")
    key, value = text.split("=", 1)
    section, name = key.split(".", 1)
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        raise GenforgeError(f"--set {text!r}: the value is not valid YAML; quote it or write a plain number "
                            "or word, e.g. --set train.lr=0.001") from None
    return {section.strip(): {name.strip(): parsed}}


def _is_zero(value: Any) -> bool:
    try:
        return value is not None and not isinstance(value, bool) and float(value) == 0
    except (TypeError, ValueError):
        return False


def resolve_config(preset: str | None = None, config_file: str | None = None,
                   overrides: list[dict] | None = None) -> RunConfig:
    """defaults < preset < config file < overrides (each a nested dict)."""
    merged: dict = {}
    if preset:
        if preset not in PRESETS:
            raise GenforgeError(f"unknown preset {preset!r}; choose one of: {', '.join(sorted(PRESETS))}")
        merged = deep_update(merged, PRESETS[preset])
    if config_file:
        merged = deep_update(merged, read_config_file(config_file))
    if isinstance(overrides, dict) or not isinstance(overrides or [], (list, tuple)) or not all(
            isinstance(o, dict) for o in overrides or []):
        raise GenforgeError(f"overrides must be a list of nested dicts, got {type(overrides).__name__}; "
                            "e.g. overrides=[{'train': {'steps': 2000}}]")
    for o in overrides or []:
        merged = deep_update(merged, o)
    # In ModelConfig 0 means "not given, take the model's default"; a user who writes 0 means a
    # latent of size zero, which no model has, so an explicit 0 is refused here rather than replaced.
    if isinstance(merged.get("model"), dict) and _is_zero(merged["model"].get("latent_dim")):
        raise GenforgeError("model.latent_dim must be at least 1, got 0; leave it out for the model's default")
    return RunConfig.from_dict(merged, source="configuration")


def config_diff(saved: RunConfig, new: RunConfig, ignore: tuple[str, ...]) -> list[str]:
    """Keys (section.key) whose values differ, except those in `ignore`."""
    a, b = saved.to_dict(), new.to_dict()
    out = []
    for section in a:
        for key in a[section]:
            name = f"{section}.{key}"
            if name not in ignore and a[section][key] != b[section][key]:
                out.append(f"{name}: saved {a[section][key]!r}, now {b[section][key]!r}")
    return out


def replace(cfg: RunConfig, **sections: dict) -> RunConfig:
    """A copy of cfg with some fields of some sections replaced, re-validated."""
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise GenforgeError(f"unknown section(s) {sorted(unknown)}; the sections are {', '.join(SECTIONS)}")
    return RunConfig(**{s: dataclasses.replace(getattr(cfg, s), **sections.get(s, {})) for s in SECTIONS})
