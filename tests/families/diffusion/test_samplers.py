"""The samplers on 2-D Gaussian data, where the exact denoiser is known in closed form:
E[y | y + sigma n = x] = mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu).

With this denoiser every deterministic sampler is an affine map x_T -> x_0 of its starting noise,
so the distribution it produces from x_T ~ N(0, sigma_max^2 I) is Gaussian with mean f(0) and
covariance sigma_max^2 A A^T, A's columns f(e_j) - f(0): computed exactly, with no Monte-Carlo
error, and compared with the data's mean and covariance."""

from __future__ import annotations

import pytest
import torch

from genforge.families.diffusion import samplers
from genforge.families.diffusion.config import DiffusionConfig
from genforge.families.diffusion.objectives import alphas_cumprod, schedule_sigmas

MU = torch.tensor([0.3, -0.2], dtype=torch.float64)
SIGMA = torch.tensor([[0.25, 0.10], [0.10, 0.16]], dtype=torch.float64)
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def exact_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    gain = SIGMA @ torch.linalg.inv(SIGMA + sigma ** 2 * torch.eye(2, dtype=torch.float64))
    return MU + (x - MU) @ gain.T


def run(name: str, sigmas: torch.Tensor, x: torch.Tensor):
    if name == "heun":
        return samplers.edm_heun(exact_denoiser, x, sigmas)
    if name == "dpm2m":
        return samplers.dpm_solver_2m(exact_denoiser, x, sigmas)
    return samplers.ddim(exact_denoiser, x, sigmas, eta=0.0)


def output_distribution(name: str, sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean and covariance of the sampler's output for x_T ~ N(0, sigmas[0]^2 I), and its NFE."""
    basis = torch.cat([torch.zeros(1, 2), torch.eye(2)]).double()
    out, nfe = run(name, sigmas, basis)
    offset, columns = out[0], (out[1:] - out[0]).T
    return offset, float(sigmas[0]) ** 2 * columns @ columns.T, nfe


def error(name: str, steps: int) -> float:
    mean, cov, _ = output_distribution(name, samplers.edm_sigmas(steps, SIGMA_MIN, SIGMA_MAX))
    return max((mean - MU).abs().max().item(), (cov - SIGMA).abs().max().item())


DETERMINISTIC = ["ddim", "heun", "dpm2m"]
# Stated tolerances on the largest error of a mean or covariance entry (the data's variances are
# 0.25 and 0.16) at 64 steps; measured (pytest -s, test_print_errors): ddim 2.1e-2, heun 1.8e-3,
# dpm2m 1.9e-3.
TOLERANCE_64 = {"ddim": 3e-2, "heun": 3e-3, "dpm2m": 3e-3}
ORDER = {"ddim": 1, "heun": 2, "dpm2m": 2}


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_samplers_reproduce_the_gaussian(name):
    assert error(name, 64) < TOLERANCE_64[name]


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_error_falls_as_the_steps_grow(name):
    """From 8 steps on, every doubling lowers the error, by about 2^order (at 4 steps DPM-Solver++
    happens to land closer than at 8: its error is not monotone that early)."""
    errors = [error(name, steps) for steps in (8, 16, 32, 64)]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-2] / errors[-1] > 0.8 * 2 ** ORDER[name], errors


def test_second_order_beats_first_order_at_equal_steps():
    """Heun and DPM-Solver++(2M) are second order, DDIM (Euler) first: at 16 steps they are closer."""
    assert error("heun", 16) < error("ddim", 16) and error("dpm2m", 16) < error("ddim", 16)


def test_print_errors(capsys):
    rows = [f"{name:6s} " + " ".join(f"{error(name, s):.2e}" for s in (4, 8, 16, 32, 64)) for name in DETERMINISTIC]
    with capsys.disabled():
        print("\nmax |error| of mean/cov entries at 4, 8, 16, 32, 64 steps:\n" + "\n".join(rows))


def test_nfe():
    sigmas = samplers.edm_sigmas(18, SIGMA_MIN, SIGMA_MAX)
    assert output_distribution("heun", sigmas)[2] == 35 == samplers.nfe_of("heun", sigmas)  # EDM: 18 steps, 35 NFE
    for name in ("ddim", "dpm2m"):
        assert output_distribution(name, sigmas)[2] == 18 == samplers.nfe_of(name, sigmas)


def test_edm_time_discretisation():
    """EDM eq. 5: the ends are sigma_max and sigma_min, then 0; rho = 1 is a straight line."""
    s = samplers.edm_sigmas(5, 0.1, 10.0, rho=7)
    assert s[0].item() == pytest.approx(10.0) and s[4].item() == pytest.approx(0.1) and s[5] == 0
    assert torch.all(s[1:] < s[:-1])
    linear = samplers.edm_sigmas(5, 1.0, 5.0, rho=1)
    assert torch.allclose(linear[:5], torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64))
    i, n, rho = 2, 5, 7.0
    expected = (10.0 ** (1 / rho) + i / (n - 1) * (0.1 ** (1 / rho) - 10.0 ** (1 / rho))) ** rho
    assert s[2].item() == pytest.approx(expected)


def test_ddim_on_a_ddpm_schedule_reproduces_the_gaussian():
    """DDIM's strided timesteps of the linear DDPM schedule (sigma_T = 157): the same check."""
    sigmas = samplers.strided_sigmas(100, schedule_sigmas(DiffusionConfig(objective="eps")))
    assert len(sigmas) == 101 and sigmas[0] > 100 and sigmas[-1] == 0
    mean, cov, _ = output_distribution("ddim", sigmas)
    assert (mean - MU).abs().max() < 1e-2 and (cov - SIGMA).abs().max() < 2e-2
    assert alphas_cumprod("linear", 1000)[-1] < 1e-4


def test_ddim_eta_zero_is_deterministic_and_eta_one_is_not():
    sigmas = samplers.edm_sigmas(8, SIGMA_MIN, SIGMA_MAX)
    x = torch.randn(16, 2, dtype=torch.float64) * SIGMA_MAX

    def noise(i):
        return torch.randn(16, 2, dtype=torch.float64)

    a, _ = samplers.ddim(exact_denoiser, x, sigmas, eta=0.0, noise=noise)
    b, _ = samplers.ddim(exact_denoiser, x, sigmas, eta=0.0, noise=noise)
    assert torch.equal(a, b)
    c, _ = samplers.ddim(exact_denoiser, x, sigmas, eta=1.0, noise=noise)
    assert not torch.allclose(a, c)


def test_ddpm_ancestral_reproduces_the_gaussian():
    """Stochastic, so by Monte Carlo: 40,000 draws, tolerance 0.02 (about 4 standard errors)."""
    generator = torch.Generator().manual_seed(0)
    n = 40_000

    def noise(i):
        return torch.randn(n, 2, generator=generator, dtype=torch.float64)

    sigmas = samplers.edm_sigmas(256, SIGMA_MIN, SIGMA_MAX)
    x, nfe = samplers.ddpm_ancestral(exact_denoiser, noise(-1) * SIGMA_MAX, sigmas, noise)
    assert nfe == 256
    assert (x.mean(0) - MU).abs().max() < 0.02
    assert (torch.cov(x.T) - SIGMA).abs().max() < 0.02


def test_ddpm_ancestral_equals_ddim_with_eta_one():
    """Song et al. 2021: eta = 1 is DDPM's ancestral sampler (the same noise gives the same path)."""
    sigmas = samplers.edm_sigmas(6, SIGMA_MIN, SIGMA_MAX)
    x = torch.randn(8, 2, dtype=torch.float64) * SIGMA_MAX
    draws = [torch.randn(8, 2, dtype=torch.float64) for _ in range(6)]
    a, _ = samplers.ddpm_ancestral(exact_denoiser, x, sigmas, lambda i: draws[i])
    b, _ = samplers.ddim(exact_denoiser, x, sigmas, eta=1.0, noise=lambda i: draws[i])
    assert torch.allclose(a, b, atol=1e-10)
