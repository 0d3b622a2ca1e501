"""One VAE likelihood estimator: the end-of-run test loss, `genforge eval`'s ELBO and the NLL benchmark
give the same numbers on the same network and images, the Gaussian decoder's learned variance included.

The issue: with vae.reconstruction=gaussian and vae.decoder_variance=learned (log-variance log 0.01),
the test loss logged at the end of training said 2,863.6 nats and genforge eval's ELBO 527.7 on the
same untrained vae-conv and 200 mnist-5k test digits, because only one of them passed the variance.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import pytest
import torch

from genforge.families.registry import build_networks, load_data, model_spec, resolve_model
from genforge.families.vae.likelihood import vae_likelihood
from genforge.families.vae.step import vae_test_loss
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[3]
N_IMAGES = 200
LOG_VARIANCE = math.log(0.01)
FLOAT32 = 1e-6
"""Relative tolerance between numbers from different batch sizes: the draws are the same, but float32
matrix products over other batch shapes round differently (about 1e-9 relative here)."""


@pytest.fixture(scope="module")
def bench():
    """benchmarks/bench_vae_nll.py, imported from its file (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_vae_nll", ROOT / "benchmarks" / "bench_vae_nll.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def untrained(model: str = "vae-conv", **vae):
    """(cfg, networks, first N_IMAGES test digits as an ImageDataset) for a tiny untrained VAE; a
    learned decoder variance is set to exp(LOG_VARIANCE) = 0.01."""
    cfg = tiny_config(model, vae=vae)
    cfg = resolve_model(cfg, load_data(cfg))
    test = load_data(cfg, split="test")
    test = dataclasses.replace(test, images=test.images[:N_IMAGES],
                               labels=test.labels[:N_IMAGES] if test.labels is not None else None)
    torch.manual_seed(0)
    nets = build_networks(cfg)
    if cfg.vae.decoder_variance == "learned":
        with torch.no_grad():
            nets["vae"].decoder_logvar.fill_(LOG_VARIANCE)
    return cfg, nets, test


CASES = {
    "gaussian-learned": ("vae-conv", {"reconstruction": "gaussian", "decoder_variance": "learned"}),
    "gaussian-fixed": ("vae-conv", {"reconstruction": "gaussian", "decoder_variance": "fixed", "fixed_variance": 0.1}),
    "bernoulli-grey": ("vae-conv", {"reconstruction": "bernoulli"}),
    "bernoulli-dynamic": ("vae-conv", {"reconstruction": "bernoulli", "binarize": "dynamic"}),
    "cvae-bernoulli-dynamic": ("cvae-conv", {"reconstruction": "bernoulli", "binarize": "dynamic"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_end_of_run_test_loss_eval_and_benchmark_agree(case, bench):
    model, vae_settings = CASES[case]
    cfg, nets, test = untrained(model, **vae_settings)
    family = model_spec(cfg.model.name).family
    labels = test.labels if cfg.model.num_classes else None
    binarize = "dynamic" if cfg.vae.binarize == "dynamic" else "none"  # the run's own test targets
    state = torch.get_rng_state()

    end_of_run = family.test_metrics(nets, cfg, test, torch.device("cpu"))  # what train() logs as test_*
    evaluated = family.likelihood(nets, test.images, labels, cfg, k=1, binarize=binarize, seed=0)  # genforge eval
    x, bench_labels = bench.held_out_targets(cfg, N_IMAGES, binarize, seed=0)
    benchmarked = bench.nll_per_image(nets["vae"], cfg, x, bench_labels, k=1, seed=0, batch=7, chunk=3)

    assert torch.equal(state, torch.get_rng_state())  # none of them touches the global RNG
    # The same estimator and the same draws: equal to float precision, not just statistically
    # (bit for bit at the same batch size).
    assert end_of_run["loss"] == evaluated["elbo"]
    assert end_of_run["reconstruction"] == evaluated["reconstruction"]
    assert end_of_run["kl"] == evaluated["kl"]
    assert float(benchmarked["neg_elbo"].mean()) == pytest.approx(evaluated["elbo"], rel=FLOAT32)
    assert float(benchmarked["nll"].mean()) == pytest.approx(evaluated["nll"], rel=FLOAT32)
    assert evaluated["nll"] == pytest.approx(evaluated["elbo"], rel=1e-12)  # K = 1: the bound is the ELBO
    assert vae_test_loss(nets["vae"], test.images, cfg, labels=labels, batch_size=33) == \
        pytest.approx(end_of_run, rel=FLOAT32)  # the batch size only bounds memory


def test_gaussian_likelihood_uses_the_decoder_variance():
    """Checked against the closed form, so it also fails if every caller forgot the variance alike.

    The z draws do not depend on the decoder variance, so each image's squared error S is the same
    under any variance; at variance 1/2 the reconstruction term is S + D/2 log(pi), at variance s^2
    it is D/2 log(2 pi s^2) + S / (2 s^2)."""
    cfg, nets, test = untrained(reconstruction="gaussian", decoder_variance="learned")
    family = model_spec(cfg.model.name).family
    learned = family.likelihood(nets, test.images, None, cfg, k=1, binarize="none", seed=0)
    half = vae_likelihood(nets["vae"], test.images, "gaussian", k=1, binarize="none", seed=0)  # variance 1/2
    d = test.images[0].numel()
    squared_error = half["reconstruction"] - d / 2 * math.log(math.pi)
    expected = d / 2 * (math.log(2 * math.pi) + LOG_VARIANCE) + squared_error / (2 * math.exp(LOG_VARIANCE))
    assert learned["reconstruction"] == pytest.approx(expected, rel=1e-6)
    assert family.test_metrics(nets, cfg, test, torch.device("cpu"))["reconstruction"] == pytest.approx(expected, rel=1e-6)
    # The fixed variance: learned log-variance log 0.5 is the fixed default, 0.5.
    fixed_cfg, fixed_nets, _ = untrained(reconstruction="gaussian", decoder_variance="fixed", fixed_variance=0.5)
    assert family.likelihood(fixed_nets, test.images, None, fixed_cfg, k=1, binarize="none", seed=0) == \
        pytest.approx(half, rel=FLOAT32)


def test_importance_sampled_bound_is_the_same_whatever_the_batching(bench):
    """genforge eval and the benchmark agree at K > 1 too: draws depend on (seed, image) alone."""
    cfg, nets, test = untrained(reconstruction="gaussian", decoder_variance="learned")
    family = model_spec(cfg.model.name).family
    images = test.images[:40]
    evaluated = family.likelihood(nets, images, None, cfg, k=5, binarize="none", seed=3)
    x, _ = bench.held_out_targets(cfg, 40, "none", seed=3)
    benchmarked = bench.nll_per_image(nets["vae"], cfg, x, None, k=5, seed=3, batch=6, chunk=2)
    assert float(benchmarked["nll"].mean()) == pytest.approx(evaluated["nll"], rel=FLOAT32)
    assert float(benchmarked["neg_elbo"].mean()) == pytest.approx(evaluated["elbo"], rel=FLOAT32)
    # The first 10 images score the same on their own as among 40.
    alone = family.likelihood(nets, images[:10], None, cfg, k=5, binarize="none", seed=3)
    assert alone["nll"] == pytest.approx(float(benchmarked["nll"][:10].mean()), rel=FLOAT32)
    assert evaluated["nll"] < evaluated["elbo"]
