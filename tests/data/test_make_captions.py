"""`genforge data make-captions` (issue 15): the stored attributes match the pixels, the held-out
digit-colour pairs never reach the train split, captions name every attribute."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from genforge.cli import main
from genforge.data import load_dataset
from genforge.data.make_captions import HELD_OUT, NUMBER_WORDS, POSITION_WORDS, SIZE_WORDS, measure


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("captions") / "set"
    assert main(["data", "make-captions", "--out", str(out), "--train", "60", "--test", "40", "--threads", "1"]) == 0
    return out


def rows(out, split):
    return [json.loads(line) for line in (out / split / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]


def test_stored_attributes_match_the_pixels(made):
    checked = 0
    for split in ("train", "test"):
        for row in rows(made, split):
            a = row["attributes"]
            image = np.asarray(Image.open(made / split / row["file_name"]))
            assert image.shape == (48, 48, 3)
            got = measure(image, a["count"])
            assert got["background"] == a["background"], row
            assert got["colours"] == a["colours"] and got["sizes"] == a["sizes"] and got["positions"] == a["positions"], row
            checked += 1
    assert checked == 100


def test_held_out_pairs_only_in_the_test_split(made):
    train, test = rows(made, "train"), rows(made, "test")
    pairs = lambda r: set(zip(r["attributes"]["digits"], r["attributes"]["colours"]))  # noqa: E731
    assert not any(pairs(r) & HELD_OUT for r in train)
    held = [r for r in test if r["attributes"]["heldout"]]
    assert len(held) == 20 and all(pairs(r) & HELD_OUT for r in held)
    assert not any(pairs(r) & HELD_OUT for r in test if not r["attributes"]["heldout"])
    assert any(r["attributes"]["count"] == 2 for r in train + test)


def test_every_caption_names_the_attributes(made):
    for row in rows(made, "train"):
        a = row["attributes"]
        assert len(row["text"]) == 3 and len(set(row["text"])) == 3
        for caption in row["text"]:
            assert a["background"] in caption and all(c in caption for c in a["colours"])
            assert all(str(d) in caption or NUMBER_WORDS[d] in caption for d in a["digits"])
            if a["count"] == 1:
                assert any(w in caption for w in SIZE_WORDS[a["sizes"][0]])
                assert any(w in caption for w in POSITION_WORDS[a["positions"][0]])
            else:
                assert "to the left of" in caption or "to the right of" in caption or "on the left and" in caption


def test_it_loads_as_captioned_data_and_refuses_a_used_folder(made, capsys):
    data = load_dataset(f"folder:{made}", split="test")
    assert len(data) == 40 and data.captions and len(data.extras["metadata"]) == 40
    assert main(["data", "make-captions", "--out", str(made)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
