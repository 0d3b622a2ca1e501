"""CIFAR-10 and CIFAR-100 in the official "python version" layout (Krizhevsky 2009,
https://www.cs.toronto.edu/~kriz/cifar.html).

cifar-10-batches-py/  data_batch_1..5, test_batch, batches.meta
cifar-100-python/     train, test, meta
Each batch is a pickled dict: b'data' a uint8 array (N, 3072) of R, G, B planes of 32x32, and
b'labels' (CIFAR-10) or b'fine_labels' (CIFAR-100). The pickles are read with an unpickler that
accepts only the classes numpy arrays need, so a doctored file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import GenforgeError
from .base import ImageDataset

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
LAYOUTS = {
    # name: (folder inside the root, {split: batch files}, meta file, meta key, label key)
    "cifar10": ("cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
                "batches.meta", b"label_names", b"labels"),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]}, "meta", b"fine_label_names",
                 b"fine_labels"),
}
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _SafeUnpickler(pickle.Unpickler):
    """Only plain containers, bytes, strings, numbers and numpy arrays."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_batch(path: Path) -> dict:
    if not path.is_file():
        raise GenforgeError(f"{path} is missing; the CIFAR folder must hold every batch of the official python "
                            "version (genforge data download cifar10 fetches it)")
    try:
        batch = _SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as exc:  # any failure to unpickle means a damaged or foreign file
        raise GenforgeError(f"{path}: not a CIFAR python batch ({type(exc).__name__}: {exc}); "
                            "download the dataset again") from None
    if not isinstance(batch, dict):
        raise GenforgeError(f"{path}: not a CIFAR python batch (holds a {type(batch).__name__}); download it again")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def find_folder(root: Path, folder: str) -> Path:
    """The batch folder: root/folder (as extracted from the tarball) or root itself."""
    for candidate in (root / folder, root):
        if candidate.is_dir() and any(candidate.iterdir()):
            return candidate
    raise GenforgeError(f"no CIFAR data in {root}; put the extracted {folder}/ folder there "
                        "(or run genforge data download with the dataset's name)")


def load_cifar(root: str | Path, split: str, name: str = "cifar10") -> ImageDataset:
    """Load the train (50,000) or test (10,000) split of CIFAR-10 or CIFAR-100 (fine labels)."""
    folder_name, splits, meta_file, meta_key, label_key = LAYOUTS[name]
    if split not in splits:
        raise GenforgeError(f"{name} has splits train and test, not {split!r}")
    folder = find_folder(Path(root).expanduser(), folder_name)
    images, labels = [], []
    for batch_name in splits[split]:
        path = folder / batch_name
        batch = read_batch(path)
        data, batch_labels = batch.get("data"), batch.get(label_key.decode())
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise GenforgeError(f"{path}: 'data' must be a uint8 array of shape (N, 3072); the file is damaged, "
                                "download it again")
        try:
            batch_labels = np.asarray(batch_labels, dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            batch_labels = None  # strings, nested lists, numbers out of range: not labels
        if batch_labels is None or batch_labels.ndim != 1 or len(batch_labels) != len(data):
            raise GenforgeError(f"{path}: {label_key.decode()!r} must be {len(data)} integer labels, one per image; "
                                "the file is damaged, download it again")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    class_names = None
    meta_path = folder / meta_file
    if meta_path.is_file():
        names = read_batch(meta_path).get(meta_key.decode())
        if names is not None and not (isinstance(names, (list, tuple)) and len(names) <= 100_000):
            raise GenforgeError(f"{meta_path}: {meta_key.decode()!r} must be a list of class names; "
                                "the file is damaged, download it again")
        if names:
            class_names = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names]
    if class_names is None:
        if name != "cifar10":
            raise GenforgeError(f"{meta_path} is missing; it holds the class names of {name}, download it again")
        class_names = CIFAR10_CLASSES
    all_labels = np.concatenate(labels)
    if not len(all_labels):
        raise GenforgeError(f"{folder}: the {split} batches hold no images; the files are damaged, download them again")
    if all_labels.min() < 0 or all_labels.max() >= len(class_names):
        raise GenforgeError(f"{folder}: labels outside 0..{len(class_names) - 1}; the files are damaged")
    return ImageDataset(torch.from_numpy(np.concatenate(images)), torch.from_numpy(all_labels),
                        class_names, f"{name}/{split}")
