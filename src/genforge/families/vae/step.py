"""The VAE training step (ELBO or IWAE) and its schedules (KL warm-up, learning-rate decay)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ... import losses
from ...conditioning import Batch
from ...config import RunConfig
from ...imageio import to_unit
from ...nn.schedule import set_decayed_lr
from ...runtime import Precision
from .config import VAEConfig
from .likelihood import BATCH_SIZE, vae_likelihood


def kl_weight_at(step: int, vae_cfg: VAEConfig) -> float:
    """The KL weight (beta) at 0-based `step`: kl_weight, ramped up linearly from kl_weight /
    kl_warmup_steps at step 0 to kl_weight at step kl_warmup_steps - 1 and after ("KL annealing",
    Bowman et al. 2016, section 3.1; Sonderby et al. 2016). A function of the step alone, so a
    resumed run uses exactly the weights of an uninterrupted one."""
    if vae_cfg.kl_warmup_steps <= 0:
        return vae_cfg.kl_weight
    return vae_cfg.kl_weight * min(1.0, (step + 1) / vae_cfg.kl_warmup_steps)


def vae_targets(images: torch.Tensor, vae_cfg: VAEConfig) -> torch.Tensor:
    """uint8 images -> the VAE's targets in [0, 1]; with vae.binarize=dynamic a fresh binary
    sample x ~ Bernoulli(pixel / 255) drawn from the global (checkpointed) torch RNG, as in the
    dynamically binarised MNIST of Burda et al. 2016, section 5."""
    x = to_unit(images)
    return torch.bernoulli(x) if vae_cfg.binarize == "dynamic" else x


def decoder_log_variance(vae: nn.Module, vae_cfg: VAEConfig) -> torch.Tensor | None:
    """The Gaussian decoder's log-variance (learned per pixel, or the fixed one); None for Bernoulli."""
    if vae_cfg.reconstruction != "gaussian":
        return None
    if vae_cfg.decoder_variance == "learned":
        return vae.decoder_log_variance().float()
    return torch.tensor(math.log(vae_cfg.fixed_variance))


def vae_step(nets: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer], batch: Batch,
             cfg: RunConfig, precision: Precision, state=None) -> dict[str, torch.Tensor]:
    vae = nets["vae"]
    v = cfg.vae
    x = vae_targets(batch.images, v)
    cond = (batch.labels,) if cfg.model.num_classes else ()
    beta = kl_weight_at(batch.step, v)
    if v.lr_decay_steps:
        set_decayed_lr(opts, {"vae": cfg.train.lr}, batch.step, v.lr_decay_start, v.lr_decay_steps)
    if v.objective == "elbo":
        # Negative ELBO = -E_q[log p(x|z)] + KL(q(z|x) || p(z)), in nats per image, one z per image
        # and the KL in closed form (Kingma and Welling 2014, eq. 10); beta-VAE weighs the KL.
        with precision.context():
            out, mean, logvar = vae(x, *cond)
        log_likelihood = losses.reconstruction_log_likelihood(out.float(), x, v.reconstruction,
                                                              decoder_log_variance(vae, v))
        reconstruction = -log_likelihood.mean()
        kl = losses.kl_to_standard_normal(mean.float(), logvar.float())
        loss = reconstruction + beta * kl
    else:
        # IWAE (Burda et al. 2016, eq. 8): -log (1/K) sum_k w_k with K samples z_k ~ q(z|x) per image and
        # log w_k = log p(x|z_k) + beta * (log p(z_k) - log q(z_k|x)); beta = 1 gives the paper's bound.
        k = v.importance_samples
        with precision.context():
            mean, logvar = vae.encode(x, *cond)
            mean, logvar = mean.float(), logvar.float()
            z = mean + torch.exp(0.5 * logvar) * torch.randn((k, *mean.shape), device=mean.device)
            out = vae.decode(z.flatten(0, 1), *(c.repeat(k) for c in cond))
        log_likelihood = losses.reconstruction_log_likelihood(
            out.float(), x.repeat(k, 1, 1, 1), v.reconstruction, decoder_log_variance(vae, v)).view(k, -1)
        log_ratio = losses.log_normal(z, torch.zeros_like(z), torch.zeros_like(z)) - losses.log_normal(z, mean, logvar)
        loss = -losses.importance_weighted_bound(log_likelihood + beta * log_ratio).mean()
        reconstruction = -log_likelihood.mean()
        kl = losses.kl_to_standard_normal(mean, logvar)  # reported only
    opts["vae"].zero_grad(set_to_none=True)
    precision.backward_step("vae", loss, opts["vae"])
    return {"loss": loss.detach(), "reconstruction": reconstruction.detach(), "kl": kl.detach()}


@torch.no_grad()
def vae_test_loss(vae: nn.Module, images: torch.Tensor, cfg: RunConfig, batch_size: int = BATCH_SIZE,
                  seed: int = 0, labels: torch.Tensor | None = None) -> dict[str, float]:
    """The end-of-run test metrics (family.test_metrics): negative ELBO `loss`, `reconstruction`
    and `kl`, nats per image, on held-out uint8 images, KL weight 1 whatever the training beta.

    Not a second estimator: these are likelihood.vae_bounds' `elbo`, `reconstruction` and `kl` with
    K = 1 (one z per image), the run's decoder (its learned or fixed Gaussian variance included) and
    the run's training targets (grey levels, or with vae.binarize=dynamic one binarisation drawn from
    `seed`). So `loss` is exactly `genforge eval --metrics nll --nll-k 1 --binarize {none|dynamic}`'s
    test_elbo on the same images and seed. As there, the ELBO's KL part is the one-sample Monte-Carlo
    term (the IWAE bound's), and `kl` the closed form: loss = reconstruction + kl in expectation.
    All draws come from private generators seeded by (seed, image index): the global RNG is
    untouched and batch_size only bounds memory.
    """
    binarize = "dynamic" if cfg.vae.binarize == "dynamic" else "none"
    values = vae_likelihood(vae, images, cfg.vae.reconstruction, labels if cfg.model.num_classes else None, k=1,
                            binarize=binarize, seed=seed, batch_size=batch_size,
                            decoder_logvar=decoder_log_variance(vae, cfg.vae))
    return {"loss": values["elbo"], "reconstruction": values["reconstruction"], "kl": values["kl"]}
