"""VAE networks (conditional variants, bad sizes), a tiny trained run, and the latent tools on it."""

from __future__ import annotations

import pytest
import torch

from genforge.config import ModelConfig, RunConfig, replace
from genforge.errors import GenforgeError
from genforge.families.registry import build_networks
from genforge.families.vae import tools as vae_tools
from genforge.run import Run, load_run
from genforge.training import train
from genforge.training.checkpoint import list_checkpoints, load_checkpoint
from tests.families.vae.vae_helpers import one_thread, tiny_config  # noqa: F401 - one_thread: an autouse fixture


@pytest.mark.parametrize("name", ["cvae-mlp", "cvae-conv"])
def test_conditional_vae_depends_on_the_label(name):
    torch.manual_seed(0)
    model = ModelConfig(name=name, latent_dim=4, width=8, image_size=28, channels=1, num_classes=10)
    vae = build_networks(RunConfig(model=model))["vae"]
    z = torch.randn(5, 4)
    zeros, ones = torch.zeros(5, dtype=torch.long), torch.ones(5, dtype=torch.long)
    assert vae.decode(z, zeros).shape == (5, 1, 28, 28)
    assert (vae.decode(z, zeros) - vae.decode(z, ones)).abs().max() > 1e-4
    x = torch.rand(5, 1, 28, 28)
    assert (vae.encode(x, zeros)[0] - vae.encode(x, ones)[0]).abs().max() > 1e-4
    with pytest.raises(GenforgeError, match="class-conditional"):
        vae.decode(z)


@pytest.mark.parametrize("name", ["vae-mlp", "vae-conv", "cvae-mlp"])
def test_latent_size_zero_is_refused_by_the_builder(name):
    with pytest.raises(GenforgeError, match="latent_dim must be at least 1"):
        build_networks(RunConfig(model=ModelConfig(name=name, latent_dim=0, width=8, image_size=28, channels=1,
                                                   num_classes=10)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dense VAE with a 2-D latent, trained for a few hundred steps on the embedded digits."""
    cfg = tiny_config("vae-mlp", steps=800, train={"batch_size": 32, "lr": 2e-3, "betas": [0.9, 0.999],
                                                    "log_every": 100, "sample_every": 800, "checkpoint_every": 800})
    cfg = replace(cfg, model={"latent_dim": 2, "width": 64})
    run_dir = tmp_path_factory.mktemp("vae") / "run"
    train(cfg, run_dir, quiet=True)
    run = load_run(run_dir)
    images = vae_tools.run_images(run, 64)[0]
    return run, images


def test_encode_then_decode_beats_chance(trained):
    run, images = trained
    x = images.float() / 255
    reconstructions = run.decode(run.encode(images))
    own = (reconstructions - x).pow(2).mean()
    # Chance: the same reconstructions scored against other digits of the batch.
    shuffled = (reconstructions - x.roll(1, dims=0)).pow(2).mean()
    assert own < 0.75 * shuffled, (own.item(), shuffled.item())


def test_interpolation_endpoints_are_the_reconstructions(trained):
    run, images = trained
    path = vae_tools.interpolate(run, images[3], images[7], steps=6)
    assert path.shape == (6, 1, 28, 28)
    ends = vae_tools.reconstruct(run, images[[3, 7]])
    torch.testing.assert_close(path[0], ends[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(path[-1], ends[1], atol=1e-5, rtol=0)
    assert (path[2] - path[0]).abs().max() > 1e-3  # the middle is somewhere else


def test_traversal_rows_sweep_one_dimension(trained):
    run, _ = trained
    pictures = vae_tools.traversal(run, None, steps=5, span=2.0)
    assert pictures.shape == (2 * 5, 1, 28, 28)
    # the middle of each row is z = 0 (the base code), and the ends differ from it
    centre = run.decode(torch.zeros(1, 2))[0]
    for row in range(2):
        torch.testing.assert_close(pictures[row * 5 + 2], centre, atol=1e-6, rtol=0)
        assert (pictures[row * 5] - centre).abs().max() > 1e-3


def test_latent_map_and_pictures(trained, tmp_path):
    run, images = trained
    assert vae_tools.latent_map(run, side=4).shape == (16, 1, 28, 28)
    written = vae_tools.write_pictures(run, images[:8], tmp_path / "tools", steps=5)
    assert sorted(p.name for p in written) == ["interpolation.png", "latent-map.png", "reconstructions.png",
                                              "traversal.png"]
    assert all(p.stat().st_size > 100 for p in written)
    grid, nrow = vae_tools.reconstruction_grid(run, images[:5], per_row=4)
    assert nrow == 4 and grid.shape[0] == 16  # 2 x (4 inputs above 4 reconstructions), last row padded
    torch.testing.assert_close(grid[:4], images[:4].float() / 255)


def test_latent_map_needs_two_dimensions(trained):
    run, _ = trained
    cfg = replace(run.config, model={"latent_dim": 3})
    other = Run(run.run_dir, cfg, run.model_family, 0, build_networks(cfg), torch.device("cpu"))
    assert other.family == "vae"
    with pytest.raises(GenforgeError, match="2-dimensional latent"):
        vae_tools.latent_map(other)


def test_encode_refuses_images_of_another_size(trained):
    run, _ = trained
    with pytest.raises(GenforgeError, match="32x32 but the model was trained on 28x28"):
        run.encode(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(GenforgeError, match=r"shape \(N, 2\)"):
        run.decode(torch.zeros(2, 5))


def test_resume_is_exact_with_warmup_binarisation_iwae_and_lr_decay(tmp_path):
    vae = {"objective": "iwae", "importance_samples": 3, "kl_warmup_steps": 15, "binarize": "dynamic",
           "lr_decay_start": 8, "lr_decay_steps": 10}
    straight = tiny_config("vae-mlp", steps=20, vae=vae)
    train(straight, tmp_path / "straight", quiet=True)
    train(tiny_config("vae-mlp", steps=10, vae=vae), tmp_path / "resumed", quiet=True)
    train(straight, tmp_path / "resumed", quiet=True)
    a = load_checkpoint(list_checkpoints(tmp_path / "straight")[-1][1])["networks"]["vae"]
    b = load_checkpoint(list_checkpoints(tmp_path / "resumed")[-1][1])["networks"]["vae"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_images_spread_over_a_class_ordered_split(trained, monkeypatch):
    """vae-tools' default images come from the whole split, not its first n (CIFAR's zip is stored
    class by class, so the first 16 images would all be airplanes)."""
    from genforge.data.base import ImageDataset

    run, _ = trained
    labels = torch.arange(10).repeat_interleave(50)  # 50 of class 0, then 50 of class 1, ...
    images = labels.view(-1, 1, 1, 1).expand(-1, 1, 28, 28).to(torch.uint8).contiguous()  # pixel value = class
    monkeypatch.setattr(vae_tools, "load_split", lambda data_cfg, split=None: ImageDataset(images, labels))
    picked, _ = vae_tools.run_images(run, 10)
    assert sorted(picked[:, 0, 0, 0].tolist()) == list(range(10))
    assert len(vae_tools.run_images(run, 16)[0]) == 16
    assert len(vae_tools.run_images(run, 1000)[0]) == 500  # never more than the split holds
