"""genforge eval, train-evaluator and train --eval-every, end to end on tiny runs."""

from __future__ import annotations

import json

import pytest
import torch

from genforge.cli import main
from genforge.families.registry import resolve_config
from genforge.metrics.features import ClassifierNet, Evaluator, file_sha256, load_evaluator, save_evaluator
from genforge.rundir import read_metrics
from genforge.training import train
from genforge.training.checkpoint import list_checkpoints, load_checkpoint


def tiny_config(steps: int = 10, **sections):
    """A tiny DCGAN on mnist-5k (as tests/conftest.py's tiny_config, which this folder cannot import)."""
    base = {"model": {"name": "dcgan", "width": 8, "latent_dim": 8}, "data": {"name": "mnist-5k"},
            "train": {"steps": steps, "batch_size": 16, "log_every": 5, "sample_every": 5, "checkpoint_every": 5,
                      "device": "cpu"}}
    base.update(sections)
    return resolve_config(overrides=[base])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "dcgan"
    train(tiny_config(10), run_dir, quiet=True)
    return run_dir


def test_evaluator_file_round_trip(tmp_path, quick_evaluator):
    assert quick_evaluator.test_accuracy > 0.8
    loaded = load_evaluator(quick_evaluator.path)
    assert loaded.sha256 == file_sha256(quick_evaluator.path) == quick_evaluator.sha256
    assert (loaded.data, loaded.image_size, loaded.channels, loaded.num_classes) == ("mnist-5k", 28, 1, 10)
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(loaded.network(x), quick_evaluator.network.eval()(x))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(Exception, match="corrupt or not an evaluator"):
        load_evaluator(bad)


def test_eval_cli_writes_json_and_report(tiny_run, quick_evaluator, cli, tmp_path):
    out = tmp_path / "report"
    proc = cli("eval", "--run", tiny_run, "--n", 300, "--evaluator", quick_evaluator.path, "--out", out,
               "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "fid:" in proc.stdout and "precision:" in proc.stdout
    result = json.loads((out / "eval.json").read_text())
    metrics = result["metrics"]
    assert {"fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall", "density", "coverage"} <= set(metrics)
    assert metrics["fid"] > 0 and 1 <= metrics["is_mean"] <= 10
    protocol = result["protocol"]
    assert protocol["extractor"]["sha256"] == file_sha256(quick_evaluator.path)
    assert protocol["reference"] == {"data": "mnist-5k", "split": "test", "n": 300,
                                     "selection": "random subset of 300 (seed 0)"}
    assert protocol["kid"]["subset_size"] == 300 and protocol["n_generated"] == 300
    html = (out / "report.html").read_text()
    for picture in ("samples.png", "real.png", "nearest.png", "training-curves.png"):
        assert picture in html and (out / picture).stat().st_size > 0


def test_eval_refuses_an_evaluator_of_other_data(tiny_run, tmp_path, capsys):
    other = Evaluator(ClassifierNet(3, 10), "cifar", 32, 3, 10, 0.5)
    path = tmp_path / "cifar.pt"
    save_evaluator(other, path, width=16)
    assert main(["eval", "--run", str(tiny_run), "--n", "50", "--evaluator", str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3x32x32" in err and "1x28x28" in err
    assert not (tiny_run / "eval").exists()


def test_eval_bad_inputs_exit_2(tiny_run, quick_evaluator, tmp_path, capsys):
    base = ["eval", "--run", str(tiny_run), "--device", "cpu", "--evaluator", str(quick_evaluator.path)]
    cases = [
        (["--n", "50", "--kid-subset-size", "100"], "KID with subsets of 100"),
        (["--n", "50", "--inception-weights", str(tmp_path / "none.pth")], "pt_inception-2015-12-05"),
        (["--metrics", "fid,nll"], "nll needs a model with a likelihood (a VAE) and dcgan is a gan"),
        (["--metrics", "fid,bogus"], "unknown metric"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        assert message in capsys.readouterr().err
    assert not (tiny_run / "eval").exists()


def test_eval_without_evaluator_says_how_to_make_one(tiny_run, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no evaluators/ folder here
    assert main(["eval", "--run", str(tiny_run), "--n", "50", "--device", "cpu"]) == 2
    assert "genforge train-evaluator --data mnist-5k" in capsys.readouterr().err


def test_eval_every_logs_metrics_and_keeps_training_bit_exact(tmp_path, quick_evaluator):
    plain, evaluated = tmp_path / "plain", tmp_path / "evaluated"
    train(tiny_config(10), plain, quiet=True)
    cfg = tiny_config(10, eval={"every": 5, "n_samples": 100, "evaluator": str(quick_evaluator.path),
                                               "metrics": "fid,kid,is,pr"})
    train(cfg, evaluated, quiet=True)
    records = [r for r in read_metrics(evaluated / "metrics.jsonl") if "eval_fid" in r]
    assert [r["step"] for r in records] == [5, 10]
    assert all(r["eval_fid"] > 0 and "eval_kid_mean" in r and "eval_precision" in r for r in records)
    a = load_checkpoint(list_checkpoints(plain)[-1][1])
    b = load_checkpoint(list_checkpoints(evaluated)[-1][1])
    for name in a["networks"]:
        for key, value in a["networks"][name].items():
            assert torch.equal(value, b["networks"][name][key]), (name, key)


def test_eval_every_without_evaluator_fails_before_creating_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "--model", "dcgan", "--data", "mnist-5k", "--steps", "2", "--device", "cpu",
                 "--eval-every", "1", "--out", str(out), "--quiet"]) == 2
    assert "genforge train-evaluator" in capsys.readouterr().err
    assert not out.exists()


def test_class_accuracy_of_labelled_images_is_the_classifier_accuracy(quick_evaluator):
    from genforge.data import load_dataset
    from genforge.metrics.evaluate import EvalSettings, Extractors, feature_metrics
    from genforge.metrics.features import FeatureModule

    test = load_dataset("mnist-5k", split="test")
    extractors = Extractors(FeatureModule(quick_evaluator.network), FeatureModule(quick_evaluator.network, "logits"),
                            quick_evaluator)
    values = feature_metrics(torch.zeros(2, 128), test.images.float() / 255, extractors, EvalSettings(n=500),
                             ("acc",), test.labels)
    # "Conditional samples" that are the labelled test digits: accuracy is the evaluator's own test accuracy.
    assert values["class_accuracy"] == pytest.approx(quick_evaluator.test_accuracy, abs=1e-6)


def test_eval_every_on_a_vae_logs_the_likelihood(tmp_path):
    cfg = resolve_config(overrides=[{
        "model": {"name": "vae-mlp", "width": 32, "latent_dim": 4}, "data": {"name": "mnist-5k"},
        "train": {"steps": 6, "batch_size": 16, "log_every": 3, "sample_every": 3, "checkpoint_every": 3,
                  "device": "cpu", "lr": 1e-3},
        "eval": {"every": 3, "metrics": "nll", "n_samples": 40, "nll_k": 5}}])
    train(cfg, tmp_path / "vae", quiet=True)
    records = [r for r in read_metrics(tmp_path / "vae" / "metrics.jsonl") if "eval_test_nll" in r]
    assert [r["step"] for r in records] == [3, 6]
    assert all(r["eval_test_nll"] <= r["eval_test_elbo"] for r in records)


def test_report_real_grid_spreads_over_a_class_ordered_split(tmp_path):
    """Issue 18: mnist-5k's test split is stored class by class; the report's real grid must not be
    its first 64 images (only 0s and 1s) but spread over the split, showing every class."""
    from genforge.data import load_dataset
    from genforge.metrics.evaluate import EvalSettings, evaluate_run, spread_indices
    from genforge.run import load_run

    cfg = resolve_config(overrides=[{"model": {"name": "vae-mlp", "width": 16, "latent_dim": 4},
                                     "data": {"name": "mnist-5k"},
                                     "train": {"steps": 2, "batch_size": 8, "device": "cpu"}}])
    train(cfg, tmp_path / "vae", quiet=True)
    result = evaluate_run(load_run(tmp_path / "vae"), EvalSettings(n=600, metrics=("nll",), nll_k=2, nll_images=600),
                          log=lambda text: None)
    test = load_dataset("mnist-5k", split="test")
    assert len(test.images) == 500
    assert len(set(test.labels[:64].tolist())) <= 2  # the first 64 are class-ordered ...
    index = spread_indices(500, 64)
    assert torch.equal(result["_images"]["real"], test.images[index])
    assert set(test.labels[index].tolist()) == set(range(10))  # ... the grid shows every class


def test_eval_keeps_every_report_shows_directions_and_a_real_row_and_compare_tables_them(tmp_path, quick_evaluator,
                                                                                         capsys):
    """Issue 18: the metric table says which direction is better and has a real-against-real row;
    evaluations are kept (not overwritten); genforge compare tables the runs' numbers."""
    run_dir = tmp_path / "dcgan"
    train(tiny_config(4), run_dir, quiet=True)
    base = ["eval", "--run", str(run_dir), "--n", "120", "--evaluator", str(quick_evaluator.path), "--device", "cpu",
            "--metrics", "fid,pr"]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "lower is better" in out and "real against real" in out
    assert main(base + ["--seed", "1"]) == 0
    kept = sorted(p.name for p in (run_dir / "eval").glob("step-*"))
    assert kept == ["step-0000004", "step-0000004-2"]
    first = json.loads((run_dir / "eval" / "step-0000004" / "eval.json").read_text())
    second = json.loads((run_dir / "eval" / "eval.json").read_text())
    assert first["settings"]["seed"] == 0 and second["settings"]["seed"] == 1
    real = second["real_against_real"]
    assert real["fid"] < second["metrics"]["fid"]  # real digits are closer to real digits than 4-step samples
    page = (run_dir / "eval" / "report.html").read_text()
    assert "real against real" in page and "lower is better" in page
    capsys.readouterr()
    assert main(["compare", str(run_dir)]) == 0
    table = capsys.readouterr().out
    assert "fid (↓)" in table and "precision (↑)" in table and table.count(str(run_dir)) == 2
    assert main(["compare", str(tmp_path / "nothing")]) == 2


def test_eval_samples_scores_images_of_any_tool_on_the_same_protocol(tmp_path, quick_evaluator, tiny_run, capsys):
    """Issue 18: genforge eval --samples DIR|FILE.npz scores outside images against the same reference."""
    import numpy as np
    from PIL import Image

    from genforge.data import load_dataset

    digits = load_dataset("mnist-5k", split="train").images[:200, 0].numpy()
    np.savez(tmp_path / "real.npz", x=digits)
    (tmp_path / "noise").mkdir()
    rng = np.random.default_rng(0)
    for i in range(200):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / "noise" / f"{i}.png")
    common = ["--data", "mnist-5k", "--n", "200", "--evaluator", str(quick_evaluator.path), "--metrics", "fid,pr"]
    assert main(["eval", "--samples", str(tmp_path / "real.npz"), *common]) == 0
    assert main(["eval", "--samples", str(tmp_path / "noise"), *common]) == 0
    real = json.loads((tmp_path / "real-eval" / "eval.json").read_text())
    noise = json.loads((tmp_path / "noise-eval" / "eval.json").read_text())
    assert real["metrics"]["fid"] < noise["metrics"]["fid"] / 10  # real digits score far better than noise
    assert real["protocol"]["samples"]["n"] == 200 and (tmp_path / "real-eval" / "report.html").is_file()
    assert main(["eval", "--run", str(tiny_run), "--out", str(tmp_path / "run-eval"), *common[2:]]) == 0
    run_result = json.loads((tmp_path / "run-eval" / "eval.json").read_text())
    assert run_result["protocol"]["reference"] == real["protocol"]["reference"]  # the same reference images
    assert run_result["protocol"]["extractor"] == real["protocol"]["extractor"]
    assert main(["eval", "--samples", str(tmp_path / "real.npz")]) == 2
    assert "--samples needs --data NAME" in capsys.readouterr().err
    assert main(["eval", "--samples", str(tmp_path / "real.npz"), "--run", str(tiny_run), "--data", "mnist-5k"]) == 2
