"""VAE objectives: closed-form KL, the IWAE bound, beta and its warm-up, decoders, the VAE step."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch

from genforge import losses
from genforge.conditioning import Batch, Condition
from genforge.data import load_dataset
from genforge.errors import GenforgeError
from genforge.families.registry import build_networks, resolve_model
from genforge.families.vae.config import VAEConfig
from genforge.families.vae.step import kl_weight_at, vae_step, vae_targets
from genforge.runtime import Precision
from genforge.training.optim import make_optimizers
from tests.families.vae.vae_helpers import one_thread, tiny_config  # noqa: F401 - one_thread: an autouse fixture


def test_closed_form_kl_matches_monte_carlo():
    # KL(q || p) = E_q[log q(z) - log p(z)]; 200k samples give a standard error far below the tolerance.
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g) * 0.5
    z = mean + torch.exp(0.5 * logvar) * torch.randn(200_000, 3, 4, generator=g)
    monte_carlo = (losses.log_normal(z, mean, logvar) - losses.log_normal(z, torch.zeros(4), torch.zeros(4))).mean(0)
    closed = losses.kl_to_standard_normal(mean, logvar)  # batch mean of the per-row KL
    assert closed.item() == pytest.approx(monte_carlo.mean().item(), abs=0.02)
    for row in range(3):
        one = losses.kl_to_standard_normal(mean[row:row + 1], logvar[row:row + 1])
        assert one.item() == pytest.approx(monte_carlo[row].item(), abs=0.03)


def test_gaussian_log_likelihood_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mean, target = torch.rand(2, 1, 3, 3, generator=g), torch.rand(2, 1, 3, 3, generator=g)
    logvar = torch.randn(1, 3, 3, generator=g)
    expected = torch.distributions.Normal(mean, torch.exp(0.5 * logvar)).log_prob(target).flatten(1).sum(1)
    torch.testing.assert_close(losses.gaussian_log_likelihood(mean, target, logvar), expected)
    # variance 1/2 is the foundation's convention: -SSE - D/2 log(pi)
    torch.testing.assert_close(losses.reconstruction_log_likelihood(mean, target, "gaussian", torch.tensor(math.log(0.5))),
                               losses.reconstruction_log_likelihood(mean, target, "gaussian"))


def test_importance_weighted_bound_is_log_mean_exp():
    log_w = torch.tensor([[-1.0, -1000.0], [-3.0, -1001.0]])
    # by hand; the second column would underflow exp() in float32, logsumexp must not
    expected = torch.tensor([math.log((math.exp(-1) + math.exp(-3)) / 2), -1000 + math.log((1 + math.exp(-1)) / 2)])
    torch.testing.assert_close(losses.importance_weighted_bound(log_w), expected)
    torch.testing.assert_close(losses.importance_weighted_bound(log_w[:1]), log_w[0])  # K = 1: the weight itself


@functools.lru_cache(maxsize=1)
def _digits():
    return load_dataset("mnist-5k", split="test")


def _step_inputs(model="vae-mlp", **vae):
    cfg = tiny_config(model, vae={"reconstruction": "bernoulli", **vae})
    data = _digits()
    cfg = resolve_model(cfg, data)
    torch.manual_seed(0)
    nets = build_networks(cfg)
    opts = make_optimizers(cfg, nets)
    batch = Batch(data.images[:16], Condition(labels=data.labels[:16] if cfg.model.num_classes else None), step=0)
    return cfg, nets, opts, batch


def _bound(vae, x, k, reps, reconstruction="bernoulli"):
    """IWAE bound per image with k samples, averaged over `reps` independent draws."""
    mean, logvar = vae.encode(x)
    total = torch.zeros(len(x))
    for _ in range(reps):
        z = mean + torch.exp(0.5 * logvar) * torch.randn(k, *mean.shape)
        out = vae.decode(z.flatten(0, 1))
        log_w = losses.log_importance_weights(x.repeat(k, 1, 1, 1), out, z.flatten(0, 1), mean.repeat(k, 1),
                                              logvar.repeat(k, 1), reconstruction).view(k, -1)
        total += losses.importance_weighted_bound(log_w)
    return total / reps


def test_iwae_step_with_one_sample_is_the_single_sample_elbo():
    cfg, nets, opts, batch = _step_inputs(objective="iwae", importance_samples=1)
    vae = copy.deepcopy(nets["vae"])
    torch.manual_seed(5)
    loss = vae_step(nets, opts, batch, cfg, Precision(torch.device("cpu"), "fp32", ["vae"]))["loss"]
    # The same z, by hand: log w = log p(x|z) + log p(z) - log q(z|x), the ELBO's integrand (K = 1).
    torch.manual_seed(5)
    x = vae_targets(batch.images, cfg.vae)
    with torch.no_grad():
        mean, logvar = vae.encode(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(1, *mean.shape)
        log_w = losses.log_importance_weights(x, vae.decode(z[0]), z[0], mean, logvar, "bernoulli")
    assert loss.item() == pytest.approx(-log_w.mean().item(), rel=1e-5)
    # ... and its expectation over z is the ELBO with the KL in closed form. Both use the same 400 z
    # per image, so the difference is only the KL's Monte-Carlo error (tolerance: 4 standard errors).
    with torch.no_grad():
        mean, logvar = vae.encode(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(400, *mean.shape)
        out = vae.decode(z.flatten(0, 1))
        log_w = losses.log_importance_weights(x.repeat(400, 1, 1, 1), out, z.flatten(0, 1), mean.repeat(400, 1),
                                              logvar.repeat(400, 1), "bernoulli").view(400, -1)
        recon = losses.reconstruction_log_likelihood(out, x.repeat(400, 1, 1, 1), "bernoulli").view(400, -1)
        kl = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum(1)
        difference = log_w - (recon - kl)  # per draw: the KL's one-sample estimate minus the exact KL
        tolerance = 4 * difference.std(0) / math.sqrt(400)
    assert torch.all(difference.mean(0).abs() <= tolerance), (difference.mean(0), tolerance)


NOISE = 0.5  # the decoder variance of reconstruction="gaussian"


def _linear_gaussian_model(weights: torch.Tensor | None = None):
    """z ~ N(0, I_2), x | z ~ N(W z, 1/2 I_3): log p(x) and p(z|x) are known in closed form."""
    g = torch.Generator().manual_seed(7)
    random_weights = torch.randn(3, 2, generator=g, dtype=torch.float64)
    weights = random_weights if weights is None else weights
    x = torch.randn(6, 3, generator=g, dtype=torch.float64) * 2
    eye = lambda n: torch.eye(n, dtype=torch.float64)  # noqa: E731
    marginal = torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64),
                                                      weights @ weights.T + NOISE * eye(3))
    posterior_cov = torch.linalg.inv(eye(2) + weights.T @ weights / NOISE)
    posterior_mean = x @ weights @ posterior_cov / NOISE
    return weights, x, marginal.log_prob(x), posterior_mean, posterior_cov


def _linear_gaussian_bound(weights, x, mean, logvar, k, draws, g):
    z = mean + torch.exp(0.5 * logvar) * torch.randn(draws, k, *mean.shape, generator=g, dtype=torch.float64)
    z = z.flatten(0, 2)
    rows = lambda t: t.repeat(draws * k, 1)  # noqa: E731 - the (draw, k, image) order of z's rows
    log_w = losses.log_importance_weights(rows(x), z @ weights.T, z, rows(mean), rows(logvar), "gaussian")
    return losses.importance_weighted_bound(log_w.view(draws, k, -1).transpose(0, 1))  # (draws, images)


def test_log_importance_weights_are_exact_with_the_true_posterior():
    # With q(z|x) = p(z|x) every weight equals p(x): log w = log p(x) for any z (Burda et al., section 3).
    # Orthogonal columns in W make the posterior covariance diagonal, so a diagonal q can be exact.
    orthogonal, _ = torch.linalg.qr(torch.randn(3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    weights, x, log_px, post_mean, post_cov = _linear_gaussian_model(orthogonal * torch.tensor([1.5, 0.7],
                                                                                                 dtype=torch.float64))
    logvar = torch.log(torch.diagonal(post_cov)).expand_as(post_mean)
    bound = _linear_gaussian_bound(weights, x, post_mean, logvar, 1, 50, torch.Generator().manual_seed(0))
    torch.testing.assert_close(bound, log_px.expand_as(bound))


def test_iwae_bound_tightens_with_k_towards_log_likelihood():
    weights, x, log_px, post_mean, post_cov = _linear_gaussian_model()
    # A deliberately poor q: shrunken mean, inflated diagonal variance.
    mean, logvar = 0.5 * post_mean, torch.log(2 * torch.diagonal(post_cov)).expand_as(post_mean)
    g = torch.Generator().manual_seed(0)
    expected, errors = {}, {}
    for k in (1, 5, 50):
        bounds = _linear_gaussian_bound(weights, x, mean, logvar, k, 2000, g)  # 2000 independent bounds each
        expected[k], errors[k] = bounds.mean(0), bounds.std(0) / math.sqrt(2000)
    # In expectation L_1 <= L_5 <= L_50 <= log p(x) (Burda et al., theorem 1); every gap asserted beyond
    # 4 standard errors of the Monte-Carlo means.
    assert torch.all(expected[1] + 4 * (errors[1] + errors[5]) < expected[5])
    assert torch.all(expected[5] + 4 * (errors[5] + errors[50]) < expected[50])
    assert torch.all(expected[50] < log_px + 4 * errors[50])
    # and with many samples the bound reaches log p(x)
    close = _linear_gaussian_bound(weights, x, mean, logvar, 20000, 1, g)[0]
    torch.testing.assert_close(close, log_px, atol=0.05, rtol=0)


def test_beta_zero_leaves_only_the_reconstruction():
    cfg, nets, opts, batch = _step_inputs(kl_weight=0.0)
    out = vae_step(nets, opts, batch, cfg, Precision(torch.device("cpu"), "fp32", ["vae"]))
    assert out["kl"].item() > 0
    assert out["loss"].item() == out["reconstruction"].item()
    cfg, nets, opts, batch = _step_inputs(kl_weight=1.0)
    out = vae_step(nets, opts, batch, cfg, Precision(torch.device("cpu"), "fp32", ["vae"]))
    assert out["loss"].item() == pytest.approx(out["reconstruction"].item() + out["kl"].item(), rel=1e-6)


def test_kl_warmup_is_linear_in_the_step():
    v = VAEConfig(kl_weight=4.0, kl_warmup_steps=10)
    assert [kl_weight_at(s, v) for s in (0, 4, 9, 10, 1000)] == pytest.approx([0.4, 2.0, 4.0, 4.0, 4.0])
    assert kl_weight_at(0, VAEConfig(kl_weight=2.0)) == 2.0


def test_dynamic_binarisation_is_binary_and_follows_the_seed():
    images = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    v = VAEConfig(binarize="dynamic")
    torch.manual_seed(3)
    a = vae_targets(images, v)
    torch.manual_seed(3)
    b = vae_targets(images, v)
    assert set(a.unique().tolist()) <= {0.0, 1.0} and torch.equal(a, b)
    assert a[0, 0, 0, 0] == 0 and a[0, 0, -1, -1] == 1  # p = 0 and p = 1 are certain
    assert torch.equal(vae_targets(images, VAEConfig()), images.float() / 255)


@pytest.mark.parametrize("model", ["vae-mlp", "vae-conv"])
def test_learned_decoder_variance_gets_trained(model):
    cfg, nets, opts, batch = _step_inputs(model, reconstruction="gaussian", decoder_variance="learned")
    before = nets["vae"].decoder_logvar.detach().clone()
    vae_step(nets, opts, batch, cfg, Precision(torch.device("cpu"), "fp32", ["vae"]))
    assert not torch.equal(before, nets["vae"].decoder_logvar)
    cfg, nets, opts, batch = _step_inputs(model, reconstruction="gaussian")  # fixed: never touched
    vae_step(nets, opts, batch, cfg, Precision(torch.device("cpu"), "fp32", ["vae"]))
    assert torch.equal(nets["vae"].decoder_logvar, torch.zeros_like(before))


def test_lr_decay_sets_the_learning_rate_from_the_step():
    """train.lr until lr_decay_start, then linearly towards 0 over lr_decay_steps (never below 0)."""
    cfg, nets, opts, batch = _step_inputs(lr_decay_start=4, lr_decay_steps=3)
    precision = Precision(torch.device("cpu"), "fp32", ["vae"])
    seen = []
    for step in (0, 3, 4, 5, 6, 9):
        vae_step(nets, opts, Batch(batch.images, batch.cond, step=step), cfg, precision)
        seen.append(opts["vae"].param_groups[0]["lr"] / cfg.train.lr)
    assert seen == pytest.approx([1.0, 1.0, 0.75, 0.5, 0.25, 0.0])
    cfg, nets, opts, batch = _step_inputs()  # no decay: the optimiser's lr is left alone
    vae_step(nets, opts, Batch(batch.images, batch.cond, step=10_000), cfg, precision)
    assert opts["vae"].param_groups[0]["lr"] == cfg.train.lr


@pytest.mark.parametrize("bad, message", [
    ({"lr_decay_start": -1}, "lr_decay_start"),
    ({"lr_decay_steps": -2}, "lr_decay_steps"),
    ({"importance_samples": 0}, "importance_samples"),
    ({"objective": "vi"}, "objective"),
    ({"kl_warmup_steps": -1}, "kl_warmup_steps"),
    ({"binarize": "dynamic", "reconstruction": "gaussian"}, "binarize"),
    ({"fixed_variance": 0.0}, "fixed_variance"),
])
def test_bad_vae_settings_are_refused(bad, message):
    with pytest.raises(GenforgeError, match=message):
        VAEConfig(**bad)
