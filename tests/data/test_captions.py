"""Captioned data (issue 15): sidecar .txt files, metadata.jsonl and metadata.csv, in folders and zips;
each bad input as one line (or skipped with --skip-bad); caption statistics in `genforge data info`."""

from __future__ import annotations

import json

import datafiles
import pytest

from genforge.cli import main
from genforge.data import load_dataset
from genforge.data.info import caption_stats
from genforge.errors import GenforgeError


def images(root, count=3, classes=None):
    """`count` 8x8 RGB images at the top level of root (or class folders); returns their names."""
    return sorted(datafiles.write_image_folder(root, classes or {"": count}))


def one_line(exc) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_sidecar_captions_several_lines_several_captions(tmp_path):
    names = images(tmp_path)
    for i, name in enumerate(names):
        (tmp_path / name).with_suffix(".txt").write_text(f"caption {i}\n  second   one {i} \n\n", encoding="utf-8")
    data = load_dataset(f"folder:{tmp_path}")
    assert len(data) == 3 and data.labels is None
    assert data.captions == [[f"caption {i}", f"second one {i}"] for i in range(3)]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_metadata_files_with_extra_keys_and_several_rows(tmp_path, fmt):
    names = images(tmp_path)
    if fmt == "jsonl":
        rows = [{"file_name": n, "text": [f"a {i}", f"b {i}"], "attributes": {"k": i}} for i, n in enumerate(names)]
        (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
        expected = [[f"a {i}", f"b {i}"] for i in range(3)]
    else:
        lines = ["file_name,text"] + [f'{n},"a, {i}"' for i, n in enumerate(names)] + [f"{names[0]},extra"]
        (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        expected = [["a, 0", "extra"], ["a, 1"], ["a, 2"]]
    data = load_dataset(f"folder:{tmp_path}")
    assert data.captions == expected
    if fmt == "jsonl":
        assert data.extras["metadata"] == [{"attributes": {"k": i}} for i in range(3)]


def test_captions_in_a_zip_with_split_folders_and_class_labels(tmp_path):
    folder = tmp_path / "src"
    for split in ("train", "test"):
        written = images(folder / split, classes={"cats": 2, "dogs": 1})
        for name in written:
            (folder / split / name).with_suffix(".txt").write_text(f"{split} {name}", encoding="utf-8")
    archive = datafiles.zip_folder(folder, tmp_path / "c.zip", prefix="wrap/")
    data = load_dataset(f"zip:{archive}", split="test")
    assert data.labels.tolist() == [0, 0, 1] and data.class_names == ["cats", "dogs"]
    assert data.captions == [["test cats/000.png"], ["test cats/001.png"], ["test dogs/000.png"]]


def test_a_source_without_caption_files_is_plain_image_data(tmp_path):
    images(tmp_path)
    assert load_dataset(f"folder:{tmp_path}").captions is None


@pytest.mark.parametrize("case", ["no-caption", "orphan-caption", "empty", "not-utf8", "bad-json", "unknown-file",
                                  "csv-columns"])
def test_bad_caption_input_is_one_line_or_skipped(tmp_path, capsys, case):
    names = images(tmp_path)
    for name in names[1:]:
        (tmp_path / name).with_suffix(".txt").write_text("a caption", encoding="utf-8")
    first = (tmp_path / names[0]).with_suffix(".txt")
    expect = {
        "no-caption": (None, f"{tmp_path}/{names[0]} has no caption", 2),
        "orphan-caption": ("ghost.txt", "ghost.txt is a caption without an image", 3),
        "empty": (first.name, "empty caption", 2),
        "not-utf8": (first.name, "is not UTF-8 text", 2),
        "bad-json": ("metadata.jsonl", "line 1 is not JSON", 3),
        "unknown-file": ("metadata.jsonl", "which is not an image of this source", 3),
        "csv-columns": ("metadata.csv", "needs the columns file_name and text", 3),
    }[case]
    written, reason, kept = expect
    content = {"orphan-caption": b"no image", "empty": b"  \n\n", "not-utf8": b"caf\xe9 au lait",
               "bad-json": b"{not json\n", "unknown-file": b'{"file_name": "nope.png", "text": "x"}\n',
               "csv-columns": b"name,caption\nx.png,y\n"}.get(case)
    if case != "no-caption":
        if case in ("bad-json", "unknown-file", "csv-columns", "orphan-caption"):
            first.write_text("the first", encoding="utf-8")
        (tmp_path / written).write_bytes(content)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(GenforgeError) as exc:
        load_dataset(f"folder:{tmp_path}")
    message = one_line(exc)
    assert reason in message and "--skip-bad" in message, message
    data = load_dataset(f"folder:{tmp_path}", skip_bad=True)
    assert len(data) == kept and len(data.captions) == kept
    assert "genforge: warning: skipped" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing on disk touched


def test_bad_caption_through_the_cli_exits_2_with_one_line(tmp_path, cli):
    names = images(tmp_path / "d")
    (tmp_path / "d" / names[0]).with_suffix(".txt").write_bytes(b"\xff\xfe\xfa")
    proc = cli("data", "info", f"folder:{tmp_path / 'd'}", "--no-preview")
    assert proc.returncode == 2
    assert proc.stderr.startswith("genforge: error: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr and "not UTF-8" in proc.stderr


def test_caption_stats_and_data_info(tmp_path, monkeypatch, capsys):
    stats = caption_stats([["A red 7.", "a big seven"], ["a red 3"]])
    assert (stats.count, stats.per_image_min, stats.per_image_max) == (3, 1, 2)
    assert (stats.words_min, stats.words_max) == (3, 4) and stats.words_mean == pytest.approx(10 / 3)
    assert stats.vocabulary == 7 and stats.top_words[0] == ("a", 3) and stats.once == 5  # ., 7, big, seven, 3
    names = images(tmp_path / "d")
    for i, name in enumerate(names):
        (tmp_path / "d" / name).with_suffix(".txt").write_text(f"a red {i}\na blue {i}", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["data", "info", f"folder:{tmp_path / 'd'}", "--preview", "p.png"]) == 0
    out = capsys.readouterr().out
    assert "captions: 6 (2..2 per image), 3..3 words (mean 3.0)" in out
    assert "words:    6 distinct, 0 in a single caption; most frequent: a 6" in out
    lines = (tmp_path / "p.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and lines[0].startswith("row 1 col 1: a red ")
