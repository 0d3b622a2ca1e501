"""The importance-sampled likelihood: exact on a model whose likelihood is known, a bound elsewhere."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genforge.config import ModelConfig
from genforge.errors import GenforgeError
from genforge.families.vae.likelihood import binarize_images, nll_per_image, vae_likelihood
from tests.conftest import build_model_networks as build_networks


class LinearGaussianVAE(nn.Module):
    """p(z) = N(0, I), p(x|z) = N(Wz + b, I/2) (genforge's Gaussian decoder convention), with W's
    columns orthogonal so that the true posterior is diagonal; `exact_posterior` makes q equal to it.

    Then log p(x) = log N(x; b, W W^T + I/2) in closed form."""

    def __init__(self, dim: int = 6, latent: int = 3, exact_posterior: bool = True):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn(dim, latent, generator=g, dtype=torch.float64))
        self.scales = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)[:latent]
        self.weight = nn.Parameter((q * self.scales).float())
        self.bias = nn.Parameter(torch.randn(dim, generator=g))
        self.exact_posterior = exact_posterior
        self.dim = dim

    def encode(self, x):
        x = x.flatten(1)
        if not self.exact_posterior:
            return torch.zeros(len(x), self.weight.shape[1]), torch.zeros(len(x), self.weight.shape[1])
        # Posterior precision I + W^T W / (1/2) is diagonal: 1 + 2 s^2.
        precision = 1 + 2 * self.scales.float() ** 2
        mean = 2 * (x - self.bias) @ self.weight / precision
        return mean, (-precision.log()).expand_as(mean)

    def decode(self, z):
        return (z @ self.weight.T + self.bias).view(-1, 1, 1, self.dim)

    def exact_nll(self, x):
        covariance = self.weight.double() @ self.weight.double().T + 0.5 * torch.eye(self.dim, dtype=torch.float64)
        dist = torch.distributions.MultivariateNormal(self.bias.double(), covariance)
        return -dist.log_prob(x.flatten(1).double()).detach()


def test_iwae_is_exact_with_the_true_posterior():
    model = LinearGaussianVAE()
    x = torch.rand(20, 1, 1, 6)
    exact = model.exact_nll(x)
    for k in (1, 7):
        nll, elbo = nll_per_image(model, x, "gaussian", k=k)
        # All importance weights equal p(x): bound and ELBO are the likelihood itself.
        assert torch.allclose(nll, exact, atol=1e-4)
        assert torch.allclose(elbo, exact, atol=1e-4)
    values = vae_likelihood(model, x, "gaussian", k=50, binarize="none", batch_size=6, samples_per_pass=40)
    assert values["nll"] == pytest.approx(float(exact.mean()), abs=1e-4)


def test_iwae_tightens_towards_the_likelihood_with_a_poor_proposal():
    model = LinearGaussianVAE(exact_posterior=False)  # q(z|x) = the prior: a loose bound at K = 1
    x = torch.rand(100, 1, 1, 6)
    exact = float(model.exact_nll(x).mean())
    gaps = []
    for k in (1, 10, 100, 1000):
        nll, elbo = nll_per_image(model, x, "gaussian", k=k)
        assert (nll <= elbo + 1e-9).all()  # the bound is never above the negative ELBO (Jensen)
        gaps.append(float(nll.mean()) - exact)
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] > -0.02, gaps  # Burda et al. 2016, theorem 1
    assert gaps[3] < 0.1 * gaps[0]


def tiny_vae(reconstruction_shape=(1, 28, 28)):
    torch.manual_seed(0)
    cfg = ModelConfig(name="vae-mlp", latent_dim=4, width=32, image_size=28, channels=1)
    return build_networks(cfg)["vae"]


def test_bound_below_negative_elbo_on_a_real_vae(digits):
    vae = tiny_vae()
    x = digits.images[:32]
    for k in (1, 5, 50):
        nll, elbo = nll_per_image(vae, x, "bernoulli", k=k, binarize="dynamic")
        assert (nll <= elbo + 1e-9).all()
    means = [float(nll_per_image(vae, x, "bernoulli", k=k, binarize="dynamic")[0].mean()) for k in (1, 10, 100)]
    assert means[0] > means[1] > means[2]


def test_vae_likelihood_report_and_global_rng(digits):
    vae = tiny_vae()
    state = torch.get_rng_state()
    values = vae_likelihood(vae, digits.images[:40], "bernoulli", k=20, batch_size=16)
    assert torch.equal(state, torch.get_rng_state())
    assert set(values) == {"nll", "elbo", "reconstruction", "kl", "mse"}
    assert values["nll"] <= values["elbo"]
    assert values["elbo"] == pytest.approx(values["reconstruction"] + values["kl"], rel=0.05)
    assert vae.training  # mode restored
    assert vae_likelihood(vae, digits.images[:40], "bernoulli", k=20, batch_size=16) == values  # seeded


def test_binarisation_modes():
    x = torch.tensor([[[[0, 100, 128, 255]]]], dtype=torch.uint8)
    assert binarize_images(x, "threshold").flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    assert binarize_images(x, "none").flatten().tolist() == pytest.approx([0, 100 / 255, 128 / 255, 1])
    dynamic = binarize_images(x.expand(1, 1, 1000, 4).contiguous(), "dynamic", seed=0)
    assert set(dynamic.unique().tolist()) <= {0.0, 1.0}
    assert dynamic[..., 1].mean().item() == pytest.approx(100 / 255, abs=0.05)
    with pytest.raises(GenforgeError):
        binarize_images(x, "sometimes")


def test_bad_settings():
    vae = tiny_vae()
    with pytest.raises(GenforgeError, match="K >= 1"):
        vae_likelihood(vae, torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "bernoulli", k=0)
    with pytest.raises(GenforgeError, match="Gaussian"):
        vae_likelihood(vae, torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "gaussian", binarize="dynamic")


def test_conditional_vae_gets_its_labels():
    class Conditional(LinearGaussianVAE):
        def encode(self, x, labels):
            assert labels.shape == (x.shape[0],)
            return super().encode(x)

        def decode(self, z, labels):
            assert labels.shape == (z.shape[0],)
            return super().decode(z)

    model = Conditional()
    x = torch.rand(5, 1, 1, 6)
    values = vae_likelihood(model, x, "gaussian", labels=torch.arange(5), k=3, binarize="none")
    assert math.isfinite(values["nll"])
