"""The StyleGAN2 family behind the contract: StyleGAN2 (Karras et al. 2020a) with adaptive
discriminator augmentation (ADA, Karras et al. 2020b), in plain PyTorch, on a CPU or a GPU.
Networks: networks.py; step and state: step.py; ADA: augment.py; sampling tools: sample.py;
projection of real images: tools.py. `tstylegan2` is the text-to-image model: the pooled embedding of
a text encoder trained with it conditions both networks (docs/text-to-image.md). docs/stylegan2.md
describes the family."""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ...data import ImageDataset
from ...errors import GenforgeError
from ...text.encoder import build_text_encoder
from ..contract import Family, Graph, ModelSpec, SampleRequest, preview_from_captions, preview_from_noise
from . import networks
from .sample import OPTIONS, interpolate, sample
from .step import StyleGAN2State, stylegan2_step


def lazy_ratio(every: int) -> float:
    """c = k / (k + 1) for a regulariser applied every k steps as an extra update (paper section 3.1,
    appendix B): the learning rate becomes c * lr and the betas beta ** c, so that k + 1 updates
    move the weights as k plain ones would."""
    return every / (every + 1)


def ratios(cfg) -> dict[str, float]:
    s = cfg.stylegan2
    return {"generator": lazy_ratio(s.pl_every) if s.pl_weight > 0 else 1.0,
            "discriminator": lazy_ratio(s.r1_every) if s.r1_gamma > 0 else 1.0}


def learning_rates(cfg) -> dict[str, float]:
    return {name: cfg.train.lr * c for name, c in ratios(cfg).items()}


def betas(cfg) -> dict[str, tuple[float, float]]:
    b1, b2 = cfg.train.betas
    return {name: (b1 ** c, b2 ** c) for name, c in ratios(cfg).items()}


def ema_decay(cfg, name: str = "generator", images_seen: int = 0) -> float:
    """The generator EMA's decay for one update: a half-life of stylegan2.ema_halflife_images images,
    0.5 ** (batch / half-life), where the half-life is at most ema_rampup x the images seen so far
    (ADA's ramp-up, so that early averages forget the random initialisation quickly)."""
    s = cfg.stylegan2
    halflife = s.ema_halflife_images
    if s.ema_rampup > 0 and images_seen > 0:
        halflife = min(halflife, images_seen * s.ema_rampup)
    return 0.5 ** (cfg.train.batch_size / max(halflife, 1e-8)) if halflife > 0 else 0.0


def fitted_size(size: int) -> int:
    """The power of two >= max(size, 32) the networks work at."""
    return max(32, 2 ** math.ceil(math.log2(size)))


def fit_images(images: torch.Tensor, target: int, how: str) -> torch.Tensor:
    """uint8 images (N, C, S, S) padded (edge pixels, centred) or resized (antialiased bilinear) to target."""
    size = images.shape[-1]
    if how == "pad":
        before = (target - size) // 2
        after = target - size - before
        return F.pad(images.float(), (before, after, before, after), mode="replicate").round().to(torch.uint8)
    return F.interpolate(images.float(), size=(target, target), mode="bilinear", antialias=True,
                         align_corners=False).round().clamp(0, 255).to(torch.uint8)


def prepare_data(data: ImageDataset, cfg) -> ImageDataset:
    """Images of a side that is not a power of two >= 32 are padded (edge pixels, centred) or
    resized (antialiased bilinear) to the next one, per stylegan2.fit, with a line for the log."""
    size = data.image_size
    target = fitted_size(size)
    if target == size:
        return data
    how = cfg.stylegan2.fit
    if how == "none":
        raise GenforgeError(f"StyleGAN2 needs a power-of-two image side of at least 32, and {data.name or 'the data'} "
                            f"is {size}x{size}; add --set stylegan2.fit=pad (or resize), or --set data.image_size={target}")
    images = fit_images(data.images, target, how)
    if how == "pad":
        before = (target - size) // 2
        note = (f"stylegan2: padded the {size}x{size} images to {target}x{target} ({before}+{target - size - before} "
                "edge pixels; stylegan2.fit)")
    else:
        note = f"stylegan2: resized the {size}x{size} images to {target}x{target} (stylegan2.fit)"
    return dataclasses.replace(data, images=images, extras={**data.extras, "log": note})  # labels, captions kept


def check_config(cfg, spec: ModelSpec) -> None:
    s, m = cfg.stylegan2, cfg.model
    size = m.image_size
    if size and (size < 32 or 2 ** int(math.log2(size)) != size):
        raise GenforgeError(f"model.image_size {size} is not a power of two >= 32; StyleGAN2 works at 32, 64, 128, ...: "
                            f"drop model.image_size (the data is padded to {fitted_size(size)}) or set it to a power of two")
    if cfg.train.optimizer != "adam":
        raise GenforgeError("StyleGAN2's lazy regularisation adjusts Adam's betas; use --optimizer adam")
    if cfg.data.random_crop and (cfg.data.random_crop < 32 or 2 ** int(math.log2(cfg.data.random_crop))
                                 != cfg.data.random_crop):
        raise GenforgeError(f"data.random_crop {cfg.data.random_crop} is not a power of two >= 32; StyleGAN2 trains on "
                            "the crops: use 32, 64, ... or drop it")
    if s.pl_weight > 0 and cfg.train.batch_size < s.pl_batch_shrink:
        raise GenforgeError(f"train.batch_size {cfg.train.batch_size} is below stylegan2.pl_batch_shrink "
                            f"{s.pl_batch_shrink}; raise the batch size or lower the shrink")


class Generate(nn.Module):
    """latents (N, latent_dim) [, labels (N,) int64] -> images (N, C, H, W) in [0, 1]: the EMA generator
    with the fixed noise, on the activation-scaling path (no batch size in the graph)."""

    def __init__(self, generator: networks.Generator):
        super().__init__()
        self.generator = generator

    def forward(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        ws = self.generator.ws(latents, labels)
        return self.generator.synthesis(ws, "const", grouped=False).float().add(1).mul(0.5).clamp(0, 1)


def graphs(nets, cfg) -> dict[str, Graph]:
    if "text_encoder" in nets:
        raise GenforgeError(f"{cfg.model.name} exports as safetensors only (its prompt encoding, the tokenizer, is "
                            "Python code); use --format safetensors")
    inputs = {"latents": torch.randn(2, cfg.model.latent_dim)}
    if cfg.model.num_classes:
        inputs["labels"] = torch.arange(2) % cfg.model.num_classes
    return {"generate": Graph(Generate(nets["generator"]).eval(), inputs)}


def build_text(cfg) -> dict[str, nn.Module]:
    """A text-to-image model: generator and discriminator conditioned on the pooled embedding of a text
    encoder trained with them (text.width numbers)."""
    return {**networks.build(cfg, text_dim=cfg.text.width), "text_encoder": build_text_encoder(cfg)}


def fit_networks(nets, data, cfg) -> None:
    """Text-to-image models: the tokenizer of the text encoder, built from the training captions."""
    if "text_encoder" in nets and data.captions:
        nets["text_encoder"].fit(text for texts in data.captions for text in texts)


def averaged(cfg) -> dict[str, float]:
    """The generator's EMA, and the text encoder's at the same decay (the generator reads its output)."""
    decay = ema_decay(cfg)
    return {"generator": decay, **({"text_encoder": decay} if cfg.model.name in TEXT_MODELS else {})}


def preview_request(cfg, data, device) -> SampleRequest:
    """Text-to-image: one row of 8 images for each of 8 training captions; otherwise the default."""
    if data.captions and cfg.model.name in TEXT_MODELS:
        return preview_from_captions(cfg, data, 8, 8)
    return preview_from_noise(cfg, data, device)


STYLEGAN2 = Family(
    name="stylegan2",
    section="stylegan2",
    step=stylegan2_step,
    sample=sample,
    averaged=averaged,
    average_decay=ema_decay,
    learning_rates=learning_rates,
    betas=betas,
    prepare_data=prepare_data,
    check_config=check_config,
    fit_networks=fit_networks,
    preview_request=preview_request,
    inference=("generator", "text_encoder"),
    make_state=lambda cfg: StyleGAN2State(cfg.stylegan2.augment_p),
    graphs=graphs,
    serves=("seed", "truncation", "interpolate"),
    sample_options=OPTIONS,
    interpolate=interpolate,
)

MODELS = {
    "stylegan2": ModelSpec(STYLEGAN2, networks.build, 512, 64),
    "cstylegan2": ModelSpec(STYLEGAN2, networks.build, 512, 64, ("labels",)),
    "tstylegan2": ModelSpec(STYLEGAN2, build_text, 512, 64, ("text",)),
}
TEXT_MODELS = ("tstylegan2",)

HINTS = {
    "stylegan": "use --model stylegan2 (or cstylegan2 for class-conditional models, tstylegan2 for text-to-image)",
    "stylegan2-ada": "ADA is on by default in --model stylegan2 (stylegan2.ada); see genforge info --preset stylegan2-cifar",
}
