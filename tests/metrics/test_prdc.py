"""Precision/recall (k = 3) and density/coverage (k = 5) on Gaussians whose overlap is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from genforge.errors import GenforgeError
from genforge.metrics.prdc import density_coverage, knn_radii, prdc, precision_recall

DIM, N = 8, 1000


def gaussian(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    x = torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed))
    x[:, 0] += shift
    return x


def test_knn_radii_match_sklearn():
    x = gaussian(300, 0)
    distances, _ = NearestNeighbors(n_neighbors=4).fit(x.numpy()).kneighbors(x.numpy())
    # sklearn's first neighbour of a training point is the point itself, as in ours.
    assert np.allclose(knn_radii(x, 3).numpy(), distances[:, 3], atol=1e-5)


def test_same_distribution():
    values = prdc(gaussian(N, 0), gaussian(N, 1))
    assert values["precision"] > 0.6 and values["recall"] > 0.6
    # Naeem et al. 2020, section 4: for one distribution E[density] = 1 and E[coverage] ~ 1 - 1/2^k.
    assert values["density"] == pytest.approx(1.0, abs=0.15)
    assert values["coverage"] == pytest.approx(1 - 0.5 ** 5, abs=0.03)


def test_disjoint_distributions():
    values = prdc(gaussian(N, 0), gaussian(N, 1, shift=50.0))
    assert values == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_mode_dropping_lowers_recall_and_coverage_not_precision():
    # Real: two well separated modes; generated: only one of them.
    real = torch.cat([gaussian(N // 2, 0, -20.0), gaussian(N // 2, 1, 20.0)])
    fake = gaussian(N, 2, 20.0)
    values = prdc(real, fake)
    # Reference: the same generated set against the one mode it does cover.
    kept_mode = prdc(real[N // 2:], fake)
    assert values["precision"] == pytest.approx(kept_mode["precision"], abs=0.02)
    assert values["recall"] == pytest.approx(0.5 * kept_mode["recall"], abs=0.05)
    assert values["coverage"] == pytest.approx(0.5 * kept_mode["coverage"], abs=0.05)


def test_outliers_lower_precision_and_density_not_recall():
    # Generated: half from the real distribution, half far away.
    real = gaussian(N, 0)
    fake = torch.cat([gaussian(N // 2, 1), gaussian(N // 2, 2, 50.0)])
    same = precision_recall(real, gaussian(N, 3))
    values = prdc(real, fake)
    assert values["precision"] == pytest.approx(0.5 * same["precision"], abs=0.05)
    assert values["density"] == pytest.approx(0.5, abs=0.1)
    assert values["recall"] > 0.5


def test_too_few_samples():
    with pytest.raises(GenforgeError, match="k = 3"):
        precision_recall(torch.randn(3, 4), torch.randn(10, 4))
    with pytest.raises(GenforgeError, match="k = 5"):
        density_coverage(torch.randn(5, 4), torch.randn(10, 4))
