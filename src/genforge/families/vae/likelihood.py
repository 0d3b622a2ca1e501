"""The VAE likelihood estimator: negative ELBO, reconstruction error and the importance-sampled
negative log-likelihood (the IWAE bound of Burda et al. 2016), all in nats per image.

`vae_bounds` is the one place they are computed. Its callers:
  - the end-of-run test loss (step.vae_test_loss, logged as test_loss / test_reconstruction / test_kl),
  - `genforge eval`'s nll metric and the training-time eval (family.likelihood -> vae_likelihood),
  - benchmarks/bench_vae_nll.py,
  - nll_per_image (tests and diagnostics).
So a run's test loss equals genforge eval's test_elbo at K = 1 with the same seed, binarisation and
decoder variance, to the last bit.

For K samples z_k ~ q(z|x) and log weights log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x):
  negative ELBO  ~= -(1/K) sum_k log w_k                   (Kingma and Welling 2014, eq. 3)
  NLL_K          =  -(logsumexp_k log w_k - log K)         (Burda et al. 2016, eq. 8)
Both are computed from the same K samples, so NLL_K <= negative ELBO holds for every image (Jensen),
and E[NLL_K] decreases towards -log p(x) as K grows (Burda et al., theorem 1). `reconstruction` is
-(1/K) sum_k log p(x|z_k) from the same samples and `kl` is KL(q(z|x) || p(z)) in closed form, so
negative ELBO = reconstruction + kl holds in expectation over z (exactly only as K grows): the ELBO's
KL part is the Monte-Carlo one of the same draws, which is what keeps the bound below it.

p(x|z) is the run's decoder: Bernoulli on logits, or Gaussian with the run's decoder log-variance
(`decoder_logvar`: the learned per-pixel one, or log vae.fixed_variance; see step.decoder_log_variance).
None means variance 1/2, genforge's fixed default. Callers with a config must pass it: a Gaussian
likelihood without the run's variance is a different number (issue: 2,863.6 against 527.7 nats).

Random draws are a function of (seed, image index) alone, from private generators (the global RNG
is untouched): image i of `images` gets the same binarisation and the same z_1..z_K whatever the
batch size, the samples per pass and the other images, so every caller gets the same numbers for
the same images and seed.

Published MNIST numbers (e.g. ~89.8 nats for a dense VAE, ~86.8 for an IWAE in pythae's table) are on
binarised digits with a Bernoulli decoder. `binarize` picks the test targets: 'dynamic' draws each pixel
once from Bernoulli(intensity) with a fixed seed, 'threshold' uses intensity >= 0.5, 'none' keeps grey
levels (the only sensible choice for a Gaussian decoder, whose log-density is not comparable to the
Bernoulli numbers).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import GenforgeError
from ...losses import log_normal, reconstruction_log_likelihood
from ...progress import task

BINARIZATIONS = ("dynamic", "threshold", "none")
BATCH_SIZE = 100
"""Images per encoder pass (memory only: the numbers do not depend on it)."""
SAMPLES_PER_PASS = 10_000
"""At most this many (image, z) pairs decoded at once (memory only)."""

_BINARIZE_STREAM, _LATENT_STREAM = 0, 1


_MASK64 = 2 ** 64 - 1


def _splitmix64(x: int) -> int:
    """SplitMix64's output function (Steele et al. 2014): a bijective mix of 64-bit integers."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _generator(seed: int, index: int, stream: int) -> torch.Generator:
    """A CPU generator for image `index` of a set, one per (seed, stream): draws for an image do not
    depend on how the set is batched or on which other images are in it. (seed, stream, index) is
    mixed into one 32-bit seed, as the CPU generator (mt19937) keeps only 32 bits of its seed."""
    mixed = _splitmix64(_splitmix64(_splitmix64(seed & _MASK64) ^ stream) ^ index)
    return torch.Generator().manual_seed(mixed >> 32)


def default_binarization(cfg) -> str:
    """Test targets of the likelihood: dynamically binarised for Bernoulli decoders, grey levels otherwise."""
    return "dynamic" if cfg.vae.reconstruction == "bernoulli" else "none"


def binarize_images(images: torch.Tensor, mode: str, seed: int = 0) -> torch.Tensor:
    """uint8 or [0, 1] images -> float targets in [0, 1] as `mode` says ('dynamic': one Bernoulli
    draw per pixel, image i from a generator seeded by (seed, i))."""
    x = images.float().div(255) if images.dtype == torch.uint8 else images.float()
    if mode == "none":
        return x
    if mode == "threshold":
        return (x >= 0.5).float()
    if mode == "dynamic":
        binary = [torch.bernoulli(image, generator=_generator(seed, i, _BINARIZE_STREAM))
                  for i, image in enumerate(x.cpu())]
        return (torch.stack(binary) if binary else x.cpu()).to(x.device)
    raise GenforgeError(f"binarisation must be one of {', '.join(BINARIZATIONS)}, got {mode!r}")


def _check(k: int, reconstruction: str, binarize: str) -> None:
    if k < 1:
        raise GenforgeError(f"the importance-sampled likelihood needs K >= 1 samples, got {k}")
    if reconstruction == "gaussian" and binarize != "none":
        raise GenforgeError("a Gaussian decoder is evaluated on grey levels; use binarisation 'none'")


@torch.no_grad()
def vae_bounds(vae: nn.Module, targets: torch.Tensor, reconstruction: str, labels: torch.Tensor | None = None,
               k: int = 1, seed: int = 0, decoder_logvar: torch.Tensor | float | None = None,
               batch_size: int = BATCH_SIZE, samples_per_pass: int = SAMPLES_PER_PASS) -> dict[str, torch.Tensor]:
    """The estimator: per-image bounds of a VAE (anything with encode(x[, labels]) -> (mean, logvar)
    and decode(z[, labels])) on `targets` (floats in [0, 1], already binarised; uint8 is scaled).

    Returns float64 CPU tensors of shape (N,), nats per image: `nll` (IWAE bound, K samples),
    `elbo` (negative ELBO, -(1/K) sum_k log w_k, from the same samples), `reconstruction`
    (-(1/K) sum_k log p(x|z_k)), `kl` (closed form) and `mse` (per-pixel squared error of the decoder
    mean at z = mean of q). z_k of image i comes from a generator seeded by (seed, i); see the module
    docstring. decoder_logvar: the Gaussian decoder's log-variance (None: variance 1/2). Runs in
    eval mode, restoring the training flag.
    """
    if k < 1:
        raise GenforgeError(f"the importance-sampled likelihood needs K >= 1 samples, got {k}")
    targets = targets.float().div(255) if targets.dtype == torch.uint8 else targets.float()
    was_training = vae.training
    vae.eval()
    device = next(vae.parameters()).device
    if isinstance(decoder_logvar, torch.Tensor):
        decoder_logvar = decoder_logvar.float().to(device)
    out: dict[str, list[torch.Tensor]] = {"nll": [], "elbo": [], "reconstruction": [], "kl": [], "mse": []}
    progress = task(f"likelihood (K = {k})", len(targets), "image")
    try:
        for start in range(0, len(targets), batch_size):
            x = targets[start:start + batch_size].to(device)
            cond = () if labels is None else (labels[start:start + batch_size].to(device),)
            mean, logvar = (t.float() for t in vae.encode(x, *cond))
            eps = _latent_noise(seed, start, len(x), k, mean.shape[1]).to(device)
            log_w, log_px = _log_weights(vae, x, cond, mean, logvar, eps, reconstruction, decoder_logvar,
                                         samples_per_pass)
            decoded = vae.decode(mean, *cond).float()
            decoded = torch.sigmoid(decoded) if reconstruction == "bernoulli" else decoded
            out["nll"].append(-(torch.logsumexp(log_w, dim=1) - math.log(k)))
            out["elbo"].append(-log_w.mean(1))
            out["reconstruction"].append(-log_px.mean(1))
            out["kl"].append((-0.5 * (1 + logvar - mean.pow(2) - logvar.exp())).sum(1).double())
            out["mse"].append((decoded - x).pow(2).flatten(1).mean(1).double())
            progress.update(len(x))
    finally:
        progress.close()
        vae.train(was_training)
    return {name: torch.cat(values).cpu() if values else torch.zeros(0, dtype=torch.float64)
            for name, values in out.items()}


def _latent_noise(seed: int, first: int, n: int, k: int, latent_dim: int) -> torch.Tensor:
    """eps ~ N(0, I) of shape (K, n, latent_dim) for images first .. first + n - 1, sample-major."""
    return torch.stack([torch.randn(k, latent_dim, generator=_generator(seed, first + i, _LATENT_STREAM))
                        for i in range(n)], dim=1)


def _log_weights(vae: nn.Module, x: torch.Tensor, cond: tuple, mean: torch.Tensor, logvar: torch.Tensor,
                 eps: torch.Tensor, reconstruction: str, decoder_logvar, samples_per_pass: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """log w and log p(x|z) for the K reparameterised samples z = mean + exp(logvar / 2) * eps per
    image (eps: (K, N, latent)): two (N, K) float64 tensors."""
    k, n = eps.shape[0], x.shape[0]
    log_w = torch.empty(n, k, dtype=torch.float64, device=x.device)
    log_px = torch.empty(n, k, dtype=torch.float64, device=x.device)
    per_pass = max(1, samples_per_pass // n)
    for j in range(0, k, per_pass):
        m = min(per_pass, k - j)

        def repeat(t: torch.Tensor) -> torch.Tensor:  # (n, ...) -> (m * n, ...), sample-major
            return t.unsqueeze(0).expand(m, *t.shape).reshape(m * n, *t.shape[1:])

        z = (mean + (0.5 * logvar).exp() * eps[j:j + m]).reshape(m * n, -1)
        out = vae.decode(z, *(repeat(c) for c in cond)).float()
        # log w = log p(x|z) + log p(z) - log q(z|x) (losses.log_importance_weights, eq. 5 of Burda et al.)
        log_likelihood = reconstruction_log_likelihood(out, repeat(x), reconstruction, decoder_logvar)
        log_ratio = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)) - log_normal(z, repeat(mean), repeat(logvar))
        log_px[:, j:j + m] = log_likelihood.double().view(m, n).T
        log_w[:, j:j + m] = (log_likelihood + log_ratio).double().view(m, n).T
    return log_w, log_px


@torch.no_grad()
def vae_likelihood(vae: nn.Module, images: torch.Tensor, reconstruction: str, labels: torch.Tensor | None = None,
                   k: int = 1000, binarize: str = "dynamic", seed: int = 0, batch_size: int = BATCH_SIZE,
                   samples_per_pass: int = SAMPLES_PER_PASS,
                   decoder_logvar: torch.Tensor | float | None = None) -> dict[str, float]:
    """Test metrics of a VAE: the means over `images` of vae_bounds' `nll`, `elbo`,
    `reconstruction`, `kl` and `mse` (nats per image), on targets binarised as `binarize` says with
    `seed`. decoder_logvar: the Gaussian decoder's log-variance, which callers with a run config must
    pass (family.likelihood does: step.decoder_log_variance); None means variance 1/2. The global
    RNG is untouched; batch_size and samples_per_pass bound memory and do not change the numbers.
    """
    _check(k, reconstruction, binarize)
    targets = binarize_images(images, binarize, seed)
    values = vae_bounds(vae, targets, reconstruction, labels, k=k, seed=seed, decoder_logvar=decoder_logvar,
                        batch_size=batch_size, samples_per_pass=samples_per_pass)
    return {name: float(v.sum()) / len(targets) for name, v in values.items()}


@torch.no_grad()
def nll_per_image(vae: nn.Module, images: torch.Tensor, reconstruction: str, k: int, seed: int = 0,
                  labels: torch.Tensor | None = None, binarize: str = "none",
                  decoder_logvar: torch.Tensor | float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(NLL_K, negative ELBO) per image, both from the same K samples (vae_bounds); for tests,
    benchmarks and diagnostics. Their means are vae_likelihood's `nll` and `elbo`."""
    _check(k, reconstruction, binarize)
    values = vae_bounds(vae, binarize_images(images, binarize, seed), reconstruction, labels, k=k, seed=seed,
                        decoder_logvar=decoder_logvar)
    return values["nll"], values["elbo"]
