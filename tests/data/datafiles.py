"""Writers of small dataset files in the real formats, for the data tests (never real data)."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def random_images(n: int, size: int = 8, channels: int = 1, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size) or (n, size, size, 3)."""
    rng = np.random.default_rng(seed)
    shape = (n, size, size) if channels == 1 else (n, size, size, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic 00 00 08 ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(root: Path, n_train: int = 12, n_test: int = 6, size: int = 6, gz: bool = True) -> dict:
    """The four MNIST-style files; returns the arrays written."""
    root.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": random_images(n_train, size, seed=1),
              "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
              "t10k-images-idx3-ubyte": random_images(n_test, size, seed=2),
              "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10}
    for name, array in arrays.items():
        raw = idx_bytes(array)
        (root / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


def cifar_batch(n: int, seed: int, label_key: bytes = b"labels", classes: int = 10) -> dict:
    """A batch dict as in the official python version: bytes keys, data (n, 3072) uint8, labels list."""
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"testing batch", label_key: [int(v) for v in rng.integers(0, classes, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}


def write_pickle(path: Path, obj) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar10(root: Path, per_batch: int = 4) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batches[name] = cifar_batch(per_batch, seed=i)
        write_pickle(folder / name, batches[name])
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_pickle(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": per_batch})
    return batches


def write_cifar100(root: Path, n: int = 5) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    batches = {"train": cifar_batch(n, 7, b"fine_labels", 100), "test": cifar_batch(n, 8, b"fine_labels", 100)}
    for name, batch in batches.items():
        write_pickle(folder / name, batch)
    write_pickle(folder / "meta", {b"fine_label_names": [f"class{i}".encode() for i in range(100)],
                                   b"coarse_label_names": [f"super{i}".encode() for i in range(20)]})
    return batches


def png_bytes(array: np.ndarray, fmt: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def write_image_folder(root: Path, classes: dict[str, int] | None, size: int = 8, channels: int = 3,
                       fmt: str = "PNG") -> dict[str, np.ndarray]:
    """classes: {class name: count} (files in class subfolders) or None (4 files at top level).
    Returns {relative path: pixels}."""
    written = {}
    layout = classes or {"": 4}
    for k, (cls, count) in enumerate(sorted(layout.items())):
        folder = root / cls if cls else root
        folder.mkdir(parents=True, exist_ok=True)
        for i, pixels in enumerate(random_images(count, size, channels, seed=10 + k)):
            name = f"{i:03d}.{'png' if fmt == 'PNG' else 'jpg'}"
            (folder / name).write_bytes(png_bytes(pixels, fmt))
            written[f"{cls}/{name}" if cls else name] = pixels
    return written


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    """Zip every file under folder (stored), member names prefixed by `prefix`."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, prefix + path.relative_to(folder).as_posix())
    return archive
