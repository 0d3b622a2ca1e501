"""Progress of long, silent work (issue 18): a bar on a terminal, plain lines otherwise, never nothing."""

from __future__ import annotations

import io

import torch

from genforge import progress
from genforge.cli import main


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_silent_unless_asked():
    stream = io.StringIO()
    with progress.task("work", 10, stream=stream) as t:
        t.update(10)
    assert stream.getvalue() == ""


def test_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    with progress.reporting():
        t = progress.task("work", 10, "image", stream=stream)
        t.update(4)
        t.update(6)
        t.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "work: 0/10 images" and lines[-1].startswith("work: 10/10 images (100%)")


def test_a_zero_width_terminal_gets_plain_lines(monkeypatch):
    monkeypatch.setenv("COLUMNS", "0")
    monkeypatch.setenv("LINES", "0")
    stream = FakeTerminal()
    assert not progress.use_bar(stream)
    with progress.reporting():
        t = progress.task("work", 3, stream=stream)
        t.update(3)
        t.close()
    assert "work: 3/3 items (100%)" in stream.getvalue()
    monkeypatch.setenv("COLUMNS", "80")
    assert progress.use_bar(stream)


def test_eval_likelihood_and_train_evaluator_show_progress(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--model", "vae-mlp", "--out", "vae", "--steps", "2", "--quiet", "--set", "model.width=8"]) == 0
    capsys.readouterr()
    assert main(["eval", "--run", "vae", "--metrics", "nll", "--nll-k", "2", "--nll-images", "40", "--n", "10"]) == 0
    err = capsys.readouterr().err
    assert "likelihood (K = 2): 0/40 images" in err and "likelihood (K = 2): 40/40 images (100%)" in err
    assert main(["train-evaluator", "--data", "digits", "--epochs", "1", "--out", "e.pt"]) == 0
    assert "epoch 1/1: 0/" in capsys.readouterr().err
    torch.set_num_threads(1)


def test_decoding_a_large_source_shows_progress(tmp_path, monkeypatch, capsys):
    from genforge.data import images
    from tests.data.datafiles import write_image_folder

    write_image_folder(tmp_path / "photos", {"a": 3, "b": 3})
    monkeypatch.setattr(images, "PROGRESS_MIN_FILES", 4)  # "large": 5,000 files and more
    assert main(["data", "info", f"folder:{tmp_path / 'photos'}", "--no-preview"]) == 0
    assert "6/6 images (100%)" in capsys.readouterr().err


def test_small_sources_decode_silently(tmp_path, capsys):
    from tests.data.datafiles import write_image_folder

    write_image_folder(tmp_path / "photos", {"a": 2, "b": 2})
    assert main(["data", "info", f"folder:{tmp_path / 'photos'}", "--no-preview"]) == 0
    assert capsys.readouterr().err == ""
