"""End to end through the CLI: make-pairs, train, translate, the results page; bad input exits 2."""

import json

import numpy as np
from PIL import Image

from genforge.cli import main
from tests.families.pix2pix.pix2pix_helpers import blobs, save, write_inversion_pairs, write_side_by_side

TRAIN = ("train", "--model", "pix2pix", "--steps", "6", "--batch-size", "4", "--device", "cpu", "--quiet",
         "--set", "model.width=4", "--set", "train.checkpoint_every=6", "--set", "train.sample_every=6")


def test_make_pairs_train_translate_results_page(cli, tmp_path, monkeypatch, capsys):
    made = cli("data", "make-pairs", "inpaint-digits", "--out", "pairs", "--limit", "8", check=True)
    assert "wrote 8 train pairs, 8 test pairs" in made.stdout
    cli(*TRAIN, "--data", "paired:pairs", "--out", "run", check=True)
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "pix2pix:" in saved and "lambda_l1: 100.0" in saved and "direction: AtoB" in saved

    # Pairs: scored against their targets; no training flag repeated.
    out = cli("translate", "--run", "run", "--input", "pairs/test", "--pairs", "--out", "results", check=True)
    assert "translated 8 image(s)" in out.stdout and "identity mapping" in out.stdout
    metrics = json.loads((tmp_path / "results" / "metrics.json").read_text())
    assert metrics["pairs"] == 8 and {"l1", "psnr", "ssim", "identity_l1"} <= set(metrics)
    page = (tmp_path / "results" / "index.html").read_text()
    assert page.count("<tr>") == 9 and "00003_target.png" in page and "00003_output.png" in page
    assert (tmp_path / "results" / "images" / "00003_input.png").is_file()

    # The rest in-process through genforge.cli.main (same code path, no new interpreter each time).
    monkeypatch.chdir(tmp_path)
    # Single images (no targets), twice: eval mode gives the same PNGs.
    (tmp_path / "inputs").mkdir()
    save(blobs(1, 32, 0)[0], tmp_path / "inputs" / "one.png")
    for name in ("a", "b"):
        assert main(["translate", "--run", "run", "--input", "inputs", "--out", name]) == 0
    assert (tmp_path / "a/images/one_output.png").read_bytes() == (tmp_path / "b/images/one_output.png").read_bytes()
    assert "target" not in (tmp_path / "a" / "index.html").read_text().split("<table>")[1]

    # Wrong channel count: one line, exit 2.
    save(blobs(1, 32, 0, channels=3)[0], tmp_path / "rgb.png")
    capsys.readouterr()
    assert main(["translate", "--run", "run", "--input", "rgb.png", "--out", "c"]) == 2
    err = capsys.readouterr().err
    assert "has 3 channel(s)" in err and len(err.strip().splitlines()) == 1

    # Another size is resized to the run's (with a note); a non-square input is refused.
    save(blobs(1, 64, 0)[0], tmp_path / "big.png")
    assert main(["translate", "--run", "run", "--input", "big.png", "--out", "d"]) == 0
    assert "resized 64 -> 32" in capsys.readouterr().out
    save(np.zeros((32, 40, 1), np.uint8), tmp_path / "wide.png")
    assert main(["translate", "--run", "run", "--input", "wide.png", "--out", "e"]) == 2
    assert "not square" in capsys.readouterr().err and not (tmp_path / "e").exists()

    # A pix2pix run has no latent space to sample.
    assert main(["sample", "--run", "run", "--out", "x.png"]) == 2
    assert "genforge translate" in capsys.readouterr().err


def test_bad_training_inputs_exit_2_and_write_nothing(tmp_path, monkeypatch, capsys):
    # In-process through genforge.cli.main (the same code path as the command, without a new interpreter each).
    monkeypatch.chdir(tmp_path)
    save(np.zeros((8, 15, 1), np.uint8), tmp_path / "odd" / "train" / "p.png")  # halves of different sizes
    a = blobs(2, 36, 0)
    write_side_by_side(tmp_path / "s36" / "train", a, a)  # 36 = 4 * 9: not divisible by 2^3
    save(np.zeros((8, 8, 1), np.uint8), tmp_path / "ab" / "train" / "A" / "x.png")
    save(np.zeros((8, 10, 1), np.uint8), tmp_path / "ab" / "train" / "B" / "x.png")
    cases = [(("--data", "paired:odd"), "halves differ in size"),
             (("--data", "paired:s36", "--set", "pix2pix.depth=3"), "not divisible by 2^3"),
             (("--data", "paired:ab"), "must have the same size"),
             (("--data", "paired:missing"), "does not exist"),
             (("--data", "mnist-5k"), "needs paired data")]
    for extra, message in cases:
        status = main([*TRAIN, *extra, "--out", "run"])
        err = capsys.readouterr().err
        assert status == 2, err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "run").exists()


def test_direction_is_taken_from_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_inversion_pairs(tmp_path / "pairs", size=16, n_train=8, n_test=2)
    assert main([*TRAIN, "--data", "paired:pairs", "--set", "pix2pix.direction=BtoA", "--set", "pix2pix.n_layers=2",
                 "--out", "run"]) == 0
    assert main(["translate", "--run", "run", "--input", "pairs/test", "--pairs", "--out", "res"]) == 0
    # BtoA: the input column shows the right halves, the target column the left ones.
    pair = np.asarray(Image.open(tmp_path / "pairs/test/000.png"))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "res/images/000_input.png")), pair[:, 16:])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "res/images/000_target.png")), pair[:, :16])


def test_help_lists_the_new_commands(capsys):
    from genforge.cli import build_parser

    text = build_parser().format_help()
    assert "translate" in text and "data" in text
    assert main(["data"]) == 2 and "make-pairs" in capsys.readouterr().out
