"""The family contract: what a model family gives the rest of genforge.

A family is a frozen dataclass of functions (not a base class). The training loop, `Run`, the
evaluation and the CLI call only these functions and never name a family, so a new family is one
folder (networks, step, sampler, config section), one registry line and its presets.

Signatures (cfg is the resolved RunConfig, nets a dict of named networks on one device):
    step(nets, opts, batch, cfg, precision, state) -> {name: detached loss tensor}
    sample(nets, request, cfg) -> images (N, C, H, W), floats in [0, 1], on the networks' device
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..conditioning import Condition
from ..nn.latents import latent_batch, truncated_latent_batch

Networks = dict[str, nn.Module]


@dataclass(frozen=True)
class SampleRequest:
    """What to draw: n images from `seed` (or from explicit `latents`), under a condition."""

    n: int
    seed: int = 0
    cond: Condition = field(default_factory=Condition)
    latents: torch.Tensor | None = None
    """Explicit latent vectors (n, latent_dim) for families that draw from noise (interpolation, decode)."""
    truncation: float | None = None
    """Draw latents from N(0, I) truncated to [-t, t] (BigGAN's trick); None draws the full Gaussian."""
    targets: torch.Tensor | None = None
    """Images shown beside the outputs in training previews (image-to-image families)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Family-specific sampling options by name (e.g. a diffusion model's sampler, steps, guidance,
    init image and mask); a family lists the names it accepts in Family.sample_options."""
    report: dict[str, Any] = field(default_factory=dict)
    """Filled by the family's sampler with facts about the sampling (e.g. 'nfe', the number of
    network evaluations); Run.sample keeps the last one as Run.last_report."""

    def noise(self, latent_dim: int, device: torch.device | str) -> torch.Tensor:
        """The request's latents: the explicit ones, or n seeded (truncated) draws, the same on every device."""
        if self.latents is not None:
            return self.latents.to(device)
        if self.truncation:
            return truncated_latent_batch(self.n, latent_dim, self.seed, self.truncation, device)
        return latent_batch(self.n, latent_dim, self.seed, device)


class FamilyState:
    """Training state a family keeps besides its networks and optimisers (an adaptive augmentation
    probability, a running path-length mean); saved in every checkpoint, so resume stays exact."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def preview_from_noise(cfg, data, device: torch.device) -> SampleRequest:
    """The default training preview: 64 images from the fixed seed train.seed + 1; conditional
    models get one row of 8 per class, for every class up to 16 (cycling through them beyond)."""
    classes = cfg.model.num_classes
    n = 8 * min(classes, 16) if classes else 64
    labels = torch.arange(n, device=device) // 8 % classes if classes else None
    return SampleRequest(n, seed=cfg.train.seed + 1, cond=Condition(labels=labels))


def preview_from_captions(cfg, data, prompts: int, per_prompt: int) -> SampleRequest:
    """The training preview of a text-to-image model: the first caption of `prompts` training images
    spread evenly over the set, `per_prompt` images each (consecutive), from the fixed seed train.seed + 1."""
    picks = torch.linspace(0, len(data) - 1, prompts).long().tolist()
    texts = [data.captions[i][0] for i in picks for _ in range(per_prompt)]
    return SampleRequest(len(texts), seed=cfg.train.seed + 1, options={"prompt": texts})


@dataclass(frozen=True)
class Graph:
    """One inference function of a trained model as a module of plain tensors (what ONNX and
    torch.export files hold): batch-first inputs and outputs, any batch size, eval mode."""

    module: nn.Module
    """Called with the inputs in the order of `inputs`; returns the output tensor."""
    inputs: dict[str, torch.Tensor]
    """Example inputs by name (a batch of 2), in argument order; their dtypes and shapes are the contract."""
    output: str = "images"
    """Name of the output (images are floats in [0, 1], (N, C, H, W)); not the name of an input."""

    def __post_init__(self):
        if self.output in self.inputs:
            raise ValueError(f"graph output {self.output!r} has the name of an input; ONNX needs distinct names")


SERVE_CONTROLS = ("seed", "truncation", "interpolate", "image")
"""What a family can offer in the web demo (Family.serves): n images from a seed, the truncation
trick, an animated walk between two seeds, an uploaded image to translate. A class picker follows
from the model's conditions. New kinds (prompt, sampler and steps) are added here and in genforge.web."""


@dataclass(frozen=True)
class Family:
    """One model family behind the contract. Only `name`, `step` and `sample` are required."""

    name: str
    step: Callable[..., dict[str, torch.Tensor]]
    """One optimisation step (see the module docstring); losses come back detached, on the device."""
    sample: Callable[[Networks, SampleRequest, Any], torch.Tensor]
    """The one way networks become images: snapshots, genforge eval, Run.sample, the CLI use it."""
    section: str = ""
    """Name of the family's config section (registered by its config module), or ''."""
    from_noise: bool = True
    """Samples are drawn from noise alone (Run.sample(n, seed)); False for image-to-image families,
    whose requests carry cond.image."""
    averaged: Callable[[Any], dict[str, float]] = lambda cfg: {}
    """Networks that keep an exponential moving average, with its decay (0 or absent: none)."""
    learning_rates: Callable[[Any], dict[str, float]] = lambda cfg: {}
    """Learning rates that differ from train.lr, by network name."""
    betas: Callable[[Any], dict[str, tuple[float, float]]] = lambda cfg: {}
    """Adam betas that differ from train.betas, by network name (e.g. adjusted for lazy regularisation)."""
    average_decay: Callable[[Any, str, int], float] | None = None
    """(cfg, network name, training images seen after this update) -> the EMA decay of this update
    (e.g. a half-life in images with a ramp-up); None: `averaged`'s decay with the EMA's own warm-up."""
    prepare_inference: Callable[[Networks, Any, torch.device], Networks] | None = None
    """Called on the networks (averaged copies already swapped in) before sampling, e.g. to
    re-estimate batch-norm statistics for averaged weights. Returns the networks to sample with."""
    fit_networks: Callable[[Networks, Any, Any], None] | None = None
    """(new networks, training data, cfg): fit what the networks learn from the data before training
    (a tokenizer built from the training captions), kept in their state dicts; called once, on new
    networks, before their averages are made (a resumed run then loads its saved state over them)."""
    keep_files: Callable[[Networks, Any, Path], None] | None = None
    """(networks, cfg, folder): write into a run directory (or a safetensors export) what the networks
    are built from besides their state dicts (a pretrained text encoder's weights, config and tokenizer
    files), atomically and once, so that the folder needs nothing outside it; called when a run starts."""
    kept_files: Callable[[Any, Path], Any] | None = None
    """(cfg, folder) -> the settings that build the networks of that run directory (or export) from what
    keep_files wrote there (registry.build_networks(cfg, folder)); cfg itself when nothing was kept."""
    prepare_data: Callable[[Any, Any], Any] | None = None
    """(dataset, cfg) -> dataset, applied to every split loaded for this family (e.g. splitting pairs,
    padding images). A line for the run's log can be left in the dataset's extras['log']."""
    check_config: Callable[[Any, ModelSpec], None] | None = None
    """Refuse settings that cannot work together for this model (a GenforgeError)."""
    preview_request: Callable[[Any, Any, torch.device], SampleRequest] = preview_from_noise
    """(cfg, training data, device) -> the fixed request drawn for every training snapshot."""
    preview: Callable[[Networks, SampleRequest, Any], tuple[torch.Tensor, int]] | None = None
    """(nets, request, cfg) -> (grid images, images per row); default: sample(...) 8 per row."""
    make_state: Callable[[Any], FamilyState] | None = None
    """cfg -> the family's extra training state (see FamilyState); None when it has none."""
    test_metrics: Callable[[Networks, Any, Any, torch.device], dict[str, float]] | None = None
    """(nets, cfg, test split, device) -> numbers logged as test_* at the end of a finished run."""
    describe_test: Callable[[dict[str, float]], str] = lambda values: ""
    """One line for the terminal from test_metrics' numbers."""
    likelihood: Callable[..., dict[str, float]] | None = None
    """(nets, images, labels, cfg, k, binarize, seed) -> likelihood bounds in nats (the nll metric)."""
    inference: tuple[str, ...] = ("generator",)
    """The networks a trained model needs to make images (what exports hold), of those it has (a
    diffusion model has a text encoder only when it is text-conditioned)."""
    graphs: Callable[[Networks, Any], dict[str, Graph]] | None = None
    """(inference networks, cfg) -> the model's inference functions by name ('generate', 'encode', ...),
    as ONNX and torch.export files hold them; None: the family exports as safetensors only."""
    serves: tuple[str, ...] = ()
    """Controls of the web demo for this family (names from SERVE_CONTROLS); () is not served."""
    sample_options: tuple[str, ...] = ()
    """Names of the SampleRequest.options the sampler accepts; Run.sample refuses any other."""
    interpolate: Callable[..., torch.Tensor] | None = None
    """(nets, z (S, latent_dim) of the seeds, steps per leg, labels or None, truncation or None, cfg) ->
    images along a path through the seeds' latents (e.g. linear in a style space); None: Run.interpolate
    draws the spherical path between the latents z itself."""


@dataclass(frozen=True)
class ModelSpec:
    """One named model: its family, how to build its networks and its defaults."""

    family: Family
    build: Callable[[Any], Networks]
    """cfg (a RunConfig with model.image_size and model.channels resolved) -> named networks: only
    those these settings train or sample with. The loop optimises, averages and checkpoints exactly
    what build returns, so a network the settings leave untrained (pix2pix's discriminator at
    gan_weight 0) is left out here, and the family's step must not expect it."""
    latent_dim: int = 0
    """Default latent size (0 for models without a latent)."""
    width: int = 64
    """Default base width."""
    conditions: tuple[str, ...] = ()
    """Condition kinds the model needs (conditioning.KINDS); the data must provide them."""
    traits: frozenset[str] = frozenset()
    """Facts a family's check_config reads, e.g. 'batchnorm-discriminator'."""

    @property
    def conditional(self) -> bool:
        """Class-conditional: model.num_classes is taken from the data's labels."""
        return "labels" in self.conditions
