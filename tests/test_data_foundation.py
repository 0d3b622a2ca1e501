"""The embedded mnist-5k data and IDX files written by the test in the real format."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from genforge.data import load_dataset
from genforge.data.idx import read_idx
from genforge.errors import GenforgeError


def test_mnist5k_split_is_stratified_disjoint_and_fixed():
    train = load_dataset("mnist-5k", split="train")
    test = load_dataset("mnist-5k", split="test")
    assert train.images.shape == (4500, 1, 28, 28) and test.images.shape == (500, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    assert torch.bincount(train.labels).tolist() == [450] * 10
    assert torch.bincount(test.labels).tolist() == [50] * 10
    train_rows = {bytes(x.numpy()) for x in train.images.flatten(1)}
    assert not any(bytes(x.numpy()) in train_rows for x in test.images.flatten(1))
    again = load_dataset("mnist-5k", split="test")
    assert torch.equal(again.images, test.images)
    # the pixel sum of the test split, pinned so that the split can never change silently between versions
    assert int(test.images.sum()) == 13_339_836


def write_idx(path, array: np.ndarray, compress: bool = False):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_dataset(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28))
    labels = rng.integers(0, 10, 7)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, compress)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels, compress)
    data = load_dataset("mnist", root=str(tmp_path), split="test")
    assert data.images.shape == (7, 1, 28, 28)
    assert np.array_equal(data.images[:, 0].numpy(), images.astype(np.uint8))
    assert data.labels.tolist() == labels.tolist()


def test_idx_length_mismatch(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    write_idx(path, np.zeros((4, 28, 28)))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(GenforgeError, match="promises"):
        read_idx(path)


def test_idx_image_label_count_mismatch(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5))
    with pytest.raises(GenforgeError, match="4 images but 5 labels"):
        load_dataset("mnist", root=str(tmp_path))


def test_resize_and_channels():
    data = load_dataset("mnist-5k", split="test", image_size=32, channels=3)
    assert data.images.shape == (500, 3, 32, 32) and data.images.dtype == torch.uint8
