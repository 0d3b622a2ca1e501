"""The GAN family behind the contract: noise (and optionally a class) to image, trained against a
discriminator. Networks: dcgan.py, mlp.py, resnet.py; step: step.py; sampling: sample.py."""

from __future__ import annotations

import torch
from torch import nn

from ...config import check
from ..contract import Family, Graph, ModelSpec, SampleRequest
from . import dcgan, mlp, resnet
from .sample import generate_gan, recalibrate_batchnorm
from .step import gan_step


def sample(nets, request: SampleRequest, cfg):
    z = request.noise(cfg.model.latent_dim, next(nets["generator"].parameters()).device)
    return generate_gan(nets["generator"], z, request.cond.labels)


def prepare_inference(nets, cfg, device):
    """The (averaged) generator with batch-norm statistics re-estimated for its own weights."""
    generator = recalibrate_batchnorm(nets["generator"], cfg.model.latent_dim, device,
                                      num_classes=cfg.model.num_classes)
    return {**nets, "generator": generator}


class Generate(nn.Module):
    """latents (N, latent_dim) [, labels (N,) int64] -> images (N, C, H, W) in [0, 1], as generate_gan."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.generator(*inputs).float().add(1).mul(0.5).clamp(0, 1)


def graphs(nets, cfg) -> dict[str, Graph]:
    inputs = {"latents": torch.randn(2, cfg.model.latent_dim)}
    if cfg.model.num_classes:
        inputs["labels"] = torch.arange(2) % cfg.model.num_classes
    return {"generate": Graph(Generate(nets["generator"]).eval(), inputs)}


def check_config(cfg, spec: ModelSpec) -> None:
    """Loss / regulariser / architecture pairs that cannot work together."""
    gan = cfg.gan
    check(gan.loss != "wasserstein" or gan.gradient_penalty > 0 or cfg.model.spectral_norm,
          "gan.loss=wasserstein needs a Lipschitz critic; add --set gan.gradient_penalty=10 or "
          "--set model.spectral_norm=true")
    # GP and R1 take each image's own input gradient; batch norm mixes the images of a batch
    # (Gulrajani et al. 2017, section 4, leave it out of the critic for this reason).
    penalty = "gan.gradient_penalty" if gan.gradient_penalty else "gan.r1_gamma" if gan.r1_gamma else ""
    check(not (penalty and "batchnorm-discriminator" in spec.traits and not cfg.model.spectral_norm),
          f"{penalty} needs a discriminator without batch norm, and {cfg.model.name}'s has it; add "
          "--set model.spectral_norm=true (which drops it) or use model resnet-gan")


GAN = Family(
    name="gan",
    section="gan",
    step=gan_step,
    sample=sample,
    averaged=lambda cfg: {"generator": cfg.gan.ema_decay},
    learning_rates=lambda cfg: {"discriminator": cfg.gan.lr_d} if cfg.gan.lr_d else {},
    prepare_inference=prepare_inference,
    check_config=check_config,
    graphs=graphs,
    serves=("seed", "truncation", "interpolate"),
)

_BN_D = frozenset({"batchnorm-discriminator"})
MODELS = {
    "gan-mlp": ModelSpec(GAN, lambda cfg: mlp.build(cfg.model), 100, 256),
    "dcgan": ModelSpec(GAN, lambda cfg: dcgan.build(cfg.model), 100, 64, traits=_BN_D),
    "cdcgan": ModelSpec(GAN, lambda cfg: dcgan.build(cfg.model), 100, 64, ("labels",), _BN_D),
    "resnet-gan": ModelSpec(GAN, lambda cfg: resnet.build(cfg.model), 128, 64),
    "resnet-cgan": ModelSpec(GAN, lambda cfg: resnet.build(cfg.model), 128, 64, ("labels",)),
}
