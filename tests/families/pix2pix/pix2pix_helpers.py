"""Small paired datasets written in the real layouts, for the pix2pix tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import tiny_config  # noqa: F401 - tests/conftest.py, re-exported


def blobs(n: int, size: int, seed: int, channels: int = 1) -> np.ndarray:
    """n uint8 images (n, size, size, channels): a dark background with one bright random rectangle."""
    rng = np.random.default_rng(seed)
    out = np.full((n, size, size, channels), 20, np.uint8)
    for i in range(n):
        h, w = rng.integers(size // 4, size // 2 + 1, 2)
        y, x = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        out[i, y:y + h, x:x + w] = rng.integers(150, 256, channels)
    return out


def save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)


def write_side_by_side(folder: Path, a: np.ndarray, b: np.ndarray) -> None:
    for i, (x, y) in enumerate(zip(a, b)):
        save(np.concatenate([x, y], axis=1), folder / f"{i:03d}.png")


def write_inversion_pairs(root: Path, size: int = 16, n_train: int = 64, n_test: int = 16) -> Path:
    """A task the identity mapping does badly: A = rectangles, B = A inverted (255 - A)."""
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        a = blobs(n, size, seed)
        write_side_by_side(root / split, a, 255 - a)
    return root
