"""FID, KID and the Inception Score on features from any feature module.

The statistics (feature sums and covariances for FID, stored features for KID, logits for IS) are
kept by torchmetrics' metric classes. Features are extracted once per image set by our own module
and handed to torchmetrics through a pass-through `feature` module, so FID, KID, IS and precision/
recall share one extraction instead of running the network once per metric.

FID's last step is our own: torchmetrics takes the eigenvalues of sigma1 @ sigma2 (a non-symmetric
product) and casts the result to float32. `frechet_distance` stays in float64 and uses only
symmetric eigendecompositions, which stay accurate when the covariances are near-singular (few
samples, or ReLU features that are often zero).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from ..errors import GenforgeError


class PassThrough(nn.Module):
    """The `feature` module handed to torchmetrics when features were extracted already."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _metric(cls, **kwargs):
    # torchmetrics warns that KID and IS keep every feature in memory; we know, and they are small.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return cls(**kwargs)


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (negative rounding noise clamped)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Frechet distance between N(mean1, cov1) and N(mean2, cov2), in float64.

    d^2 = |mean1 - mean2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^(1/2))   (Dowson and Landau 1982;
    FID of Heusel et al. 2017, eq. 6). tr((cov1 cov2)^(1/2)) = tr((S cov2 S)^(1/2)) with S = cov1^(1/2):
    the two matrices are similar (S cov2 S = S^-1 (cov1 cov2) S when S is invertible, and by continuity
    otherwise), and S cov2 S is symmetric positive semi-definite, so its square root's trace is the
    sum of the square roots of its (clamped) eigenvalues: no complex parts, no failure when cov1 is singular.
    """
    mean1, mean2 = mean1.double().flatten(), mean2.double().flatten()
    cov1, cov2 = cov1.double(), cov2.double()
    root1 = _sqrt_psd((cov1 + cov1.T) / 2)
    middle = root1 @ cov2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = (mean1 - mean2).square().sum() + cov1.trace() + cov2.trace() - 2 * trace_sqrt
    return float(value)


def mean_and_covariance(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean and unbiased covariance (n - 1) of (N, D) features, in float64."""
    x = features.double()
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two (N, D) feature sets: torchmetrics accumulates the float64 statistics, our
    frechet_distance finishes."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    for name, f in (("reference", real), ("generated", fake)):
        if f.shape[0] < 2:
            raise GenforgeError(f"FID needs at least 2 {name} images, got {f.shape[0]}; raise --n")
    metric = _metric(FrechetInceptionDistance, feature=PassThrough(real.shape[1])).to(real.device)
    metric.update(real, real=True)
    metric.update(fake.to(real.device), real=False)
    n_real, n_fake = metric.real_features_num_samples, metric.fake_features_num_samples
    mean_real = metric.real_features_sum / n_real
    mean_fake = metric.fake_features_sum / n_fake
    cov_real = (metric.real_features_cov_sum - n_real * torch.outer(mean_real, mean_real)) / (n_real - 1)
    cov_fake = (metric.fake_features_cov_sum - n_fake * torch.outer(mean_fake, mean_fake)) / (n_fake - 1)
    return frechet_distance(mean_real, cov_real, mean_fake, cov_fake)


def kid_from_features(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): the unbiased MMD^2 with the kernel k(x, y) = (x.y / D + 1)^3,
    averaged over `subsets` random subsets of `subset_size` per side; returns (mean, std).

    Subsets are drawn by torchmetrics from the global RNG; we seed it and restore it afterwards.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    smallest = min(real.shape[0], fake.shape[0])
    if subset_size < 2:
        raise GenforgeError(f"KID subset size must be at least 2, got {subset_size}")
    if smallest < subset_size:
        raise GenforgeError(f"KID with subsets of {subset_size} needs at least {subset_size} reference and generated "
                            f"images, got {real.shape[0]} and {fake.shape[0]}; raise --n or lower the KID subset size")
    metric = _metric(KernelInceptionDistance, feature=PassThrough(real.shape[1]), subsets=subsets,
                     subset_size=subset_size)
    metric.update(real.double(), real=True)
    metric.update(fake.double().to(real.device), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def inception_score_from_logits(logits: torch.Tensor, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over
    `splits` parts of a seeded random permutation (torchmetrics draws it; we seed and restore the RNG)."""
    from torchmetrics.image.inception import InceptionScore

    if logits.shape[0] < splits:
        raise GenforgeError(f"the Inception Score over {splits} splits needs at least {splits} images, "
                            f"got {logits.shape[0]}; raise --n")
    metric = _metric(InceptionScore, feature=PassThrough(logits.shape[1]), splits=splits)
    metric.update(logits.double())
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the std of a single split is undefined: reported as 0
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std) if math.isfinite(float(std)) else 0.0


@torch.no_grad()
def extract(module: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Run a feature module over images (uint8 or [0, 1] floats) in batches; (N, D) float32 on the CPU."""
    out = []
    for chunk in images.split(batch_size):
        out.append(module(chunk).float().cpu())
    return torch.cat(out)
