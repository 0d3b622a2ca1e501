"""Each bad input of issue 3: one line naming the file and the problem, or skipped with --skip-bad."""

from __future__ import annotations

import gzip
import zipfile

import datafiles
import numpy as np
import pytest

from genforge.data import load_dataset
from genforge.errors import GenforgeError


def good_folder(root, count=3):
    datafiles.write_image_folder(root, {"a": count})
    return root / "a"


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("case", ["corrupt", "truncated", "non-image", "bad-extension"])
def test_bad_file_fails_naming_it_or_is_skipped(tmp_path, capsys, case):
    folder = good_folder(tmp_path)
    good_jpeg = datafiles.png_bytes(datafiles.random_images(1, 32, 3)[0], "JPEG")
    name, content, reason = {
        "corrupt": ("bad.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not a readable image"),
        "truncated": ("half.jpg", good_jpeg[:len(good_jpeg) // 2], "truncated"),
        "non-image": ("notes.doc", b"hello", "not an image file (extension '.doc')"),
        "bad-extension": ("text.jpg", b"just some text", "not a readable image"),
    }[case]
    (folder / name).write_bytes(content)
    with pytest.raises(GenforgeError) as exc:
        load_dataset(f"folder:{tmp_path}")
    message = one_line(exc)
    assert f"{folder / name}: " in message and reason in message and "--skip-bad" in message

    data = load_dataset(f"folder:{tmp_path}", skip_bad=True)
    assert len(data) == 3
    warning = capsys.readouterr().err
    assert "skipped 1 bad file(s)" in warning and name in warning
    assert (folder / name).read_bytes() == content  # nothing on disk touched


def test_skip_bad_reports_count_and_first_names(tmp_path, capsys):
    folder = good_folder(tmp_path)
    for i in range(5):
        (folder / f"junk{i}.png").write_bytes(b"not a png")
    data = load_dataset(f"folder:{tmp_path}", skip_bad=True)
    assert len(data) == 3
    warning = capsys.readouterr().err
    assert "skipped 5 bad file(s)" in warning and "junk0.png" in warning and "junk4.png" not in warning
    assert len(data.extras["skipped"]) == 5


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenforgeError, match="holds no image files"):
        load_dataset(f"folder:{tmp_path / 'empty'}")


def test_missing_folder(tmp_path):
    with pytest.raises(GenforgeError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")


def test_mixed_sizes(tmp_path, capsys):
    folder = good_folder(tmp_path)
    (folder / "big.png").write_bytes(datafiles.png_bytes(datafiles.random_images(1, 16, 3)[0]))
    with pytest.raises(GenforgeError) as exc:
        load_dataset(f"folder:{tmp_path}")
    message = one_line(exc)
    assert "big.png: is 16x16 RGB but the first image" in message and "data.image_size" in message
    assert load_dataset(f"folder:{tmp_path}", image_size=8).images.shape == (4, 3, 8, 8)  # the fix works
    assert len(load_dataset(f"folder:{tmp_path}", skip_bad=True)) == 3


def test_mixed_modes(tmp_path):
    folder = good_folder(tmp_path)
    (folder / "gray.png").write_bytes(datafiles.png_bytes(datafiles.random_images(1, 8, 1)[0]))
    with pytest.raises(GenforgeError, match="gray.png: is 8x8 gray but the first image .* is 8x8 RGB"):
        load_dataset(f"folder:{tmp_path}")
    assert load_dataset(f"folder:{tmp_path}", channels=3).images.shape == (4, 3, 8, 8)


def test_sixteen_bit_image_is_refused(tmp_path):
    folder = good_folder(tmp_path)
    from PIL import Image

    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(folder / "deep.png")
    with pytest.raises(GenforgeError, match="deep.png: pixel mode I;16.* not supported"):
        load_dataset(f"folder:{tmp_path}")


def test_non_square_without_size(tmp_path):
    (tmp_path / "wide.png").write_bytes(datafiles.png_bytes(np.zeros((4, 8, 3), dtype=np.uint8)))
    with pytest.raises(GenforgeError, match="wide.png is 8x4, not square; .*data.image_size"):
        load_dataset(f"folder:{tmp_path}")


def test_zip_with_no_images(tmp_path):
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("folder/", "")
    with pytest.raises(GenforgeError, match="holds no image files"):
        load_dataset(f"zip:{empty}")
    texts = tmp_path / "texts.zip"
    with zipfile.ZipFile(texts, "w") as z:
        z.writestr("readme.txt", "no pictures here")  # a .txt is a caption file (issue 15): no image at all
    with pytest.raises(GenforgeError, match=r"holds no image files"):
        load_dataset(f"zip:{texts}")
    with zipfile.ZipFile(texts, "w") as z:
        z.writestr("readme.md", "no pictures here")
    with pytest.raises(GenforgeError, match=r"readme.md: not an image file"):
        load_dataset(f"zip:{texts}")


def test_not_a_zip(tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK but not really")
    with pytest.raises(GenforgeError, match="fake.zip is not a readable zip archive"):
        load_dataset(f"zip:{fake}")


def test_corrupt_member_in_zip(tmp_path):
    folder = good_folder(tmp_path / "src")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    archive = datafiles.zip_folder(tmp_path / "src", tmp_path / "d.zip")
    with pytest.raises(GenforgeError, match=r"d.zip:a/broken.jpg: not a readable image"):
        load_dataset(f"zip:{archive}")


def test_idx_wrong_magic(tmp_path):
    datafiles.write_idx_set(tmp_path)
    raw = bytearray(gzip.decompress((tmp_path / "train-images-idx3-ubyte.gz").read_bytes()))
    raw[2] = 0x0D  # float data instead of unsigned bytes
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(GenforgeError, match="train-images-idx3-ubyte.gz: not an IDX file .*wrong magic number 00000d03"):
        load_dataset("mnist", str(tmp_path))


def test_idx_length_mismatch(tmp_path):
    datafiles.write_idx_set(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(GenforgeError, match="t10k-images-idx3-ubyte: holds .* bytes but its header"):
        load_dataset("fashion-mnist", str(tmp_path), "test")


def test_idx_labels_and_images_disagree(tmp_path):
    datafiles.write_idx_set(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(datafiles.idx_bytes(np.zeros(3, dtype=np.uint8)))
    with pytest.raises(GenforgeError, match="12 images but 3 labels"):
        load_dataset("kmnist", str(tmp_path))


def test_missing_cifar_batch(tmp_path):
    datafiles.write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(GenforgeError, match="data_batch_4 is missing"):
        load_dataset("cifar10", str(tmp_path))


def test_cifar_batch_with_wrong_shape(tmp_path):
    datafiles.write_cifar10(tmp_path)
    batch = datafiles.cifar_batch(4, 0)
    batch[b"data"] = batch[b"data"][:, :100]
    datafiles.write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", batch)
    with pytest.raises(GenforgeError, match=r"test_batch: 'data' must be a uint8 array of shape \(N, 3072\)"):
        load_dataset("cifar10", str(tmp_path), "test")


def test_npz_bad_arrays(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, images=np.zeros((2, 4, 4), dtype=np.uint8))
    with pytest.raises(GenforgeError, match="has no array 'x' .*images"):
        load_dataset(f"npz:{path}")
    np.savez(path, x=np.full((2, 4, 4), 3.0))
    with pytest.raises(GenforgeError, match=r"must lie in \[0, 1\]"):
        load_dataset(f"npz:{path}")
    np.savez(path, x=np.zeros((2, 4, 4), dtype=np.uint8), y=np.array([0, 1, 2]))
    with pytest.raises(GenforgeError, match="'y' must be 2 non-negative integer labels"):
        load_dataset(f"npz:{path}")


def test_unknown_names(tmp_path):
    with pytest.raises(GenforgeError, match="unknown dataset 'imagenet'.*folder:PATH"):
        load_dataset("imagenet")
    with pytest.raises(GenforgeError, match="unknown source kind 'tar'"):
        load_dataset("tar:x.tar")
    with pytest.raises(GenforgeError, match="split folders .*no 'test'|only split 'train'"):
        datafiles.write_image_folder(tmp_path, {"a": 1})
        load_dataset(f"folder:{tmp_path}", split="test")


def test_memory_budget_refuses_oversized(tmp_path, monkeypatch):
    from genforge.data import options

    good_folder(tmp_path)
    monkeypatch.setattr(options, "available_memory", lambda: 1000)
    with pytest.raises(GenforgeError, match=r"3 images of 3x8x8 need .* GiB decoded, more than 50% .*does not stream"):
        load_dataset(f"folder:{tmp_path}")
