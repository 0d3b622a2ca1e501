"""VAE test metrics: negative ELBO, reconstruction error and the importance-sampled negative
log-likelihood (the IWAE bound of Burda et al. 2016), all in nats per image.

For K samples z_k ~ q(z|x) and log weights log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x):
  negative ELBO  ~= -(1/K) sum_k log w_k                   (Kingma and Welling 2014, eq. 3)
  NLL_K          =  -(logsumexp_k log w_k - log K)         (Burda et al. 2016, eq. 8)
Both are computed from the same K samples, so NLL_K <= negative ELBO holds for every image (Jensen),
and E[NLL_K] decreases towards -log p(x) as K grows (Burda et al., theorem 1).

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
from ...losses import log_importance_weights, reconstruction_log_likelihood

BINARIZATIONS = ("dynamic", "threshold", "none")


def default_binarization(cfg) -> str:
    """Test targets of the likelihood: dynamically binarised for Bernoulli decoders, grey levels otherwise."""
    return "dynamic" if cfg.vae.reconstruction == "bernoulli" else "none"


def binarize_images(images: torch.Tensor, mode: str, seed: int = 0) -> torch.Tensor:
    """uint8 or [0, 1] images -> float targets in [0, 1] as `mode` says (seeded for 'dynamic')."""
    x = images.float().div(255) if images.dtype == torch.uint8 else images.float()
    if mode == "none":
        return x
    if mode == "threshold":
        return (x >= 0.5).float()
    if mode == "dynamic":
        generator = torch.Generator().manual_seed(seed)
        return torch.bernoulli(x.cpu(), generator=generator).to(x.device)
    raise GenforgeError(f"binarisation must be one of {', '.join(BINARIZATIONS)}, got {mode!r}")


@torch.no_grad()
def vae_likelihood(vae: nn.Module, images: torch.Tensor, reconstruction: str, labels: torch.Tensor | None = None,
                   k: int = 1000, binarize: str = "dynamic", seed: int = 0, batch_size: int = 100,
                   samples_per_pass: int = 10_000) -> dict[str, float]:
    """Test metrics of a VAE (anything with encode(x[, labels]) -> (mean, logvar) and decode(z[, labels])).

    Returns nats per image: `nll` (IWAE bound with `k` samples), `elbo` (negative ELBO from the same
    samples), `reconstruction` (-E_q log p(x|z)), `kl` (its closed form), and `mse` (per-pixel
    squared error of the decoder mean at z = mean of q). The latent samples come from a private
    generator seeded with `seed`; the global RNG is untouched. `samples_per_pass` bounds memory:
    at most that many (image, z) pairs are decoded at once.
    """
    if k < 1:
        raise GenforgeError(f"the importance-sampled likelihood needs K >= 1 samples, got {k}")
    if reconstruction == "gaussian" and binarize != "none":
        raise GenforgeError("a Gaussian decoder is evaluated on grey levels; use binarisation 'none'")
    was_training = vae.training
    vae.eval()
    device = next(vae.parameters()).device
    targets = binarize_images(images, binarize, seed)
    noise = torch.Generator(device=device).manual_seed(seed + 1)
    totals = {"nll": 0.0, "elbo": 0.0, "reconstruction": 0.0, "kl": 0.0, "mse": 0.0}
    try:
        for start in range(0, len(targets), batch_size):
            x = targets[start:start + batch_size].to(device)
            cond = () if labels is None else (labels[start:start + batch_size].to(device),)
            mean, logvar = (t.float() for t in vae.encode(x, *cond))
            log_w, log_px = _log_weights(vae, x, cond, mean, logvar, k, reconstruction, noise, samples_per_pass)
            nll = -(torch.logsumexp(log_w, dim=1) - math.log(k))
            kl = (-0.5 * (1 + logvar - mean.pow(2) - logvar.exp())).sum(1).double()
            decoded = vae.decode(mean, *cond).float()
            decoded = torch.sigmoid(decoded) if reconstruction == "bernoulli" else decoded
            totals["nll"] += float(nll.sum())
            totals["elbo"] += float(-log_w.mean(1).sum())
            totals["reconstruction"] += float(-log_px.mean(1).sum())
            totals["kl"] += float(kl.sum())
            totals["mse"] += float((decoded - x).pow(2).flatten(1).mean(1).sum())
    finally:
        vae.train(was_training)
    return {name: value / len(targets) for name, value in totals.items()}


def _log_weights(vae: nn.Module, x: torch.Tensor, cond: tuple, mean: torch.Tensor, logvar: torch.Tensor, k: int,
                 reconstruction: str, noise: torch.Generator,
                 samples_per_pass: int) -> tuple[torch.Tensor, torch.Tensor]:
    """log w and log p(x|z) for K reparameterised samples per image: two (N, K) float64 tensors."""
    n = x.shape[0]
    log_w = torch.empty(n, k, dtype=torch.float64, device=x.device)
    log_px = torch.empty(n, k, dtype=torch.float64, device=x.device)
    per_pass = max(1, samples_per_pass // n)
    for j in range(0, k, per_pass):
        m = min(per_pass, k - j)

        def repeat(t: torch.Tensor) -> torch.Tensor:  # (n, ...) -> (m * n, ...), sample-major
            return t.unsqueeze(0).expand(m, *t.shape).reshape(m * n, *t.shape[1:])

        eps = torch.randn(m, *mean.shape, generator=noise, device=x.device)
        z = (mean + (0.5 * logvar).exp() * eps).reshape(m * n, -1)
        out = vae.decode(z, *(repeat(c) for c in cond)).float()
        target = repeat(x)
        weights = log_importance_weights(target, out, z, repeat(mean), repeat(logvar), reconstruction)
        log_w[:, j:j + m] = weights.double().view(m, n).T
        log_px[:, j:j + m] = reconstruction_log_likelihood(out, target, reconstruction).double().view(m, n).T
    return log_w, log_px


@torch.no_grad()
def nll_per_image(vae: nn.Module, images: torch.Tensor, reconstruction: str, k: int, seed: int = 0,
                  labels: torch.Tensor | None = None, binarize: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """(NLL_K, negative ELBO) per image, both from the same K samples; for tests and diagnostics."""
    device = next(vae.parameters()).device
    x = binarize_images(images, binarize, seed).to(device)
    cond = () if labels is None else (labels.to(device),)
    mean, logvar = (t.float() for t in vae.encode(x, *cond))
    noise = torch.Generator(device=device).manual_seed(seed + 1)
    log_w, _ = _log_weights(vae, x, cond, mean, logvar, k, reconstruction, noise, 10_000)
    return -(torch.logsumexp(log_w, 1) - math.log(k)), -log_w.mean(1)
