"""The VAE family behind the contract: an encoder to a Gaussian latent and a decoder, trained on
the ELBO or the IWAE bound. Networks: mlp.py, conv.py; step: step.py; likelihood: likelihood.py;
latent-space tools: tools.py."""

from __future__ import annotations

import torch
from torch import nn

from ...data.transforms import center_crop
from ..contract import Family, Graph, ModelSpec, SampleRequest
from . import conv, mlp
from .likelihood import vae_likelihood
from .sample import generate_vae
from .step import decoder_log_variance, vae_step, vae_test_loss


def sample(nets, request: SampleRequest, cfg):
    vae = nets["vae"]
    z = request.noise(cfg.model.latent_dim, next(vae.parameters()).device)
    return generate_vae(vae, z, cfg.vae.reconstruction, request.cond.labels)


def test_metrics(nets, cfg, test, device):
    """Negative ELBO (and its two terms) on the test split, nats per image: the likelihood
    estimator with K = 1 (see step.vae_test_loss), the same numbers as `likelihood` below gives
    with k=1 on the same images, seed and binarisation."""
    images = center_crop(test.images, cfg.data.random_crop) if cfg.data.random_crop else test.images
    labels = test.labels.to(device) if test.labels is not None and cfg.model.num_classes else None
    return vae_test_loss(nets["vae"], images.to(device), cfg, labels=labels)


def likelihood(nets, images, labels, cfg, k, binarize, seed):
    """genforge eval's nll metric (and eval.metrics=nll during training): likelihood.vae_likelihood
    with the run's decoder, its Gaussian log-variance (learned or fixed) included."""
    vae = nets["vae"]
    return vae_likelihood(vae, images, cfg.vae.reconstruction, labels, k=k, binarize=binarize, seed=seed,
                          decoder_logvar=decoder_log_variance(vae, cfg.vae))


class Decode(nn.Module):
    """latents (N, latent_dim) [, labels (N,) int64] -> decoder means in [0, 1], as generate_vae."""

    def __init__(self, vae: nn.Module, reconstruction: str):
        super().__init__()
        self.vae, self.bernoulli = vae, reconstruction == "bernoulli"

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = self.vae.decode(*inputs).float()
        return torch.sigmoid(x) if self.bernoulli else x.clamp(0, 1)


class Encode(nn.Module):
    """images (N, C, H, W) in [0, 1] [, labels (N,) int64] -> posterior means (N, latent_dim), as tools.encode."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(*inputs)[0].float()


def graphs(nets, cfg) -> dict[str, Graph]:
    m = cfg.model
    labels = {"labels": torch.arange(2) % m.num_classes} if m.num_classes else {}
    images = torch.rand(2, m.channels, m.image_size, m.image_size)
    return {"generate": Graph(Decode(nets["vae"], cfg.vae.reconstruction).eval(),
                              {"latents": torch.randn(2, m.latent_dim), **labels}),
            "encode": Graph(Encode(nets["vae"]).eval(), {"images": images, **labels}, output="latents")}


VAE = Family(
    name="vae",
    section="vae",
    step=vae_step,
    sample=sample,
    test_metrics=test_metrics,
    describe_test=lambda v: (f"test negative ELBO {v['loss']:.2f} nats/image, one z per image "
                             f"(reconstruction {v['reconstruction']:.2f}, closed-form KL {v['kl']:.2f})"),
    likelihood=likelihood,
    inference=("vae",),
    graphs=graphs,
    serves=("seed", "interpolate"),
)

# Class-conditional VAEs (Sohn et al. 2015). beta-VAE and IWAE are objectives, not networks:
# any VAE trains as one with --set vae.kl_weight=BETA or --set vae.objective=iwae.
MODELS = {
    "vae-mlp": ModelSpec(VAE, lambda cfg: mlp.build(cfg.model), 16, 512),
    "vae-conv": ModelSpec(VAE, lambda cfg: conv.build(cfg.model), 16, 32),
    "cvae-mlp": ModelSpec(VAE, lambda cfg: mlp.build(cfg.model), 16, 512, ("labels",)),
    "cvae-conv": ModelSpec(VAE, lambda cfg: conv.build(cfg.model), 16, 32, ("labels",)),
}

# Names of VAE variants that are objectives or shorthands, not networks: the settings that give them.
HINTS = {
    "iwae": "iwae is an objective: use --model vae-mlp or vae-conv with --set vae.objective=iwae",
    "beta-vae": "beta-vae is an objective: use --model vae-mlp or vae-conv with --set vae.kl_weight=BETA",
    "vae": "choose the dense (--model vae-mlp) or the convolutional (--model vae-conv) VAE",
    "cvae": "choose the dense (--model cvae-mlp) or the convolutional (--model cvae-conv) conditional VAE",
}
