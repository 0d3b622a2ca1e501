"""Datasets held as arrays: `npz:PATH` files and scikit-learn's 8x8 `digits`."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import GenforgeError
from .base import ImageDataset
from .mnist5k import split_indices
from .options import MEMORY_FRACTION, available_memory

MAX_CLASSES = 100_000
"""The largest label an npz without class_names may hold (each label value below it gets a name)."""


def npz_headers(file: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array of an .npz, read from the .npy headers only (no data)."""
    out = {}
    with zipfile.ZipFile(file) as archive:
        for member in archive.infolist():
            if not member.filename.endswith(".npy"):
                continue
            with archive.open(member) as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(f)  # the header only; no data is read
            out[member.filename[:-4]] = (tuple(shape), np.dtype(dtype))
    return out


def check_npz_sizes(file: Path, headers: dict, keys: tuple[str, ...]) -> None:
    """Refuse arrays that would not fit in memory before reading them (a few MB of compressed zeros
    can declare many GiB)."""
    need = sum(int(np.prod(headers[k][0], dtype=np.float64)) * headers[k][1].itemsize for k in keys if k in headers)
    have = available_memory()
    if have and need > MEMORY_FRACTION * have:
        raise GenforgeError(f"{file}: its arrays {', '.join(k for k in keys if k in headers)} need {need / 2**30:.1f} GiB "
                            f"in memory, more than {MEMORY_FRACTION:.0%} of the {have / 2**30:.1f} GiB available; "
                            "save fewer or smaller images (uint8)")


def _as_nchw(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3} -> (N, C, H, W)."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return x.transpose(0, 3, 1, 2)
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x
    raise GenforgeError(f"{path}: array {key!r} has shape {x.shape}; expected (N, H, W), (N, H, W, C) or "
                        "(N, C, H, W) with C = 1 or 3")


def _to_uint8(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise GenforgeError(f"{path}: float array {key!r} must lie in [0, 1] (it spans {np.nanmin(x):.3g}.."
                                f"{np.nanmax(x):.3g}); save uint8 pixels 0..255 or floats in [0, 1]")
        return np.round(x * 255).astype(np.uint8)
    if np.issubdtype(x.dtype, np.integer) and x.min() >= 0 and x.max() <= 255:
        return x.astype(np.uint8)
    raise GenforgeError(f"{path}: array {key!r} has dtype {x.dtype}; save uint8 pixels 0..255 or floats in [0, 1]")


def load_npz(path: str, split: str) -> ImageDataset:
    """`npz:PATH`: arrays `x` (images) and optional `y` (int labels), `class_names` (strings);
    split 'test' reads `x_test` / `y_test` instead. Loaded without pickle."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise GenforgeError(f"npz file {file} does not exist; check the path after npz:")
    x_key, y_key = ("x", "y") if split == "train" else (f"x_{split}", f"y_{split}")
    try:
        headers = npz_headers(file)
        if x_key in headers:
            check_npz_sizes(file, headers, (x_key, y_key, "class_names"))
        with np.load(file, allow_pickle=False) as arrays:
            keys = set(arrays.files)
            if x_key not in keys:
                raise GenforgeError(f"{file} has no array {x_key!r} (it has {', '.join(sorted(keys)) or 'none'}); "
                                    f"save images as {x_key}=... with numpy.savez")
            x = arrays[x_key]
            y = arrays[y_key] if y_key in keys else None
            class_names = [str(c) for c in arrays["class_names"]] if "class_names" in keys else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise GenforgeError(f"{file}: not a readable .npz file ({exc}); save it with numpy.savez") from None
    if x.size == 0:
        raise GenforgeError(f"{file}: array {x_key!r} is empty (shape {x.shape}); save at least one image")
    x = _to_uint8(_as_nchw(x, file, x_key), file, x_key)
    if x.shape[-1] != x.shape[-2]:
        raise GenforgeError(f"{file}: images are {x.shape[-1]}x{x.shape[-2]}, not square; crop them before saving")
    labels = None
    if y is not None:
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise GenforgeError(f"{file}: {y_key!r} must be {len(x)} non-negative integer labels, got "
                                f"shape {y.shape} dtype {y.dtype}")
        labels = torch.from_numpy(y.astype(np.int64))
        if class_names and len(y) and int(y.max()) >= len(class_names):
            raise GenforgeError(f"{file}: label {int(y.max())} but only {len(class_names)} class_names")
        if not class_names and len(y) and int(y.max()) >= MAX_CLASSES:
            raise GenforgeError(f"{file}: label {int(y.max())} without class_names; labels must be class indices "
                                f"below {MAX_CLASSES:,} (number the classes 0, 1, 2, ... or save class_names)")
        class_names = class_names or [str(c) for c in range(int(y.max()) + 1 if len(y) else 0)]
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(x)), labels, class_names if labels is not None else None,
                        f"npz:{file}/{split}")


DIGITS_TEST_PER_CLASS = 18  # about 10%: 1,617 train / 180 test, stratified with mnist5k's fixed seed


def load_digits(split: str) -> ImageDataset:
    """scikit-learn's 1,797 handwritten digits, 8x8, values 0..16 scaled to 0..255."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise GenforgeError("the dataset digits needs scikit-learn; install it with "
                            "`pip install -c constraints.txt scikit-learn`") from None
    bunch = sklearn_digits()
    pixels = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    train, test = split_indices(labels, DIGITS_TEST_PER_CLASS)
    pick = {"train": train, "test": test, "all": np.arange(len(labels))}
    if split not in pick:
        raise GenforgeError(f"digits has splits train, test and all, not {split!r}")
    idx = pick[split]
    return ImageDataset(torch.from_numpy(pixels[idx][:, None].copy()), torch.from_numpy(labels[idx]),
                        [str(d) for d in range(10)], f"digits/{split}")
