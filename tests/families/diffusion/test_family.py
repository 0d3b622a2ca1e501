"""The diffusion family end to end on tiny runs: classifier-free guidance, condition dropout,
SDEdit and inpainting, determinism under a seed, exact resume with dropout, the network's
cross-attention mask, and bad input (one line, exit status 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genforge.cli import main
from genforge.conditioning import Condition
from genforge.config import replace
from genforge.errors import GenforgeError
from genforge.families.diffusion.networks import UNet
from genforge.families.diffusion.objectives import denoise
from genforge.families.diffusion.sample import make_denoiser, resolve_options
from genforge.families.diffusion.step import drop_condition, learning_rate_at
from genforge.run import load_run
from genforge.rundir import list_checkpoints, load_checkpoint
from genforge.training import train
from tests.conftest import tiny_config


def diffusion_config(steps: int = 2, **diffusion):
    cfg = tiny_config("cdiffusion-unet", steps=steps, train={"batch_size": 8, "sample_every": 1000,
                                                               "checkpoint_every": 2, "precision": "fp32"},
                      diffusion={"channel_mult": "1,2", "attention_resolutions": "14", "steps": 2, **diffusion})
    return replace(cfg, model={"width": 8})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("diffusion") / "run"
    train(diffusion_config(cond_dropout=0.2), out, quiet=True)
    return out


@pytest.fixture(scope="module")
def run(run_dir):
    return load_run(run_dir)


def test_guidance_zero_is_the_conditional_model_and_w_mixes_both(run):
    net, cfg = run.networks["denoiser"], run.config
    x, sigma = torch.randn(5, 1, 28, 28), torch.tensor(3.0)
    cond = Condition(labels=torch.tensor([0, 1, 2, 3, 4]))
    conditional = denoise(net, x, sigma, cond, cfg.diffusion)
    assert torch.equal(make_denoiser(net, cond, cfg, 0.0)(x, sigma), conditional)
    null = denoise(net, x, sigma, Condition(labels=torch.full((5,), cfg.model.num_classes)), cfg.diffusion)
    assert (null - conditional).abs().max() > 1e-3  # the class really reaches the output
    guided = make_denoiser(net, cond, cfg, 2.0)(x, sigma)
    assert torch.allclose(guided, 3 * conditional - 2 * null, atol=1e-5)


def test_condition_dropout_drops_at_the_configured_rate():
    n, p = 200_000, 0.2
    labels = torch.randint(0, 10, (n,))
    text, mask = torch.randn(n, 3, 2), torch.ones(n, 3, dtype=torch.bool)
    out = drop_condition(Condition(labels=labels, text=text, text_mask=mask), p, 10, torch.Generator().manual_seed(0))
    dropped = out.labels == 10
    assert abs(dropped.float().mean().item() - p) < 0.005  # 5.6 standard errors
    assert torch.equal(out.labels[~dropped], labels[~dropped])
    assert torch.equal(out.text_mask.any(1), ~dropped)  # a dropped caption has every token masked
    assert drop_condition(Condition(labels=labels), 0.0, 10).labels is labels


def test_sampling_is_deterministic_and_prefix_stable(run):
    for sampler in ("ddpm", "ddim", "heun", "dpm2m"):
        a = run.sample(6, seed=5, labels=[3], sampler=sampler, steps=3)
        assert torch.equal(a, run.sample(6, seed=5, labels=[3], sampler=sampler, steps=3))
        prefix = run.sample(3, seed=5, labels=[3], sampler=sampler, steps=3)
        assert (a[:3] - prefix).abs().max() < 1e-3, (sampler, (a[:3] - prefix).abs().max())  # batch-size rounding only
        assert not torch.equal(a, run.sample(6, seed=6, labels=[3], sampler=sampler, steps=3))
        assert run.last_report["nfe"] == (5 if sampler == "heun" else 3)
    eta = run.sample(4, seed=5, labels=[3], sampler="ddim", steps=3, eta=1.0)
    assert not torch.equal(eta, run.sample(4, seed=5, labels=[3], sampler="ddim", steps=3))


def test_sdedit_strength_zero_returns_the_photo_and_inpainting_keeps_known_pixels(run):
    photo = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    same = run.sample(2, seed=0, labels=[1], init=photo, strength=0.0)
    assert run.last_report["nfe"] == 0 and torch.allclose(same, photo.float().expand(2, 1, 28, 28) / 255)
    edited = run.sample(2, seed=0, labels=[1], init=photo, strength=0.5, steps=4)
    assert run.last_report["steps"] == 2 and not torch.allclose(edited, same)
    mask = torch.zeros(1, 28, 28, dtype=torch.uint8)
    mask[:, :14] = 255  # redraw the top half
    filled = run.sample(2, seed=0, labels=[1], init=photo, mask=mask, steps=3)
    assert torch.allclose(filled[:, :, 14:], photo[:, 14:].float().expand(2, 1, 14, 28) / 255, atol=1e-6)
    assert not torch.allclose(filled[:, :, :14], photo[:, :14].float().expand(2, 1, 14, 28) / 255, atol=0.05)


def test_guidance_is_refused_without_condition_dropout():
    cfg = diffusion_config()
    with pytest.raises(GenforgeError, match="condition dropout"):
        resolve_options({"guidance": 1.0}, replace(cfg, model={"num_classes": 10}))
    with pytest.raises(GenforgeError, match="unconditional"):
        tiny_config("diffusion-unet", diffusion={"cond_dropout": 0.1})


def test_exact_resume_with_condition_dropout_and_lr_warmup(tmp_path):
    cfg = diffusion_config(steps=4, cond_dropout=0.3, objective="eps", lr_warmup_images=64)
    assert learning_rate_at(0, cfg) == pytest.approx(cfg.train.lr * 8 / 64)
    train(cfg, tmp_path / "straight", quiet=True)
    train(replace(cfg, train={"steps": 2}), tmp_path / "resumed", quiet=True)
    train(cfg, tmp_path / "resumed", quiet=True)
    a = load_checkpoint(list_checkpoints(tmp_path / "straight")[-1][1])
    b = load_checkpoint(list_checkpoints(tmp_path / "resumed")[-1][1])
    for key, value in a["networks"]["denoiser"].items():
        assert torch.equal(value, b["networks"]["denoiser"][key]), key
    for key, value in a["ema"]["denoiser"]["model"].items():
        assert torch.equal(value, b["ema"]["denoiser"]["model"][key]), key


def test_cross_attention_ignores_masked_tokens():
    torch.manual_seed(0)
    net = UNet(1, 8, 8, (1, 2), 1, (4,), 0.0, context_dim=6).eval()
    x, noise = torch.randn(2, 1, 8, 8), torch.zeros(1)
    text, mask = torch.randn(2, 4, 6), torch.tensor([[True, True, False, False]] * 2)
    for p in net.parameters():  # the zero-initialised null key/value would hide a bug
        torch.nn.init.normal_(p, std=0.3) if p.dim() == 1 and p.numel() == 2 * 8 else None
    base = net(x, noise, None, text, mask)
    changed_masked, changed_real = text.clone(), text.clone()
    changed_masked[:, 2:] += 5
    changed_real[:, :1] += 5
    assert torch.allclose(net(x, noise, None, changed_masked, mask), base, atol=1e-6)
    assert not torch.allclose(net(x, noise, None, changed_real, mask), base, atol=1e-4)


def _image(path, size, value=128):
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "steps must be at least 1"),
    (["--steps", "-3"], "steps must be at least 1"),
    (["--sampler", "euler"], "unknown sampler 'euler'"),
    (["--guidance", "-1"], "guidance must be >= 0"),
    (["--strength", "1.5", "--init", "PHOTO"], "strength must be in [0, 1]"),
    (["--strength", "-0.1", "--init", "PHOTO"], "strength must be in [0, 1]"),
    (["--strength", "0.5"], "--strength needs an image"),
    (["--init", "PHOTO", "--mask", "SMALLMASK"], "the mask is 20x20 but the image is 28x28"),
    (["--init", "missing.png"], "does not exist"),
    (["--truncation", "0.5"], "drop --truncation"),
])
def test_bad_sampling_input_is_one_line_and_exit_2(run_dir, tmp_path, capsys, args, message):
    files = {"PHOTO": _image(tmp_path / "photo.png", 28), "SMALLMASK": _image(tmp_path / "mask.png", 20, 255),
             "missing.png": str(tmp_path / "missing.png")}
    out = tmp_path / "grid.png"
    code = main(["sample", "--run", str(run_dir), "--class", "1", "--out", str(out),
                 *[files.get(a, a) for a in args]])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_guidance_on_a_model_trained_without_dropout_is_refused(tmp_path, capsys):
    train(diffusion_config(steps=1), tmp_path / "run", quiet=True)
    code = main(["sample", "--run", str(tmp_path / "run"), "--class", "1", "--guidance", "2",
                 "--out", str(tmp_path / "g.png")])
    err = capsys.readouterr().err
    assert code == 2 and "diffusion.cond_dropout=0.1" in err and len(err.strip().splitlines()) == 1


def test_cli_sample_reports_nfe(run_dir, tmp_path, capsys):
    assert main(["sample", "--run", str(run_dir), "--class", "all", "--n", "10", "--sampler", "heun",
                 "--steps", "2", "--guidance", "1", "--out", str(tmp_path / "g.png")]) == 0
    assert "nfe 3" in capsys.readouterr().out and (tmp_path / "g.png").is_file()
    assert main(["sample", "--run", str(run_dir), "--class", "1", "--sampler", "ddpm", "--steps", "2",
                 "--out", str(tmp_path / "x.png")]) == 0
    code = main(["sample", "--run", str(run_dir), "--class", "1", "--steps", "2", "--out", str(tmp_path / "y.png")])
    assert code == 0


def test_interpolation_is_refused_with_the_fix(run_dir, tmp_path, capsys):
    code = main(["interpolate", "--run", str(run_dir), "--seeds", "1,2", "--class", "1", "--out", str(tmp_path / "i.png")])
    err = capsys.readouterr().err
    assert code == 2 and "no latent vector" in err and len(err.strip().splitlines()) == 1


def test_text_guidance_masks_every_token_for_the_null_condition():
    cfg = tiny_config("diffusion-unet", diffusion={"text_dim": 6, "cond_dropout": 0.1})
    torch.manual_seed(0)
    net = UNet(1, 8, 8, (1, 2), 1, (4,), 0.0, context_dim=6).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3) if p.dim() == 1 and p.numel() == 2 * 8 else None
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor(2.0)
    text = torch.randn(2, 3, 6)
    cond = Condition(text=text)  # no mask: every token is real
    conditional = denoise(net, x, sigma, Condition(text=text, text_mask=torch.ones(2, 3, dtype=torch.bool)), cfg.diffusion)
    null = denoise(net, x, sigma, Condition(text=text, text_mask=torch.zeros(2, 3, dtype=torch.bool)), cfg.diffusion)
    assert torch.allclose(make_denoiser(net, cond, cfg, 0.0)(x, sigma), conditional)
    assert torch.allclose(make_denoiser(net, cond, cfg, 1.5)(x, sigma), 2.5 * conditional - 1.5 * null, atol=1e-5)
    assert not torch.allclose(conditional, null)


@pytest.mark.parametrize("width", [8, 64])
def test_the_output_depends_on_the_noise_level_and_the_class(width):
    """At widths where a group-norm group holds one channel (8) and several (64): an embedding added
    before a group norm would be normalised away; the adaptive norm keeps it."""
    torch.manual_seed(0)
    net = UNet(1, 8, width, (1, 2), 1, (4,), 0.0, num_classes=3, embedding="fourier").eval()
    x, labels = torch.randn(2, 1, 8, 8), torch.tensor([0, 1])
    base = net(x, torch.tensor([0.0]), labels)
    assert (net(x, torch.tensor([0.5]), labels) - base).abs().max() > 1e-2
    assert (net(x, torch.tensor([0.0]), torch.tensor([2, 2])) - base).abs().max() > 1e-2
