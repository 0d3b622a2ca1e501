"""Samplers: one function each, from the papers, on a denoiser D(x, sigma) -> estimate of the clean
image (objectives.denoise), in the variance-exploding form x = y + sigma n of Karras et al. 2022.

Each takes the starting point x (pure noise sigmas[0] * z, or an SDEdit start), the decreasing
noise levels `sigmas` ending in 0, and returns (x, nfe): the result and its number of network
evaluations. They are shape-agnostic (elementwise arithmetic only), so the tests run them on 2-D
Gaussian data with an exact denoiser. `noise(i)` gives the fresh Gaussian noise of step i for the
stochastic ones (seeded by the caller, so sampling is deterministic under a seed); `project(x, i)`,
if given, is applied after step i (inpainting puts the known pixels back, at noise level sigmas[i + 1]).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Noise = Callable[[int], torch.Tensor]
Project = Callable[[torch.Tensor, int], torch.Tensor] | None


def edm_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """EDM's time discretisation (Karras et al. 2022, eq. 5), float64:
    sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho for
    i < N, and sigma_N = 0. One step goes from sigma_max straight to 0."""
    if steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    i = torch.arange(steps, dtype=torch.float64)
    ramp = sigma_max ** (1 / rho) + i / (steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return torch.cat([ramp ** rho, torch.zeros(1, dtype=torch.float64)])


def strided_sigmas(steps: int, schedule: torch.Tensor) -> torch.Tensor:
    """The noise levels of `steps` timesteps evenly spaced over a discrete schedule (sigma_t,
    increasing in t), from t = T - 1 down to t = 0, then 0: DDIM's uniform sub-sequence tau
    (Song et al. 2021, section 4.2 and appendix D.2)."""
    t = torch.linspace(len(schedule) - 1, 0, steps).round().long().unique_consecutive()
    return torch.cat([schedule[t], torch.zeros(1, dtype=schedule.dtype)])


def _sigma(sigmas: torch.Tensor, i: int, like: torch.Tensor) -> torch.Tensor:
    return sigmas[i].to(like.dtype).to(like.device)


def _project(project: Project, x: torch.Tensor, i: int) -> torch.Tensor:
    return project(x, i) if project is not None else x


def ddpm_ancestral(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: Noise,
                   project: Project = None) -> tuple[torch.Tensor, int]:
    """DDPM's ancestral sampler (Ho et al. 2020, algorithm 2): draw x_s from the posterior
    q(x_s | x_t, y = D(x_t)) at every step. For x = y + sigma n this Gaussian has mean
    y + (sigma_s / sigma_t)^2 (x_t - y) and variance sigma_s^2 (sigma_t^2 - sigma_s^2) / sigma_t^2
    (the DDPM posterior, eq. 7, with beta-tilde, written in the variance-exploding form)."""
    for i in range(len(sigmas) - 1):
        s_t, s_s = _sigma(sigmas, i, x), _sigma(sigmas, i + 1, x)
        y = denoiser(x, s_t)
        std = s_s * (s_t ** 2 - s_s ** 2).clamp(min=0).sqrt() / s_t
        x = y + (s_s / s_t) ** 2 * (x - y) + std * noise(i)
        x = _project(project, x, i)
    return x, len(sigmas) - 1


def ddim(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 0.0, noise: Noise | None = None,
         project: Project = None) -> tuple[torch.Tensor, int]:
    """DDIM (Song et al. 2021, eq. 12): x_s = y + sqrt(sigma_s^2 - c^2) eps + c z, with y = D(x_t),
    eps = (x_t - y) / sigma_t the implied noise, and c = eta sigma_s sqrt(sigma_t^2 - sigma_s^2) / sigma_t
    (eq. 16's sigma_t(eta) in the variance-exploding form). eta = 0 is deterministic (Euler's
    method on the probability-flow ODE, EDM section 3); eta = 1 is DDPM's posterior variance."""
    if eta > 0 and noise is None:
        raise ValueError("ddim with eta > 0 needs noise")
    for i in range(len(sigmas) - 1):
        s_t, s_s = _sigma(sigmas, i, x), _sigma(sigmas, i + 1, x)
        y = denoiser(x, s_t)
        eps = (x - y) / s_t
        c = eta * s_s * (s_t ** 2 - s_s ** 2).clamp(min=0).sqrt() / s_t
        x = y + (s_s ** 2 - c ** 2).clamp(min=0).sqrt() * eps
        if eta > 0:
            x = x + c * noise(i)
        x = _project(project, x, i)
    return x, len(sigmas) - 1


def edm_heun(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
             project: Project = None) -> tuple[torch.Tensor, int]:
    """EDM's deterministic sampler (Karras et al. 2022, algorithm 1): Heun's second-order method on
    the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma, with an Euler step into sigma = 0.
    N steps cost 2N - 1 evaluations."""
    nfe = 0
    for i in range(len(sigmas) - 1):
        s_t, s_s = _sigma(sigmas, i, x), _sigma(sigmas, i + 1, x)
        slope = (x - denoiser(x, s_t)) / s_t
        nfe += 1
        x_next = x + (s_s - s_t) * slope
        if sigmas[i + 1] > 0:  # second-order correction (algorithm 1, lines 9-11)
            slope_next = (x_next - denoiser(x_next, s_s)) / s_s
            nfe += 1
            x_next = x + (s_s - s_t) * (slope + slope_next) / 2
        x = _project(project, x_next, i)
    return x, nfe


def dpm_solver_2m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                  project: Project = None) -> tuple[torch.Tensor, int]:
    """DPM-Solver++(2M) (Lu et al. 2022, algorithm 2), the multistep second-order solver in the data
    prediction y = D(x), with alpha = 1 and lambda = -ln sigma in the variance-exploding form:
    h_i = ln(sigma_{i-1} / sigma_i), r_i = h_{i-1} / h_i,
    D_i = (1 + 1 / (2 r_i)) y_{i-1} - 1 / (2 r_i) y_{i-2} (first step: D_1 = y_0),
    x_i = (sigma_i / sigma_{i-1}) x_{i-1} + (1 - sigma_i / sigma_{i-1}) D_i.
    The step into sigma = 0 is first-order (x = y), where h is infinite."""
    previous, h_previous = None, None
    for i in range(len(sigmas) - 1):
        s_t, s_s = _sigma(sigmas, i, x), _sigma(sigmas, i + 1, x)
        y = denoiser(x, s_t)
        if sigmas[i + 1] == 0:
            x = y
        else:
            h = torch.log(s_t / s_s)
            if previous is None:
                direction = y
            else:
                r = h_previous / h
                direction = (1 + 1 / (2 * r)) * y - 1 / (2 * r) * previous
            x = (s_s / s_t) * x + (1 - s_s / s_t) * direction
            previous, h_previous = y, h
        x = _project(project, x, i)
    return x, len(sigmas) - 1


SAMPLERS = {"ddpm": "DDPM ancestral (Ho et al. 2020)", "ddim": "DDIM (Song et al. 2021)",
            "heun": "EDM Heun 2nd order (Karras et al. 2022)", "dpm2m": "DPM-Solver++(2M) (Lu et al. 2022)"}


def nfe_of(sampler: str, sigmas: torch.Tensor) -> int:
    """Network evaluations a sampler spends on this grid (before any guidance doubling)."""
    steps = len(sigmas) - 1
    return 2 * steps - int(sigmas[-1] == 0) if sampler == "heun" else steps
