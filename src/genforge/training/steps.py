"""One optimisation step per model family. A step takes the networks, their optimisers and a
batch, and returns its losses as detached tensors on the device (no host synchronisation: the
loop reads them every log_every steps)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from .. import losses
from ..config import RunConfig


@dataclass
class Batch:
    images: torch.Tensor
    """uint8 (N, C, H, W) on the training device."""
    labels: torch.Tensor | None = None


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
    generator, discriminator = nets["generator"], nets["discriminator"]
    real = to_signed(batch.images)
    z = torch.randn(real.shape[0], cfg.model.latent_dim, device=real.device)
    # Conditional models see the batch's labels: fakes are drawn for the real batch's classes.
    cond = (batch.labels,) if cfg.model.num_classes else ()

    # Discriminator: maximise log D(x) + log(1 - D(G(z))) (fakes detached: G is not updated here).
    with precision.context():
        fake = generator(z, *cond)
        loss_d = losses.discriminator_loss(discriminator(real, *cond).float(),
                                           discriminator(fake.detach(), *cond).float())
    opts["discriminator"].zero_grad(set_to_none=True)
    precision.backward_step("discriminator", loss_d, opts["discriminator"])

    # Generator: non-saturating (maximise log D(G(z))) or the article's minimax (minimise
    # log(1 - D(G(z)))). D's weights get no gradient here, which also saves their backward pass.
    discriminator.requires_grad_(False)
    with precision.context():
        loss_g = losses.GENERATOR_LOSSES[cfg.gan.loss](discriminator(fake, *cond).float())
    opts["generator"].zero_grad(set_to_none=True)
    precision.backward_step("generator", loss_g, opts["generator"])
    discriminator.requires_grad_(True)
    return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}


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
