"""One optimisation step per model family. A step takes the networks, their optimisers and a
batch, and returns its losses as detached tensors on the device (no host synchronisation: the
loop reads them every log_every steps)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses
from ..augment import diff_augment
from ..config import RunConfig, VAEConfig


@dataclass
class Batch:
    images: torch.Tensor
    """uint8 (N, C, H, W) on the training device."""
    labels: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    """Paired data: uint8 (N, C, H, W) translations of `images`, on the training device."""
    step: int = 0
    """The step this batch is for (0-based): schedules (KL warm-up, pix2pix learning-rate decay, lazy R1) read it."""
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


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 arithmetic in hardware (AVX512-BF16 or AMX), from PyTorch's cpuinfo.

    Without them oneDNN emulates bf16 and autocast is slower than fp32, so 'auto' stays fp32.
    """
    try:
        flags = torch._C._cpu._get_cpu_capability()
    except (AttributeError, RuntimeError):  # older or non-x86 builds: no flags, no claim
        return False
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


def resolve_precision(device: torch.device, precision: str, convolutional: bool = True) -> str:
    """'auto' -> the fastest precision the device runs natively; other values are returned as given.

    CUDA: bf16 where the GPU supports it (Ampere and newer), else fp16 with a gradient scaler.
    CPU: bf16 for convolutional networks where cpu_has_native_bf16(), else fp32: the small dense
    networks gained nothing measurable from bf16 on CPU (docs/performance.md), the casts eat the
    gain. Anything else (mps, xpu, ...): fp32.
    """
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    if device.type == "cpu" and convolutional and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


class Precision:
    """Autocast plus, for fp16, one gradient scaler per optimiser (bf16 needs none).

    `precision` may be 'auto'; the resolved value is in `self.precision`.
    """

    def __init__(self, device: torch.device, precision: str, names: list[str]):
        precision = resolve_precision(device, precision)
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
             cfg: RunConfig, precision: Precision) -> dict[str, torch.Tensor]:
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


STEPS = {"gan": gan_step, "vae": vae_step}


@torch.no_grad()
def vae_test_loss(vae: nn.Module, images: torch.Tensor, cfg: RunConfig, batch_size: int = 500,
                  seed: int = 0, labels: torch.Tensor | None = None) -> dict[str, float]:
    """Negative ELBO (nats per image, KL weight 1 whatever the training beta) and its two terms on
    held-out uint8 images, one z per image; dynamically binarised runs see one binarisation drawn
    from `seed`."""
    vae.eval()
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    totals = {"loss": 0.0, "reconstruction": 0.0, "kl": 0.0}
    try:
        for i, chunk in enumerate(images.split(batch_size)):
            x = vae_targets(chunk, cfg.vae)
            cond = (labels[i * batch_size:(i + 1) * batch_size],) if cfg.model.num_classes else ()
            out, mean, logvar = vae(x, *cond)
            rec = -losses.reconstruction_log_likelihood(out.float(), x, cfg.vae.reconstruction,
                                                        decoder_log_variance(vae, cfg.vae)).mean().item()
            kl = losses.kl_to_standard_normal(mean.float(), logvar.float()).item()
            totals["reconstruction"] += rec * len(chunk)
            totals["kl"] += kl * len(chunk)
            totals["loss"] += (rec + kl) * len(chunk)
    finally:
        torch.set_rng_state(generator_state)
        vae.train()
    return {k: v / len(images) for k, v in totals.items()}


# --- pix2pix (Isola et al. 2017) ------------------------------------------------------------------

def linear_decay_factor(step: int, decay_start: int, decay_steps: int) -> float:
    """Learning-rate multiplier: 1 before `decay_start`, then linearly down to 0 over `decay_steps`:
    step decay_start + k (k = 0 .. decay_steps - 1) gets 1 - (k + 1) / (decay_steps + 1).

    The paper's schedule (constant, then linear decay to 0, as the reference code's 'linear' policy),
    derived from the step number alone, so resuming needs no scheduler state and a longer
    train.steps never changes the learning rate of steps already taken.
    """
    if decay_steps <= 0:
        return 1.0
    return max(0.0, 1.0 - max(0, step + 1 - decay_start) / (decay_steps + 1))


def set_decayed_lr(opts: dict[str, torch.optim.Optimizer], base_lr: dict[str, float], step: int,
                   decay_start: int, decay_steps: int) -> None:
    """Set each optimiser's learning rate to its base rate times linear_decay_factor at `step`."""
    factor = linear_decay_factor(step, decay_start, decay_steps)
    for name, opt in opts.items():
        for group in opt.param_groups:
            group["lr"] = base_lr[name] * factor


def pix2pix_generator_objective(fake_logits: torch.Tensor, fake: torch.Tensor, target: torch.Tensor,
                                cfg: RunConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """G's objective, the paper's eq. 4: gan_weight * L_cGAN(G, D) + lambda * L_L1(G).

    L_L1 = E|y - G(x)| (eq. 3, mean over pixels in the [-1, 1] range). Returns (total, adversarial, l1).
    """
    l1 = (target - fake).abs().mean()
    adversarial = (losses.GENERATOR_LOSSES[cfg.gan.loss](fake_logits) if cfg.pix2pix.gan_weight > 0
                   else torch.zeros((), device=fake.device))
    return cfg.pix2pix.gan_weight * adversarial + cfg.pix2pix.lambda_l1 * l1, adversarial, l1


def pix2pix_step(nets: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer], batch: Batch,
                 cfg: RunConfig, precision: Precision) -> dict[str, torch.Tensor]:
    from ..data.paired import jitter_pairs

    generator, discriminator = nets["generator"], nets["discriminator"]
    source, target = jitter_pairs(to_signed(batch.images), to_signed(batch.targets), cfg.pix2pix.jitter,
                                  cfg.pix2pix.flip)
    set_decayed_lr(opts, {"generator": cfg.train.lr, "discriminator": cfg.gan.lr_d or cfg.train.lr}, batch.step,
                   cfg.pix2pix.lr_decay_start, cfg.pix2pix.lr_decay_steps)
    adversarial = cfg.pix2pix.gan_weight > 0

    with precision.context():
        fake = generator(source)
    out = {}
    if adversarial:
        # D: maximise log D(x, y) + log(1 - D(x, G(x))) over patches; halved as in the paper
        # (section 3.3: "we divide the objective by 2 while optimizing D").
        with precision.context():
            loss_d = 0.5 * losses.discriminator_loss(discriminator(source, target).float(),
                                                     discriminator(source, fake.detach()).float())
        opts["discriminator"].zero_grad(set_to_none=True)
        precision.backward_step("discriminator", loss_d, opts["discriminator"])
        out["loss_d"] = loss_d.detach()

    # G: eq. 4. D's weights get no gradient here.
    discriminator.requires_grad_(False)
    with precision.context():
        fake_logits = discriminator(source, fake).float() if adversarial else None
    loss_g, loss_adv, l1 = pix2pix_generator_objective(fake_logits, fake.float(), target, cfg)
    opts["generator"].zero_grad(set_to_none=True)
    precision.backward_step("generator", loss_g, opts["generator"])
    discriminator.requires_grad_(True)
    out.update({"loss_g": loss_g.detach(), "loss_g_gan": loss_adv.detach(), "l1": l1.detach()})
    return out


STEPS["pix2pix"] = pix2pix_step
