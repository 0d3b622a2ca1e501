"""MNIST-style IDX files (``*-idx3-ubyte[.gz]`` images, ``*-idx1-ubyte[.gz]`` labels).

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian header of a magic number
``0x00 0x00 <type> <ndim>`` (type 0x08 = unsigned byte), then one uint32 per dimension, then the
data. We check the magic number and that the file holds exactly the bytes the header promises.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ..errors import GenforgeError
from .base import ImageDataset


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file of unsigned bytes, checking its header against its length."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise GenforgeError(f"{path}: cannot read ({exc}); download the file again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] not in (1, 3):
        raise GenforgeError(f"{path}: not an IDX file of unsigned bytes (wrong magic number "
                            f"{raw[:4].hex() or 'empty'}); pass the original *-idx3-ubyte / *-idx1-ubyte files")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise GenforgeError(f"{path}: header is truncated; download the file again")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise GenforgeError(f"{path}: holds {len(raw)} bytes but its header {dims} promises {expected} "
                            "(truncated or padded); download the file again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_idx(root: Path, prefix: str, kind: str) -> Path:
    """Find e.g. train-images-idx3-ubyte or train-images-idx3-ubyte.gz (also train-images.idx3-ubyte)."""
    for name in (f"{prefix}-{kind}", f"{prefix}-{kind}.gz",
                 f"{prefix}.{kind.split('-', 1)[1]}", f"{prefix}.{kind.split('-', 1)[1]}.gz"):
        if (root / name).is_file():
            return root / name
    raise GenforgeError(f"{root}: no {prefix}-{kind}[.gz]; put the four IDX files of the dataset in this folder")


def load_idx_dataset(root: str | Path, split: str, name: str, class_names: list[str]) -> ImageDataset:
    """Load the train or test split of an IDX dataset (MNIST, Fashion-MNIST, KMNIST) from a folder."""
    root = Path(root)
    if not root.is_dir():
        raise GenforgeError(f"data folder {root} does not exist; point --data-root at the folder "
                            "that holds the IDX files")
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise GenforgeError(f"{name} has splits train and test, not {split!r}")
    images = read_idx(find_idx(root, f"{prefix}-images", "idx3-ubyte"))
    labels = read_idx(find_idx(root, f"{prefix}-labels", "idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1:
        raise GenforgeError(f"{root}: images must be a 3-d and labels a 1-d IDX file; check the file names")
    if len(images) != len(labels):
        raise GenforgeError(f"{root}: {len(images)} images but {len(labels)} labels in the {split} split; "
                            "the files come from different datasets or one is damaged")
    return ImageDataset(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)),
                        class_names, f"{name}/{split}")
