"""The Python API in a few lines, as the README shows it."""

from __future__ import annotations

import pytest
import torch

import genforge
from genforge.errors import GenforgeError


def test_python_api_round_trip(tmp_path):
    cfg = genforge.resolve_config(preset="demo-vae", overrides=[{"train": {"steps": 10, "device": "cpu"},
                                                                 "model": {"width": 8}}])
    genforge.train(cfg, tmp_path / "vae", quiet=True)
    run = genforge.load_run(tmp_path / "vae")
    images = run.sample(6, seed=1)
    assert images.shape == (6, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert torch.equal(images, run.sample(6, seed=1))
    assert not torch.equal(images, run.sample(6, seed=2))
    path = genforge.save_grid(images, tmp_path / "grid.png")
    assert path.is_file()
    with pytest.raises(GenforgeError, match="unconditional"):
        run.sample(2, labels=torch.tensor([1, 2]))
    with pytest.raises(GenforgeError, match="positive"):
        run.sample(0)


def test_gan_sampling_uses_ema_generator(tmp_path):
    cfg = genforge.resolve_config(overrides=[{"model": {"name": "dcgan", "width": 8, "latent_dim": 8},
                                              "train": {"steps": 20, "batch_size": 16, "device": "cpu"}}])
    genforge.train(cfg, tmp_path / "gan", quiet=True)
    run = genforge.load_run(tmp_path / "gan")
    payload = torch.load(sorted((tmp_path / "gan" / "checkpoints").iterdir())[-1], weights_only=True)
    live, averaged = payload["networks"]["generator"], payload["ema"]["generator"]["model"]
    key = next(k for k in live if k.endswith("weight"))
    assert not torch.equal(live[key], averaged[key])
    assert torch.equal(run.generator.state_dict()[key], averaged[key])
    # eval mode (batch norm with recalibrated running statistics): a sample does not depend on its batch
    assert torch.allclose(run.sample(4, seed=3)[:1], run.sample(1, seed=3), atol=1e-5)


def test_export_to_safetensors(tmp_path, cli):
    import json

    from safetensors.torch import load_file, safe_open

    cfg = genforge.resolve_config(overrides=[{"model": {"name": "dcgan", "width": 8, "latent_dim": 8},
                                              "train": {"steps": 10, "batch_size": 16, "device": "cpu"}}])
    genforge.train(cfg, tmp_path / "gan", quiet=True)
    out = cli("export", "--run", tmp_path / "gan", "--out", tmp_path / "gan.safetensors", check=True)
    assert "gan.safetensors" in out.stdout
    tensors = load_file(tmp_path / "gan.safetensors")
    run = genforge.load_run(tmp_path / "gan")
    for key, value in run.generator.state_dict().items():
        assert torch.equal(tensors[f"generator.{key}"], value)  # the EMA generator, recalibrated
    assert tensors and all(key.startswith("generator.") for key in tensors)  # inference only: no discriminator
    with safe_open(tmp_path / "gan.safetensors", "pt") as f:
        meta = f.metadata()
    assert meta["family"] == "gan" and json.loads(meta["config"])["model"]["name"] == "dcgan"
    bad = cli("export", "--run", tmp_path / "gan", "--out", tmp_path / "gan.pt")
    assert bad.returncode == 2 and "safetensors" in bad.stderr


@pytest.mark.parametrize("call, expected", [
    (lambda tmp: genforge.resolve_config(overrides={"train": {"steps": 3}}), "overrides must be a list of nested dicts"),
    (lambda tmp: genforge.resolve_config(overrides=["train.steps=3"]), "overrides must be a list of nested dicts"),
    (lambda tmp: genforge.train("demo-vae", tmp / "run"), "train\\(\\) takes a RunConfig"),
])
def test_python_api_misuse_is_a_one_line_genforge_error(tmp_path, call, expected):
    """Issue 18: the Python API answers misuse with the CLI's GenforgeError, not an AttributeError."""
    with pytest.raises(genforge.GenforgeError, match=expected):
        call(tmp_path)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["vae-mlp", "dcgan"])
def test_sample_prefix_property_holds_within_float_rounding(tmp_path, name):
    """README: the first k images of sample(n, seed) are those of sample(k, seed), within float rounding."""
    from tests.conftest import tiny_config

    genforge.train(tiny_config(name, steps=2), tmp_path / "run", quiet=True)
    run = genforge.load_run(tmp_path / "run")
    many, few = run.sample(37, seed=5), run.sample(5, seed=5)
    assert torch.allclose(many[:5], few, atol=1e-5, rtol=0)
    assert not torch.allclose(run.sample(5, seed=6), few, atol=1e-3)  # another seed: other images


def test_sampling_precision_bf16_is_close_to_fp32_and_fp32_is_the_default(tmp_path, cli):
    from tests.conftest import tiny_config

    genforge.train(tiny_config("dcgan", steps=2), tmp_path / "run", quiet=True)
    fp32 = genforge.load_run(tmp_path / "run")
    bf16 = genforge.load_run(tmp_path / "run", precision="bf16")
    assert fp32.precision == "fp32"
    a, b = fp32.sample(16, seed=3), bf16.sample(16, seed=3)
    assert b.dtype == torch.float32 and b.shape == a.shape
    assert not torch.equal(a, b) and (a - b).abs().mean() < 0.02
    with pytest.raises(GenforgeError, match="sampling precision must be fp32 or bf16"):
        genforge.load_run(tmp_path / "run", precision="fp16")
    proc = cli("sample", "--run", tmp_path / "run", "--n", 4, "--precision", "bf16", "--out", tmp_path / "g.png")
    assert proc.returncode == 0 and (tmp_path / "g.png").is_file(), proc.stderr
