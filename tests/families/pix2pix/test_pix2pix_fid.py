"""FID (and KID) of translations against their targets with an evaluator file: `translate --pairs --evaluator`."""

import hashlib
import json
import math

import pytest
import torch

from genforge.cli import main
from genforge.families.registry import resolve_config
from genforge.metrics.features import train_evaluator
from genforge.run import load_run
from genforge.training import train
from genforge.translate import translate_path
from tests.families.pix2pix.pix2pix_helpers import blobs, save, write_inversion_pairs, write_side_by_side

SIZE = 16


def _tiny_evaluator(root, out, image_size=None):
    """A classifier of two classes (bright rectangles on dark, and their negatives), three epochs: under a second."""
    for label, images in (("rectangles", blobs(48, SIZE, 5)), ("negatives", 255 - blobs(48, SIZE, 6))):
        for i, image in enumerate(images):
            save(image, root / label / f"{i:03d}.png")
    torch.set_num_threads(1)
    train_evaluator(f"folder:{root}", out=out, epochs=3, batch_size=16, lr=5e-3, width=4, device="cpu",
                    image_size=image_size, log=None)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny pix2pix run on 16x16 inversion pairs, its test pairs, and a fitting and a 8x8 evaluator."""
    root = tmp_path_factory.mktemp("p2pfid")
    pairs = write_inversion_pairs(root / "pairs", size=SIZE, n_train=16, n_test=24)
    cfg = resolve_config(overrides=[{
        "model": {"name": "pix2pix", "width": 4}, "data": {"name": f"paired:{pairs}"},
        "train": {"steps": 4, "batch_size": 8, "sample_every": 4, "checkpoint_every": 4, "device": "cpu"},
        "pix2pix": {"n_layers": 1}}])
    train(cfg, root / "run", quiet=True)
    evaluator = _tiny_evaluator(root / "classes", root / "evaluator.pt")
    small = _tiny_evaluator(root / "classes8", root / "evaluator8.pt", image_size=8)
    return {"root": root, "run": root / "run", "test": pairs / "test", "evaluator": evaluator, "small": small}


def test_fid_of_translations_in_metrics_and_page(setup, tmp_path):
    run = load_run(setup["run"], device="cpu")
    plain = translate_path(run, setup["test"], tmp_path / "plain", pairs=True)
    assert "fid" not in plain.metrics and "evaluator" not in plain.metrics  # without an evaluator nothing changes

    result = translate_path(run, setup["test"], tmp_path / "scored", pairs=True, evaluator=setup["evaluator"])
    m = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    assert m == json.loads(json.dumps(result.metrics))
    for key in ("fid", "identity_fid", "kid_mean", "identity_kid_mean"):
        assert math.isfinite(m[key]), key
    assert m["fid"] >= 0 and m["identity_fid"] >= 0
    # A 4-step model maps rectangles far from their negatives: its FID differs from the identity mapping's.
    assert m["fid"] != m["identity_fid"]
    # The pixel scores are unchanged by the evaluator.
    assert all(m[k] == plain.metrics[k] for k in ("l1", "psnr", "ssim", "identity_l1"))
    sha = hashlib.sha256(setup["evaluator"].read_bytes()).hexdigest()
    assert m["evaluator"]["sha256"] == sha and m["evaluator"]["image_size"] == SIZE
    assert m["kid"]["subset_size"] == 24
    page = (tmp_path / "scored" / "index.html").read_text()
    assert f"FID {m['fid']:.3f}" in page and sha in page


def test_identical_images_give_fid_near_zero(setup, tmp_path):
    # Pairs whose target equals the input: the identity mapping's FID compares a set with itself.
    a = blobs(20, SIZE, 9)
    write_side_by_side(tmp_path / "same", a, a)
    result = translate_path(load_run(setup["run"], device="cpu"), tmp_path / "same", tmp_path / "out", pairs=True,
                            evaluator=setup["evaluator"])
    assert abs(result.metrics["identity_fid"]) < 1e-6
    assert result.metrics["fid"] > 1e-3  # the (untrained) model's outputs are not the targets


def test_evaluator_that_does_not_fit_exits_2(setup, cli, tmp_path, capsys):
    proc = cli("translate", "--run", setup["run"], "--input", setup["test"], "--pairs", "--out", "bad",
               "--evaluator", setup["small"], "--device", "cpu")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("genforge: error: evaluator") and len(proc.stderr.strip().splitlines()) == 1
    assert "1x8x8" in proc.stderr and "1x16x16" in proc.stderr
    assert not (tmp_path / "bad").exists()

    # The fitting evaluator through the CLI prints FID; an evaluator without --pairs or a corrupt file: exit 2.
    common = ["translate", "--run", str(setup["run"]), "--input", str(setup["test"]), "--device", "cpu"]
    assert main([*common, "--pairs", "--out", str(tmp_path / "good"), "--evaluator", str(setup["evaluator"])]) == 0
    assert "FID " in capsys.readouterr().out and "fid" in json.loads((tmp_path / "good" / "metrics.json").read_text())
    (tmp_path / "junk.pt").write_bytes(b"not an evaluator")
    for extra in (["--evaluator", str(setup["evaluator"])], ["--pairs", "--evaluator", str(tmp_path / "junk.pt")]):
        assert main([*common, "--out", str(tmp_path / "none"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("genforge: error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "none").exists()
