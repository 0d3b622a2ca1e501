"""One optimisation step per model family. A step takes the networks, their optimisers and a
batch, and returns its losses as detached tensors on the device (no host synchronisation: the
loop reads them every log_every steps)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses
from ..augment import diff_augment
from ..config import RunConfig


@dataclass
class Batch:
    images: torch.Tensor
    """uint8 (N, C, H, W) on the training device."""
    labels: torch.Tensor | None = None
    step: int = 0
    """The training step the batch was drawn for (lazy regularisers use it)."""
    extra: Callable[[int], "Batch"] | None = None
    """extra(k), k >= 1: another batch for the same step, a function of (seed, step, k) only;
    None (a batch built by hand) makes steps that want more batches reuse this one."""


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the range of a tanh generator)."""
    return images.float().div_(127.5).sub_(1.0)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1] (Bernoulli means / Gaussian targets)."""
    return images.float().div_(255.0)


def autocast(device: torch.device, precision: str):
    """Mixed precision context for the forward passes; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class Precision:
    """Autocast plus, for fp16, one gradient scaler per optimiser (bf16 needs none)."""

    def __init__(self, device: torch.device, precision: str, names: list[str]):
        self.device, self.precision = device, precision
        enabled = precision == "fp16"
        self.scalers = {n: torch.amp.GradScaler(device.type, enabled=enabled) for n in names}

    def context(self):
        return autocast(self.device, self.precision)

    def backward_step(self, name: str, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        scaler = self.scalers[name]
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def state_dict(self) -> dict:
        return {n: s.state_dict() for n, s in self.scalers.items()}

    def load_state_dict(self, state: dict) -> None:
        for n, s in self.scalers.items():
            if n in state and state[n]:
                s.load_state_dict(state[n])


def gan_step(nets: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer], batch: Batch,
             cfg: RunConfig, precision: Precision) -> dict[str, torch.Tensor]:
    """gan.d_steps discriminator updates, then one generator update.

    The loss pair comes from gan.loss; DiffAugment (gan.diffaugment) transforms real and fake
    images alike before every discriminator call; the gradient penalty (every D update) or lazy R1
    (first D update of steps divisible by gan.r1_every) is added to the discriminator's loss;
    acgan heads add their cross-entropy to both losses.
    """
    generator, discriminator = nets["generator"], nets["discriminator"]
    g = cfg.gan
    loss_d_fn, loss_g_fn = losses.DISCRIMINATOR_LOSSES[g.loss], losses.GENERATOR_LOSSES[g.loss]
    acgan = bool(cfg.model.num_classes) and cfg.model.class_head in ("acgan", "both")
    augment = (lambda x: diff_augment(x, g.diffaugment)) if g.diffaugment else (lambda x: x)
    stats: dict[str, torch.Tensor] = {}

    for k in range(g.d_steps):
        b = batch if k == 0 or batch.extra is None else batch.extra(k)
        real = to_signed(b.images)
        z = torch.randn(real.shape[0], cfg.model.latent_dim, device=real.device)
        # Conditional models see the batch's labels: fakes are drawn for the real batch's classes.
        cond = (b.labels,) if cfg.model.num_classes else ()
        last = k == g.d_steps - 1

        # Discriminator: e.g. maximise log D(x) + log(1 - D(G(z))) for the plain GAN (fakes
        # detached: G is not updated here). The last D update's fakes are reused by the G update.
        with precision.context(), torch.set_grad_enabled(last):
            fake = generator(z, *cond)
        with precision.context():
            real_in, fake_in = augment(real), augment(fake.detach())
            if acgan:
                real_logits, real_class = discriminator(real_in, *cond, return_class_logits=True)
                fake_logits, fake_class = discriminator(fake_in, *cond, return_class_logits=True)
            else:
                real_logits, fake_logits = discriminator(real_in, *cond), discriminator(fake_in, *cond)
        loss_d = loss_d_fn(real_logits.float(), fake_logits.float())
        if acgan:  # Odena et al. 2017, eq. 2: D maximises the log-likelihood of the right class, real and fake
            class_loss = (F.cross_entropy(real_class.float(), b.labels) + F.cross_entropy(fake_class.float(), b.labels))
            loss_d = loss_d + g.acgan_weight * class_loss
            stats["class_loss_d"] = class_loss.detach()
        # Penalties in fp32 (second derivatives overflow easily in fp16), on augmented images.
        critic = lambda x: discriminator(x, *cond)  # noqa: E731
        if g.gradient_penalty:
            penalty = losses.gradient_penalty(critic, real_in.float(), fake_in.float())
            loss_d = loss_d + g.gradient_penalty * penalty
            stats["gradient_penalty"] = penalty.detach()
        if g.r1_gamma and k == 0:
            # Lazy R1 (Karras et al. 2020, section 3.1): every r1_every steps, r1_every times as strong.
            # Which steps is a function of the step number alone, so resuming needs no counter.
            if batch.step % g.r1_every == 0:
                r1_term = 0.5 * g.r1_gamma * g.r1_every * losses.r1_penalty(critic, real_in.float())
                loss_d = loss_d + r1_term
            else:
                r1_term = torch.zeros((), device=real.device)
            stats["r1_term"] = r1_term.detach()  # its window mean is the average strength per step
        opts["discriminator"].zero_grad(set_to_none=True)
        precision.backward_step("discriminator", loss_d, opts["discriminator"])

    # Generator: the loss's generator side on the last fakes (e.g. non-saturating: maximise
    # log D(G(z))). D's weights get no gradient here, which also saves their backward pass.
    discriminator.requires_grad_(False)
    with precision.context():
        fake_in = augment(fake)
        if acgan:
            fake_logits, fake_class = discriminator(fake_in, *cond, return_class_logits=True)
        else:
            fake_logits = discriminator(fake_in, *cond)
    loss_g = loss_g_fn(fake_logits.float())
    if acgan:  # Odena et al. 2017, eq. 3: G also maximises the log-likelihood of the class it was asked for
        class_loss_g = F.cross_entropy(fake_class.float(), b.labels)
        loss_g = loss_g + g.acgan_weight * class_loss_g
        stats["class_loss_g"] = class_loss_g.detach()
    opts["generator"].zero_grad(set_to_none=True)
    precision.backward_step("generator", loss_g, opts["generator"])
    discriminator.requires_grad_(True)
    return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), **stats}


def vae_step(nets: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer], batch: Batch,
             cfg: RunConfig, precision: Precision) -> dict[str, torch.Tensor]:
    vae = nets["vae"]
    x = to_unit(batch.images)
    cond = (batch.labels,) if cfg.model.num_classes else ()
    # Negative ELBO = -E_q[log p(x|z)] + KL(q(z|x) || p(z)), in nats per image.
    with precision.context():
        out, mean, logvar = vae(x, *cond)
    reconstruction = losses.RECONSTRUCTION_LOSSES[cfg.vae.reconstruction](out.float(), x)
    kl = losses.kl_to_standard_normal(mean.float(), logvar.float())
    loss = reconstruction + cfg.vae.kl_weight * kl
    opts["vae"].zero_grad(set_to_none=True)
    precision.backward_step("vae", loss, opts["vae"])
    return {"loss": loss.detach(), "reconstruction": reconstruction.detach(), "kl": kl.detach()}


STEPS = {"gan": gan_step, "vae": vae_step}


@torch.no_grad()
def vae_test_loss(vae: nn.Module, images: torch.Tensor, cfg: RunConfig, batch_size: int = 500,
                  seed: int = 0, labels: torch.Tensor | None = None) -> dict[str, float]:
    """Negative ELBO (nats per image) and its two terms on held-out uint8 images, one z per image."""
    vae.eval()
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    totals = {"loss": 0.0, "reconstruction": 0.0, "kl": 0.0}
    try:
        for i, chunk in enumerate(images.split(batch_size)):
            x = to_unit(chunk)
            cond = (labels[i * batch_size:(i + 1) * batch_size],) if cfg.model.num_classes else ()
            out, mean, logvar = vae(x, *cond)
            rec = losses.RECONSTRUCTION_LOSSES[cfg.vae.reconstruction](out.float(), x).item()
            kl = losses.kl_to_standard_normal(mean.float(), logvar.float()).item()
            totals["reconstruction"] += rec * len(chunk)
            totals["kl"] += kl * len(chunk)
            totals["loss"] += (rec + cfg.vae.kl_weight * kl) * len(chunk)
    finally:
        torch.set_rng_state(generator_state)
        vae.train()
    return {k: v / len(images) for k, v in totals.items()}
