"""Improved precision and recall (Kynkaanniemi et al. 2019) and density and coverage (Naeem et al. 2020).

Both estimate the support of a distribution by balls around each sample whose radius is the
distance to its k-th nearest neighbour within the same set (the sample itself excluded):
  precision = share of generated samples inside some ball of a real sample          (K. et al., eq. 1-2)
  recall    = share of real samples inside some ball of a generated sample
  density   = (1 / kM) sum_j sum_i 1[Y_j in B(X_i, r_i)]                             (Naeem et al., eq. 3)
  coverage  = (1 / N) sum_i 1[some Y_j in B(X_i, r_i)]                                (Naeem et al., eq. 4)
with k = 3 for precision/recall and k = 5 for density/coverage, as in the papers. No library in
our dependencies provides them (torchmetrics does not), so they are written here, in chunks of
rows so that 10,000 x 10,000 distances never sit in memory at once.
"""

from __future__ import annotations

import torch

from ..errors import GenforgeError

CHUNK = 1024


def _pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b)


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row."""
    if features.shape[0] <= k:
        raise GenforgeError(f"precision/recall with k = {k} needs more than {k} images per side, "
                            f"got {features.shape[0]}; raise --n")
    radii = []
    for chunk in features.split(CHUNK):
        distances = _pairwise(chunk, features)
        # The k+1 smallest include the row itself at distance 0.
        radii.append(distances.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def _inside_any(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each point, whether it lies within radius of some centre (bool, one per point)."""
    out = []
    for chunk in points.split(CHUNK):
        out.append((_pairwise(chunk, centres) <= radii[None, :]).any(dim=1))
    return torch.cat(out)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) between (N, D) and (M, D) features."""
    real, fake = real.float(), fake.float().to(real.device)
    precision = _inside_any(fake, real, knn_radii(real, k)).float().mean()
    recall = _inside_any(real, fake, knn_radii(fake, k)).float().mean()
    return {"precision": float(precision), "recall": float(recall)}


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020) between (N, D) real and (M, D) generated features."""
    real, fake = real.float(), fake.float().to(real.device)
    radii = knn_radii(real, k)
    if fake.shape[0] < 1:
        raise GenforgeError("density/coverage need at least one generated image")
    inside_count = torch.zeros((), dtype=torch.float64, device=real.device)
    covered = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    for chunk in fake.split(CHUNK):
        inside = _pairwise(chunk, real) <= radii[None, :]  # (chunk, N)
        inside_count += inside.sum()
        covered |= inside.any(dim=0)
    density = inside_count / (k * fake.shape[0])
    return {"density": float(density), "coverage": float(covered.float().mean())}


def prdc(real: torch.Tensor, fake: torch.Tensor, k_pr: int = 3, k_dc: int = 5) -> dict[str, float]:
    """Precision, recall (k = 3), density and coverage (k = 5) in one dict."""
    return {**precision_recall(real, fake, k_pr), **density_coverage(real, fake, k_dc)}
