"""Every dataset format, on small files written here in the real formats."""

from __future__ import annotations

import datafiles
import numpy as np
import pytest
import torch
from PIL import Image

from genforge.data import DATASETS, SOURCES, load_dataset, register_source
from genforge.data import images as images_module
from genforge.data.base import ImageDataset


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "kmnist"])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_datasets_read_both_splits(tmp_path, name, gz):
    arrays = datafiles.write_idx_set(tmp_path, gz=gz)
    train = load_dataset(name, str(tmp_path), "train")
    test = load_dataset(name, str(tmp_path), "test")
    assert train.images.shape == (12, 1, 6, 6) and test.images.shape == (6, 1, 6, 6)
    assert np.array_equal(train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(test.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert len(train.class_names) == 10


def test_cifar10_planes_labels_and_class_names(tmp_path):
    batches = datafiles.write_cifar10(tmp_path, per_batch=4)
    train = load_dataset("cifar10", str(tmp_path), "train")
    test = load_dataset("cifar10", str(tmp_path), "test")
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    first = batches["data_batch_1"]
    # The 3072 bytes of a row are the red plane (1024, row-major), then green, then blue.
    assert np.array_equal(train.images[0, 0].numpy().ravel(), first[b"data"][0, :1024])
    assert np.array_equal(train.images[0, 2].numpy().ravel(), first[b"data"][0, 2048:])
    assert train.labels[:4].tolist() == first[b"labels"]
    assert train.class_names[0] == "airplane" and train.num_classes == 10


def test_cifar100_fine_labels(tmp_path):
    batches = datafiles.write_cifar100(tmp_path, n=5)
    data = load_dataset("cifar100", str(tmp_path), "test")
    assert data.images.shape == (5, 3, 32, 32)
    assert data.labels.tolist() == batches["test"][b"fine_labels"]
    assert data.num_classes == 100 and data.class_names[3] == "class3"


def test_cifar_pickle_cannot_run_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    folder = tmp_path / "cifar-10-batches-py"
    datafiles.write_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    from genforge.errors import GenforgeError

    with pytest.raises(GenforgeError, match=r"data_batch_3.*refusing to load (__builtin__|builtins)\.print"):
        load_dataset("cifar10", str(tmp_path))


def test_folder_with_classes_keeps_exact_pixels(tmp_path):
    written = datafiles.write_image_folder(tmp_path / "imgs", {"cats": 3, "dogs": 2})
    data = load_dataset(f"folder:{tmp_path / 'imgs'}")
    assert data.images.shape == (5, 3, 8, 8)
    assert data.class_names == ["cats", "dogs"] and data.labels.tolist() == [0, 0, 0, 1, 1]
    assert np.array_equal(data.images[3].permute(1, 2, 0).numpy(), written["dogs/000.png"])


def test_folder_without_classes_is_unlabelled(tmp_path):
    datafiles.write_image_folder(tmp_path, None, channels=1)
    data = load_dataset(f"folder:{tmp_path}")
    assert data.images.shape == (4, 1, 8, 8) and data.labels is None


def test_folder_split_subfolders(tmp_path):
    datafiles.write_image_folder(tmp_path / "train", {"a": 2, "b": 2})
    datafiles.write_image_folder(tmp_path / "test", {"a": 1, "b": 1})
    assert len(load_dataset(f"folder:{tmp_path}", split="train")) == 4
    test = load_dataset(f"folder:{tmp_path}", split="test")
    assert len(test) == 2 and test.class_names == ["a", "b"]


def test_zip_read_in_place_same_as_folder(tmp_path):
    datafiles.write_image_folder(tmp_path / "imgs", {"cats": 3, "dogs": 2})
    archive = datafiles.zip_folder(tmp_path / "imgs", tmp_path / "imgs.zip", prefix="wrapper/")
    before = sorted(p.name for p in tmp_path.iterdir())
    from_zip = load_dataset(f"zip:{archive}")
    from_folder = load_dataset(f"folder:{tmp_path / 'imgs'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing extracted
    assert torch.equal(from_zip.images, from_folder.images)
    assert torch.equal(from_zip.labels, from_folder.labels) and from_zip.class_names == ["cats", "dogs"]


def test_jpeg_decoding_close_to_source(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    (tmp_path / "a.jpg").write_bytes(datafiles.png_bytes(np.stack([smooth] * 3, -1), "JPEG", quality=95))
    data = load_dataset(f"folder:{tmp_path}")
    assert data.images.shape == (1, 3, 16, 16)
    assert (data.images[0, 0].int() - torch.from_numpy(smooth).int()).abs().float().mean() < 3


def test_resize_crop_and_channels_at_load(tmp_path):
    wide = np.zeros((10, 20, 3), dtype=np.uint8)
    wide[:, 5:15] = 200  # the central 10x10 square is bright, the sides are black
    (tmp_path / "wide.png").write_bytes(datafiles.png_bytes(wide))
    data = load_dataset(f"folder:{tmp_path}", image_size=5, channels=1)
    assert data.images.shape == (1, 1, 5, 5)
    assert data.images.min() >= 199  # only the central (gray 200) square is left
    stretched = load_dataset(f"folder:{tmp_path}", image_size=5, crop="stretch")
    assert stretched.images[0, 0, 2, 0] < 100  # the black border survives a stretch


def test_workers_give_the_same_result(tmp_path, monkeypatch):
    datafiles.write_image_folder(tmp_path, {"a": 6, "b": 5})
    one = load_dataset(f"folder:{tmp_path}", workers=1)
    monkeypatch.setattr(images_module, "MIN_FILES_FOR_WORKERS", 0)
    two = load_dataset(f"folder:{tmp_path}", workers=2)
    assert torch.equal(one.images, two.images) and torch.equal(one.labels, two.labels)


def test_npz_layouts_and_test_split(tmp_path):
    x = datafiles.random_images(6, 4, channels=3)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.array([0, 1, 2, 0, 1, 2]), x_test=x[:2].astype(np.float32) / 255,
             class_names=np.array(["r", "g", "b"]))
    data = load_dataset(f"npz:{path}")
    assert data.images.shape == (6, 3, 4, 4) and np.array_equal(data.images.permute(0, 2, 3, 1).numpy(), x)
    assert data.class_names == ["r", "g", "b"] and data.labels.tolist() == [0, 1, 2, 0, 1, 2]
    test = load_dataset(f"npz:{path}", split="test")
    assert test.labels is None and torch.equal(test.images, data.images[:2])


def test_digits_scaled_with_fixed_split():
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    assert train.images.shape == (1617, 1, 8, 8) and test.images.shape == (180, 1, 8, 8)
    assert train.images.max() == 255 and torch.bincount(test.labels).tolist() == [18] * 10
    assert torch.equal(load_dataset("digits", split="test").images, test.images)


def test_celeba_center_crop_and_default_size(tmp_path):
    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    face = np.zeros((218, 178, 3), dtype=np.uint8)
    face[20:198] = 255  # white exactly inside the central 178x178 square
    for i in range(1, 4):
        (folder / f"{i:06d}.jpg").write_bytes(datafiles.png_bytes(face, "JPEG", quality=95))
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg 2\n")
    train = load_dataset("celeba", str(tmp_path))
    assert train.images.shape == (2, 3, 64, 64) and train.labels is None
    assert train.images.float().mean() > 240  # the black bands were cropped away
    assert load_dataset("celeba", str(tmp_path), "test", image_size=32).images.shape == (1, 3, 32, 32)


def test_register_two_argument_source(tmp_path):
    calls = []

    def toy(path, split):
        calls.append((path, split))
        return ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))

    register_source("toy", toy)
    try:
        assert load_dataset("toy:somewhere", split="test", image_size=8).images.shape == (2, 1, 8, 8)
        assert calls == [("somewhere", "test")]
    finally:
        del SOURCES["toy"]


def test_registry_lists_the_issue_names():
    assert {"mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100", "celeba", "mnist-5k", "digits"} <= set(DATASETS)
    assert {"folder", "zip", "npz"} <= set(SOURCES)


def test_preview_and_stats(tmp_path):
    from genforge.data.info import pixel_stats, save_preview, summarize

    data = load_dataset("digits", split="test")
    s = summarize(data)
    assert s.count == 180 and s.class_counts["3"] == 18
    x = data.images.double()
    assert s.mean[0] == pytest.approx(x.mean().item()) and s.std[0] == pytest.approx(x.std(unbiased=False).item())
    mean, std = pixel_stats(torch.tensor([[[[0, 255]]]], dtype=torch.uint8))
    assert mean == [127.5] and std == [127.5]
    path = save_preview(data, tmp_path / "p.png")
    assert Image.open(path).size == (8 * 10 + 2, 10 * 10 + 2)  # 8 per row, 10 class rows, 2px padding
