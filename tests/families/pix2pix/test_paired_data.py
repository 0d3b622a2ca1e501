"""Paired layouts (side by side, A/ B/), direction, bad pairs, and genforge data make-pairs."""

import numpy as np
import pytest
import torch

from genforge.data import load_dataset
from genforge.data.make_pairs import digit_edges, make_pairs, mask_squares
from genforge.data.paired import load_paired, prepare_pairs, read_pairs
from genforge.errors import GenforgeError
from tests.families.pix2pix.pix2pix_helpers import blobs, save, write_side_by_side


def test_side_by_side_layout_with_splits(tmp_path):
    a, b = blobs(5, 8, 0), blobs(5, 8, 1)
    write_side_by_side(tmp_path / "train", a, b)
    write_side_by_side(tmp_path / "test", a[:2], b[:2])
    train = load_paired(str(tmp_path), "train")
    assert train.images.shape == (5, 1, 8, 8) and train.targets.shape == (5, 1, 8, 8)
    assert np.array_equal(train.images.permute(0, 2, 3, 1).numpy(), a)
    assert np.array_equal(train.targets.permute(0, 2, 3, 1).numpy(), b)
    assert len(load_paired(str(tmp_path), "test")) == 2
    with pytest.raises(GenforgeError, match="no val/ folder"):
        load_paired(str(tmp_path), "val")


def test_two_folder_layout_matches_file_names(tmp_path):
    a, b = blobs(3, 8, 0, channels=3), blobs(3, 8, 1, channels=3)
    for i, name in enumerate(["zeta", "alpha", "mid"]):
        save(a[i], tmp_path / "A" / f"{name}.png")
        save(b[i], tmp_path / "B" / f"{name}.bmp")  # matched by name, whatever the extension
    data = read_pairs(tmp_path)
    assert data.extras["names"] == ["alpha", "mid", "zeta"]
    assert np.array_equal(data.images[0].permute(1, 2, 0).numpy(), a[1])  # alpha
    assert np.array_equal(data.targets[0].permute(1, 2, 0).numpy(), b[1])


def test_the_pix2pix_repository_layout_a_train_b_train(tmp_path):
    """Issue 18: A/train + B/train (+ A/test, B/test), as the pix2pix repository's combine_A_and_B.py takes them."""
    a, b = blobs(4, 8, 0), blobs(4, 8, 1)
    for i in range(4):
        split = "train" if i < 3 else "test"
        save(a[i], tmp_path / "A" / split / f"{i}.png")
        save(b[i], tmp_path / "B" / split / f"{i}.png")
    train, test = load_paired(str(tmp_path), "train"), load_paired(str(tmp_path), "test")
    assert len(train) == 3 and len(test) == 1
    assert np.array_equal(train.images.permute(0, 2, 3, 1).numpy(), a[:3])
    assert np.array_equal(test.targets.permute(0, 2, 3, 1).numpy(), b[3:])
    with pytest.raises(GenforgeError, match="no A/val and B/val pair"):
        load_paired(str(tmp_path), "val")


def test_direction_swaps_the_halves(tmp_path):
    write_side_by_side(tmp_path, blobs(2, 8, 0), blobs(2, 8, 1))
    data = read_pairs(tmp_path)
    swapped = prepare_pairs(read_pairs(tmp_path), "BtoA")
    assert torch.equal(swapped.images, data.targets) and torch.equal(swapped.targets, data.images)


def test_gray_and_colour_files_are_read_as_rgb(tmp_path):
    save(blobs(1, 8, 0)[0], tmp_path / "A" / "x.png")
    save(blobs(1, 8, 1, channels=3)[0], tmp_path / "B" / "x.png")
    data = read_pairs(tmp_path)
    assert data.images.shape[1] == data.targets.shape[1] == 3


def test_paired_source_through_the_registry_resizes_both_halves(tmp_path):
    write_side_by_side(tmp_path / "train", blobs(3, 16, 0), blobs(3, 16, 1))
    data = load_dataset(f"paired:{tmp_path}", split="train", image_size=8, channels=3)
    assert data.images.shape == data.targets.shape == (3, 3, 8, 8)


@pytest.mark.parametrize("case, message", [
    ("odd-width", "halves differ in size"),
    ("mixed-sizes", "all pairs must have one size"),
    ("ab-sizes", "the two images of a pair must have the same size"),
    ("partner", "have no partner"),
    ("empty", "holds no images"),
    ("not-image", "not a readable image"),
])
def test_bad_pairs_are_one_line_errors(tmp_path, case, message):
    if case == "odd-width":
        save(np.zeros((8, 15, 1), np.uint8), tmp_path / "p.png")
    elif case == "mixed-sizes":
        save(np.zeros((8, 16, 1), np.uint8), tmp_path / "p.png")
        save(np.zeros((10, 20, 1), np.uint8), tmp_path / "q.png")
    elif case == "ab-sizes":
        save(np.zeros((8, 8, 1), np.uint8), tmp_path / "A" / "x.png")
        save(np.zeros((8, 10, 1), np.uint8), tmp_path / "B" / "x.png")
    elif case == "partner":
        save(np.zeros((8, 8, 1), np.uint8), tmp_path / "A" / "x.png")
        save(np.zeros((8, 8, 1), np.uint8), tmp_path / "B" / "y.png")
    elif case == "not-image":
        (tmp_path / "p.png").write_bytes(b"not a png at all")
    with pytest.raises(GenforgeError, match=message) as info:
        read_pairs(tmp_path)
    assert "\n" not in str(info.value)


def test_non_square_pairs_need_a_resize(tmp_path):
    write_side_by_side(tmp_path, np.zeros((2, 8, 12, 1), np.uint8), np.zeros((2, 8, 12, 1), np.uint8))
    with pytest.raises(GenforgeError, match="not square"):
        prepare_pairs(read_pairs(tmp_path), "AtoB")


def test_unpaired_data_is_refused_for_pix2pix():
    with pytest.raises(GenforgeError, match="needs paired data"):
        prepare_pairs(load_dataset("mnist-5k", split="test"), "AtoB", "mnist-5k")


def test_digit_edges_and_masks_by_hand():
    square = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    square[..., 2:6, 2:6] = 255
    edges = digit_edges(square)
    assert int((edges == 255).sum()) == 12 and edges[0, 0, 3:5, 3:5].eq(0).all()  # the ring, not the inside
    masked = mask_squares(torch.zeros(4, 1, 16, 16, dtype=torch.uint8), 5, seed=0)
    assert (masked == 128).flatten(1).sum(1).tolist() == [25] * 4


def test_make_pairs_digits_and_colorize(tmp_path):
    made = make_pairs("edges2digits", tmp_path / "e2d", limit=6)
    assert made.counts == {"train": 6, "test": 6}
    data = load_paired(str(tmp_path / "e2d"), "test")
    assert data.images.shape == (6, 1, 32, 32)
    assert torch.equal(data.images, digit_edges(data.targets))  # the pairs hold what they claim

    photos = tmp_path / "photos"
    for i, img in enumerate(blobs(10, 12, 3, channels=3)):
        save(img, photos / "sub" / f"{i}.jpg")
    make_pairs("colorize", tmp_path / "col", source=str(photos), size=8)
    train, test = load_paired(str(tmp_path / "col"), "train"), load_paired(str(tmp_path / "col"), "test")
    assert len(train) == 9 and len(test) == 1 and train.images.shape[1] == 3
    assert torch.equal(train.images[:, 0], train.images[:, 1])  # the input is gray

    with pytest.raises(GenforgeError, match="not empty"):
        make_pairs("inpaint-digits", tmp_path / "col")
    assert len(list((tmp_path / "col" / "train").iterdir())) == 9  # nothing overwritten


def test_data_info_shows_both_halves_and_folder_warns_about_pairs(tmp_path, capsys):
    from PIL import Image

    from genforge.cli import main
    from genforge.data.info import preview_images

    a, b = blobs(10, 8, 0), blobs(10, 8, 1)
    write_side_by_side(tmp_path / "pairs" / "train", a, b)
    data = load_paired(str(tmp_path / "pairs"), "train")
    grid, per_row = preview_images(data)
    assert per_row == 8 and len(grid) == 16  # 8 inputs above their 8 targets
    assert torch.equal(grid[8:], data.targets[torch.randperm(10, generator=torch.Generator().manual_seed(0))[:8]])
    assert main(["data", "info", f"paired:{tmp_path / 'pairs'}", "--preview", str(tmp_path / "p.png")]) == 0
    assert "inputs A above its row of targets B" in capsys.readouterr().out
    assert Image.open(tmp_path / "p.png").size[1] > Image.open(tmp_path / "p.png").size[0] / 8 * 1.5  # two rows
    assert main(["data", "info", f"folder:{tmp_path / 'pairs' / 'train'}", "--no-preview"]) == 2
    assert f"look like side-by-side pairs: for pix2pix use --data paired:{tmp_path / 'pairs' / 'train'}" in \
        capsys.readouterr().err
