"""The diffusion family behind the contract: a U-Net denoiser (networks.py) trained with the EDM,
DDPM epsilon or v objective (objectives.py), an EMA with a half-life in images, sampled by DDPM
ancestral, DDIM, EDM Heun or DPM-Solver++(2M) (samplers.py) with classifier-free guidance, SDEdit
and inpainting (sample.py). docs/diffusion.md describes it."""

from __future__ import annotations

from pathlib import Path

import torch

from ...conditioning import Condition
from ...config import replace as config_replace
from ...errors import GenforgeError
from ...text.encoder import build_text_encoder
from ...text.pretrained import RUN_FOLDER, load_pretrained
from ..contract import Family, Graph, ModelSpec, SampleRequest, preview_from_captions
from . import networks
from .objectives import denoise
from .sample import OPTIONS, sample
from .step import diffusion_step


def ema_decay(cfg) -> float:
    """Per-step decay of the EMA with a half-life of diffusion.ema_halflife_images training images
    (EDM section 5, appendix F.3): 0.5 ** (batch_size / half-life), so the average forgets half its
    weight every half-life whatever the batch size."""
    halflife = cfg.diffusion.ema_halflife_images
    return 0.5 ** (cfg.train.batch_size / halflife) if halflife > 0 else 0.0


def check_config(cfg, spec: ModelSpec) -> None:
    d = cfg.diffusion
    if "text" in spec.conditions and d.text_dim:
        raise GenforgeError(f"{cfg.model.name} trains its own text encoder of width text.width; "
                            "drop diffusion.text_dim (it is for embeddings given from outside)")
    if cfg.text.pretrained and "text" not in spec.conditions:
        raise GenforgeError(f"text.pretrained is a text encoder for text-to-image models, and {cfg.model.name} takes no "
                            "text; use --model tdiffusion-unet or drop text.pretrained")
    if d.cond_dropout > 0 and not spec.conditional and not d.text_dim and "text" not in spec.conditions:
        raise GenforgeError(f"diffusion.cond_dropout is {d.cond_dropout} but {cfg.model.name} is unconditional; "
                            "use --model cdiffusion-unet or drop the setting")
    if d.guidance > 0 and d.cond_dropout == 0:
        raise GenforgeError("diffusion.guidance needs condition dropout in training; "
                            "add --set diffusion.cond_dropout=0.1 or drop diffusion.guidance")


def build(cfg):
    d, m = cfg.diffusion, cfg.model
    factor = 2 ** (len(d.levels) - 1)
    if m.image_size % factor:
        raise GenforgeError(f"a U-Net with {len(d.levels)} levels (diffusion.channel_mult={d.channel_mult}) needs an "
                            f"image size divisible by {factor}, got {m.image_size}; resize with --set data.image_size=N "
                            "or use fewer levels")
    return networks.build(cfg)


def build_text(cfg):
    """A text-to-image model: the U-Net cross-attending to the token embeddings of a text encoder,
    trained with it from scratch, or pretrained (text.pretrained: read from that folder, at its own width)."""
    build(cfg)  # the size checks
    t = cfg.text
    encoder = load_pretrained(t.pretrained, t.context, t.train_pretrained) if t.pretrained else build_text_encoder(cfg)
    width = encoder.width if t.pretrained else t.width
    return {**networks.build(cfg, context_dim=width), "text_encoder": encoder}


def keep_files(nets, cfg, folder: Path) -> None:
    """A pretrained text encoder: its copy in the run (RUN/text-encoder/), written once, when the run starts."""
    if cfg.text.pretrained and "text_encoder" in nets and not (folder / RUN_FOLDER).is_dir():
        nets["text_encoder"].save_copy(folder / RUN_FOLDER)


def kept_files(cfg, folder: Path):
    """The settings that rebuild a run's networks from its own copy of the pretrained text encoder."""
    if cfg.text.pretrained and (folder / RUN_FOLDER).is_dir():
        return config_replace(cfg, text={"pretrained": str(folder / RUN_FOLDER)})
    return cfg


def fit_networks(nets, data, cfg) -> None:
    """Text-to-image models: the tokenizer of the text encoder, built from the training captions."""
    if "text_encoder" in nets and data.captions:
        nets["text_encoder"].fit(text for texts in data.captions for text in texts)


def averaged(cfg) -> dict[str, float]:
    """The denoiser's EMA, and the text encoder's with the same decay when it trains (they are used together)."""
    decay = ema_decay(cfg)
    trains = cfg.model.name in TEXT_MODELS and (not cfg.text.pretrained or cfg.text.train_pretrained)
    return {"denoiser": decay, **({"text_encoder": decay} if trains else {})}


class Denoise(torch.nn.Module):
    """One network evaluation as plain tensors: D(noisy; sigma[, labels]), the estimate of the clean
    image in the data's [-1, 1] range. The sampler stays in Python (or the caller's code): a step of
    any of samplers.py's samplers is a few arithmetic operations around this call."""

    def __init__(self, denoiser: torch.nn.Module, d):
        super().__init__()
        self.denoiser, self.d = denoiser, d

    def forward(self, noisy: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return denoise(self.denoiser, noisy, sigma, Condition(labels=labels), self.d)


def graphs(nets, cfg) -> dict[str, Graph]:
    m = cfg.model
    if "text_encoder" in nets:
        raise GenforgeError(f"{m.name} exports as safetensors only (its prompt encoding is Python code); "
                            "use --format safetensors")
    inputs = {"noisy": torch.randn(2, m.channels, m.image_size, m.image_size), "sigma": torch.tensor([0.5, 2.0])}
    if m.num_classes:
        inputs["labels"] = torch.arange(2) % m.num_classes
    return {"denoise": Graph(Denoise(nets["denoiser"], cfg.diffusion).eval(), inputs, output="denoised")}


def preview_request(cfg, data, device) -> SampleRequest:
    """The training snapshot: 16 images (one row of 8 per class, up to 8 classes, when conditional)
    from the fixed seed train.seed + 1. Fewer than the other families' 64 because each image costs
    the sampler's full number of network evaluations (35 for the default heun, 18 steps)."""
    classes = cfg.model.num_classes
    if data.captions and cfg.model.name in TEXT_MODELS:  # 8 training captions, 2 images each
        return preview_from_captions(cfg, data, 8, 2)
    if classes:
        labels = torch.arange(8 * min(classes, 8), device=device) // 8
        return SampleRequest(len(labels), seed=cfg.train.seed + 1, cond=Condition(labels=labels))
    return SampleRequest(16, seed=cfg.train.seed + 1)


DIFFUSION = Family(
    name="diffusion",
    section="diffusion",
    step=diffusion_step,
    sample=sample,
    averaged=averaged,
    check_config=check_config,
    fit_networks=fit_networks,
    keep_files=keep_files,
    kept_files=kept_files,
    preview_request=preview_request,
    inference=("denoiser", "text_encoder"),
    graphs=graphs,
    serves=("seed",),
    sample_options=OPTIONS,
)

MODELS = {
    "diffusion-unet": ModelSpec(DIFFUSION, build, 0, 64),
    "cdiffusion-unet": ModelSpec(DIFFUSION, build, 0, 64, ("labels",)),
    "tdiffusion-unet": ModelSpec(DIFFUSION, build_text, 0, 64, ("text",)),
}
TEXT_MODELS = ("tdiffusion-unet",)

HINTS = {
    "ddpm": "ddpm is an objective and a sampler: use --model diffusion-unet with --set diffusion.objective=eps",
    "edm": "edm is the default objective of --model diffusion-unet (see genforge info for the edm-cifar preset)",
    "diffusion": "choose --model diffusion-unet, or cdiffusion-unet for class-conditional models, or "
                 "tdiffusion-unet for text-to-image",
}
