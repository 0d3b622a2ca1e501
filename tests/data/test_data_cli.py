"""`genforge data ...` and `genforge train --data SOURCE`: exit status and stderr through a
subprocess, the rest in-process through cli.main (a subprocess costs seconds of torch import)."""

from __future__ import annotations

import datafiles
import numpy as np
import pytest

from genforge.cli import main


@pytest.fixture
def run_main(tmp_path, monkeypatch, capsys):
    """Run cli.main in tmp_path; returns (exit status, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_data_info_describes_a_folder(run_main, tmp_path):
    datafiles.write_image_folder(tmp_path / "imgs", {"cats": 3, "dogs": 2})
    code, out, _ = run_main("data", "info", f"folder:{tmp_path / 'imgs'}", "--preview", "p.png")
    assert code == 0
    assert "images:   5" in out and "size:     8x8, 3 channels (RGB)" in out
    assert "classes:  2" in out and "cats" in out and "dogs" in out
    assert "mean:     R " in out and "std:      R " in out
    assert (tmp_path / "p.png").is_file()


def test_data_info_bad_input_is_one_line_exit_2(cli, run_main, tmp_path):
    folder = tmp_path / "imgs"
    datafiles.write_image_folder(folder, {"a": 2})
    (folder / "a" / "broken.png").write_bytes(b"nope")
    proc = cli("data", "info", f"folder:{folder}", "--no-preview")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("genforge: error: ") and "broken.png: not a readable image" in proc.stderr
    assert "Traceback" not in proc.stderr
    code, out, err = run_main("data", "info", f"folder:{folder}", "--no-preview", "--skip-bad")
    assert code == 0 and "images:   2 (1 bad files skipped)" in out and "skipped 1 bad file(s)" in err


def test_data_download_unknown_is_exit_2(run_main):
    code, _, err = run_main("data", "download", "imagenet")
    assert code == 2 and "no download for 'imagenet'" in err


@pytest.mark.parametrize("command, expected", [(("data",), ["info", "download", "examples:"]),
                                               (("data", "info"), ["--skip-bad", "--preview", "examples:"]),
                                               (("train",), ["--skip-bad", "--download", "zip:"])])
def test_help_lists_data_actions(run_main, capsys, command, expected):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert all(word in out for word in expected)


def test_train_on_npz_source(run_main, tmp_path):
    x = datafiles.random_images(32, 8, channels=3)
    np.savez(tmp_path / "d.npz", x=x)
    code, _, err = run_main("train", "--data", "npz:d.npz", "--model", "dcgan", "--steps", "2", "--batch-size", "8",
                            "--out", "run", "--device", "cpu", "--set", "model.width=8", "--set", "data.hflip=true",
                            "--quiet")
    assert code == 0, err
    assert "hflip: true" in (tmp_path / "run" / "config.yaml").read_text()


def test_train_refuses_bad_folder_and_writes_nothing(cli, tmp_path):
    folder = tmp_path / "imgs"
    datafiles.write_image_folder(folder, {"a": 4})
    (folder / "a" / "x.doc").write_text("not an image")  # (a .txt would be a caption file, tests/data/test_captions.py)
    proc = cli("train", "--data", f"folder:{folder}", "--model", "dcgan", "--steps", "2", "--out", "run")
    assert proc.returncode == 2 and "x.doc: not an image file" in proc.stderr
    assert not (tmp_path / "run").exists()
