"""Conditional sampling, truncation, interpolation (grid and GIF), and the bad-input cases of the
command line (one line, exit status 2, nothing written)."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from genforge.errors import GenforgeError
from genforge.nn.latents import interpolation_latents, latent_batch, slerp, truncated_latent_batch
from genforge.run import load_run


def test_conditional_sampling_returns_the_requested_shapes(conditional_run):
    run = load_run(conditional_run)
    assert run.config.model.num_classes == 10
    assert run.sample(5, seed=1, labels=[7]).shape == (5, 1, 28, 28)
    per_class = run.sample(20, seed=1, labels=torch.arange(10).repeat_interleave(2))
    assert per_class.shape == (20, 1, 28, 28)
    # The same latent with another class gives another image; the same seed and class, the same one.
    assert not torch.equal(run.sample(4, seed=3, labels=[1]), run.sample(4, seed=3, labels=[2]))
    assert torch.equal(run.sample(4, seed=3, labels=[1]), run.sample(4, seed=3, labels=[1]))


def test_truncated_latents_stay_in_range_and_are_reproducible():
    z = truncated_latent_batch(500, 16, seed=4, truncation=0.7)
    assert z.shape == (500, 16) and z.abs().max() <= 0.7
    assert torch.equal(z, truncated_latent_batch(500, 16, seed=4, truncation=0.7))
    # Truncated normal, not uniform: the variance of N(0,1) cut at +-t (t = 0.7) is
    # 1 - 2 t phi(t) / (2 Phi(t) - 1).
    t = 0.7
    phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(t / math.sqrt(2)))
    assert z.var().item() == pytest.approx(1 - 2 * t * phi / (2 * cdf - 1), rel=0.03)


def test_truncation_in_run_sample(unconditional_run):
    run = load_run(unconditional_run)
    a, b = run.sample(6, seed=2, truncation=0.5), run.sample(6, seed=2)
    assert a.shape == b.shape == (6, 1, 28, 28) and not torch.equal(a, b)
    with pytest.raises(GenforgeError, match="truncation"):
        run.sample(6, truncation=-1)


def test_slerp_endpoints_and_norm():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    assert mid.norm().item() == pytest.approx(3.0)  # a straight line would give 3 / sqrt(2)
    assert torch.allclose(mid, torch.tensor([3.0, 3.0]) / math.sqrt(2))
    assert torch.allclose(slerp(a, 2 * a, 0.5), 1.5 * a)  # parallel: a straight line


def test_interpolation_latents_pass_through_the_seeds():
    z = interpolation_latents([1, 2, 3], steps=5, latent_dim=8)
    assert z.shape == (10, 8)
    assert torch.allclose(z[0], latent_batch(1, 8, 1)[0])
    assert torch.allclose(z[4], latent_batch(1, 8, 2)[0]) and torch.allclose(z[5], latent_batch(1, 8, 2)[0])
    assert torch.allclose(z[9], latent_batch(1, 8, 3)[0])


def genforge(capsys, *args):
    """The CLI's main() in this process (the same parsing, error handling and exit status as the
    console script, without a fresh interpreter per call): (status, stdout, stderr)."""
    from genforge.cli import main

    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, captured.out, captured.err)


def test_cli_sample_class_all_and_truncation(capsys, conditional_run, tmp_path):
    out = genforge(capsys, "sample", "--run", conditional_run, "--class", "all", "--n", "30", "--truncation", "0.7",
                   "--out", tmp_path / "all.png")
    assert out.returncode == 0 and "wrote" in out.stdout
    grid = Image.open(tmp_path / "all.png")
    # 10 rows (one per class) of 3 images of 28 px with 2 px padding.
    assert grid.size == (3 * 30 + 2, 10 * 30 + 2)


def test_cli_interpolate_grid_and_gif(capsys, unconditional_run, conditional_run, tmp_path):
    assert genforge(capsys, "interpolate", "--run", unconditional_run, "--seeds", "1,2,3", "--steps", "4",
                    "--out", tmp_path / "i.png").returncode == 0
    assert Image.open(tmp_path / "i.png").size == (4 * 30 + 2, 2 * 30 + 2)  # one row per leg
    assert genforge(capsys, "interpolate", "--run", conditional_run, "--class", "3", "--seeds", "1,2,3", "--steps", "4",
                    "--scale", "2", "--out", tmp_path / "i.gif").returncode == 0
    gif = Image.open(tmp_path / "i.gif")
    assert gif.n_frames == 7 and gif.size == (56, 56)  # 2 legs of 4, the shared middle frame once


def _expect_error(proc, *words):
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("genforge: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def test_cli_bad_sampling_requests_in_a_real_process(cli, conditional_run, unconditional_run, tmp_path):
    """The three sampling cases of the issue through the installed entry point (exit status 2)."""
    out = tmp_path / "x.png"
    _expect_error(cli("sample", "--run", conditional_run, "--out", out), "class-conditional", "--class")
    _expect_error(cli("sample", "--run", conditional_run, "--class", "10", "--out", out), "out of range", "0..9")
    _expect_error(cli("sample", "--run", unconditional_run, "--class", "3", "--out", out), "unconditional")
    assert not out.exists()


def test_cli_bad_inputs(capsys, conditional_run, unconditional_run, tmp_path):
    out = tmp_path / "x.png"
    run = lambda *args: genforge(capsys, *args)  # noqa: E731
    _expect_error(run("sample", "--run", conditional_run, "--class", "-1", "--out", out), "out of range")
    _expect_error(run("sample", "--run", unconditional_run, "--class", "all", "--out", out), "class-conditional")
    _expect_error(run("interpolate", "--run", conditional_run, "--seeds", "1,2", "--out", out), "class-conditional")
    _expect_error(run("interpolate", "--run", unconditional_run, "--seeds", "1,2", "--class", "0", "--out", out),
                  "unconditional")
    _expect_error(run("interpolate", "--run", unconditional_run, "--seeds", "1", "--out", out), "two seeds")
    _expect_error(run("interpolate", "--run", unconditional_run, "--seeds", "1,x", "--out", out), "--seeds")
    _expect_error(run("interpolate", "--run", unconditional_run, "--seeds", "1,2", "--out", tmp_path / "x.jpg"), ".gif")
    _expect_error(run("sample", "--run", unconditional_run, "--truncation", "-0.5", "--out", out), "truncation")
    assert not out.exists()


def test_cli_incompatible_loss_and_regulariser(capsys, tmp_path):
    for flags, words in ((["--set", "gan.loss=wasserstein"], ["Lipschitz", "gradient_penalty"]),
                         (["--set", "gan.gradient_penalty=10", "--set", "gan.r1_gamma=1"], ["keep one"]),
                         (["--set", "gan.gradient_penalty=10"], ["batch norm"]),
                         (["--set", "gan.diffaugment=zoom"], ["zoom"])):
        _expect_error(genforge(capsys, "train", "--model", "dcgan", *flags, "--out", tmp_path / "run"), *words)
    assert not (tmp_path / "run").exists()


def test_cli_conditional_model_on_unlabelled_data(capsys, tmp_path):
    """A folder of images without class subfolders has no labels."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(32):
        Image.fromarray(np.full((28, 28), i * 7, dtype=np.uint8)).save(folder / f"{i:03d}.png")
    proc = genforge(capsys, "train", "--model", "cdcgan", "--data", f"folder:{folder}", "--out", tmp_path / "run",
                    "--steps", "1")
    _expect_error(proc, "conditioned on labels", "has none", "class labels")
    assert not (tmp_path / "run").exists()


def test_gifs_default_to_a_readable_size(tmp_path):
    """Issue 18: a 28x28 frame is unreadably small; the default scale enlarges frames to >= 256 px."""
    from genforge.imageio import save_gif

    frames = torch.rand(3, 1, 28, 28)
    assert Image.open(save_gif(frames, tmp_path / "a.gif")).size == (280, 280)
    assert Image.open(save_gif(frames, tmp_path / "b.gif", scale=1)).size == (28, 28)
    assert Image.open(save_gif(torch.rand(2, 3, 300, 300), tmp_path / "c.gif")).size == (300, 300)
