"""Training objectives and the denoiser D(x; sigma) they define.

Every objective is written in the variance-exploding form of Karras et al. 2022 (EDM), section 2:
x = y + sigma n with y the clean image (in [-1, 1]) and n ~ N(0, I), and a denoiser D(x; sigma)
that estimates y. Samplers (samplers.py) only see D, so every sampler works with every objective.

- 'edm' (EDM, table 1 and section 5): D = c_skip x + c_out F(c_in x, c_noise) with
  c_skip = sigma_data^2 / (sigma^2 + sigma_data^2), c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2),
  c_in = 1 / sqrt(sigma^2 + sigma_data^2), c_noise = ln(sigma) / 4; training noise levels
  ln(sigma) ~ N(P_mean, P_std^2); loss lambda(sigma) ||D(y + n; sigma) - y||^2 with
  lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2.
- 'eps' (Ho et al. 2020, algorithm 1): x_t = sqrt(abar_t) y + sqrt(1 - abar_t) eps with a discrete
  schedule, loss ||eps - F(x_t, t)||^2. In the EDM form (EDM table 1, "VP"): sigma_t = sqrt((1 - abar_t)
  / abar_t), x = x_t / sqrt(abar_t), D = x - sigma F(x / sqrt(1 + sigma^2), t).
- 'v' (Salimans and Ho 2022, appendix D): F predicts v = sqrt(abar) eps - sqrt(1 - abar) y, loss
  ||v - F||^2; then D = x / (1 + sigma^2) - sigma / sqrt(1 + sigma^2) F(x / sqrt(1 + sigma^2), t).
"""

from __future__ import annotations

import math

import torch

from ...conditioning import Condition
from .config import DiffusionConfig

# --- the EDM preconditioning (Karras et al. 2022, table 1) -------------------------------------------

def edm_preconditioning(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in, c_noise) of EDM table 1 for noise levels sigma."""
    total = sigma ** 2 + sigma_data ** 2
    return sigma_data ** 2 / total, sigma * sigma_data / total.sqrt(), 1 / total.sqrt(), sigma.log() / 4


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (EDM eq. 8 with table 1), which
    makes the effective weight of F's loss lambda c_out^2 = 1 at every noise level."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


# --- the discrete schedules of DDPM ------------------------------------------------------------------

def alphas_cumprod(schedule: str, timesteps: int) -> torch.Tensor:
    """abar_t for t = 0..T-1 in float64: 'linear' betas from 1e-4 to 0.02 (Ho et al. 2020, section 4)
    or 'cosine' (Nichol and Dhariwal 2021, eq. 17, s = 0.008, betas clipped at 0.999)."""
    if schedule == "linear":
        betas = torch.linspace(1e-4 * 1000 / timesteps, 0.02 * 1000 / timesteps, timesteps, dtype=torch.float64)
        return torch.cumprod(1 - betas, 0)
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0)


def schedule_sigmas(d: DiffusionConfig) -> torch.Tensor:
    """sigma_t = sqrt((1 - abar_t) / abar_t) of the discrete schedule, increasing with t (float64)."""
    abar = alphas_cumprod(d.schedule, d.timesteps)
    return ((1 - abar) / abar).sqrt()


def sigma_to_t(sigma: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Continuous timestep of a noise level: linear interpolation of t in ln(sigma) between the
    schedule's steps (EDM appendix C.3.1 evaluates VP models between their training steps too)."""
    log_sigmas = sigmas.log().to(sigma.device)
    log_sigma = sigma.double().log().clamp(log_sigmas[0], log_sigmas[-1])
    upper = torch.searchsorted(log_sigmas, log_sigma.reshape(-1)).clamp(1, len(sigmas) - 1).reshape(log_sigma.shape)
    lo, hi = log_sigmas[upper - 1], log_sigmas[upper]
    return (upper - 1 + (log_sigma - lo) / (hi - lo)).float()


def sigma_range(d: DiffusionConfig) -> tuple[float, float]:
    """The noise levels a model was trained on: EDM's sampling range, or the schedule's ends."""
    if d.objective == "edm":
        return d.sigma_min, d.sigma_max
    sigmas = schedule_sigmas(d)
    return float(sigmas[0]), float(sigmas[-1])


# --- the denoiser D(x; sigma) ------------------------------------------------------------------------

def denoise(net: torch.nn.Module, x: torch.Tensor, sigma: torch.Tensor, cond: Condition, d: DiffusionConfig) -> torch.Tensor:
    """D(x; sigma): the estimate of the clean image, in float32, for any objective (see the module
    docstring). sigma is a scalar or one level per image."""
    # One level per image; broadcasting against x's batch (not expand(len(x))) keeps the batch size
    # symbolic when the denoiser is exported (genforge export).
    sigma = sigma.float().to(x.device).reshape(-1, 1, 1, 1) * torch.ones_like(x[:, :1, :1, :1], dtype=torch.float32)
    args = (cond.labels, cond.text, cond.text_mask)
    if d.objective == "edm":
        c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, d.sigma_data)
        out = net((c_in * x).to(x.dtype), c_noise.flatten(), *args)
        return c_skip * x.float() + c_out * out.float()
    t = sigma_to_t(sigma.flatten(), schedule_sigmas(d))
    c_in = 1 / (1 + sigma ** 2).sqrt()
    out = net((c_in * x).to(x.dtype), t, *args).float()
    if d.objective == "eps":
        return x.float() - sigma * out
    return x.float() * c_in ** 2 - sigma * c_in * out


def training_loss(net: torch.nn.Module, y: torch.Tensor, cond: Condition, d: DiffusionConfig,
                  precision=None) -> torch.Tensor:
    """The objective's loss on clean images y in [-1, 1], a scalar (mean over images and pixels).
    Noise levels and noise come from the global (checkpointed) torch RNG."""
    n = len(y)
    args = (cond.labels, cond.text, cond.text_mask)
    context = precision.context() if precision is not None else torch.autocast("cpu", enabled=False)
    if d.objective == "edm":
        sigma = (torch.randn(n, 1, 1, 1, device=y.device) * d.p_std + d.p_mean).exp()
        noisy = y + sigma * torch.randn_like(y)
        with context:
            c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, d.sigma_data)
            out = net(c_in * noisy, c_noise.flatten(), *args)
        denoised = c_skip * noisy + c_out * out.float()
        return (edm_loss_weight(sigma, d.sigma_data) * (denoised - y) ** 2).mean()
    abar = alphas_cumprod(d.schedule, d.timesteps).float().to(y.device)
    t = torch.randint(0, d.timesteps, (n,), device=y.device)
    a = abar[t].sqrt().reshape(-1, 1, 1, 1)
    s = (1 - abar[t]).sqrt().reshape(-1, 1, 1, 1)
    eps = torch.randn_like(y)
    with context:
        out = net(a * y + s * eps, t.float(), *args).float()
    target = eps if d.objective == "eps" else a * eps - s * y
    return ((out - target) ** 2).mean()
