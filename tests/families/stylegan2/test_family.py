"""StyleGAN2 through the real loop and the CLI: exact resume including ADA's p and the path-length
mean, 28x28 data padded to 32 with a log line, sampling tools, and bad input (one line, exit 2)."""

from __future__ import annotations

import pytest
import torch

from genforge.cli import main
from genforge.data import DATASETS, ImageDataset, register_dataset
from genforge.families import registry
from genforge.run import load_run
from genforge.rundir import list_checkpoints, load_checkpoint
from genforge.training import train

DATASET = "sg2-tiny-28"


def tiny_digits(root=None, split="train") -> ImageDataset:
    """16 random 28x28 grey images in 2 classes (a stand-in for MNIST's shape)."""
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    images = torch.randint(0, 256, (16, 1, 28, 28), generator=g, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(16) % 2, ["a", "b"], DATASET)


@pytest.fixture(autouse=True, scope="module")
def tiny_dataset():
    register_dataset(DATASET, tiny_digits)
    yield
    DATASETS.pop(DATASET, None)


def config(steps=4, model="cstylegan2", **stylegan2):
    return registry.resolve_config(overrides=[{
        "model": {"name": model, "width": 2, "latent_dim": 4},
        "data": {"name": DATASET},
        "train": {"steps": steps, "batch_size": 4, "log_every": 2, "sample_every": 100, "checkpoint_every": 2,
                  "device": "cpu", "precision": "fp32", "lr": 0.0025, "betas": [0.0, 0.99]},
        "stylegan2": {"channel_max": 8, "ada_interval": 1, "ada_speed_images": 20, "pl_every": 2, "r1_every": 2,
                      "ema_halflife_images": 100, "augment_p": 0.5, **stylegan2}}])


def test_exact_resume_keeps_p_the_path_length_mean_and_the_ema(tmp_path, capsys):
    cfg = config(steps=4)
    train(cfg, tmp_path / "straight")
    assert "padded the 28x28 images to 32x32" in capsys.readouterr().out
    train(registry.resolve_config(overrides=[{**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "steps": 2}}]),
          tmp_path / "resumed", quiet=True)
    train(cfg, tmp_path / "resumed", quiet=True)
    a = load_checkpoint(list_checkpoints(tmp_path / "straight")[-1][1])
    b = load_checkpoint(list_checkpoints(tmp_path / "resumed")[-1][1])
    assert a["step"] == b["step"] == 4
    assert a["family_state"] == b["family_state"]
    assert a["family_state"]["pl_mean"] > 0 and a["family_state"]["p"] != 0.5  # both really moved
    for net, state in a["networks"].items():
        for key, value in state.items():
            assert torch.equal(value, b["networks"][net][key]), f"{net}.{key}"
    for key, value in a["ema"]["generator"]["model"].items():
        assert torch.equal(value, b["ema"]["generator"]["model"][key]), key
    run = load_run(tmp_path / "straight")
    assert run.sample(4, seed=1, labels=[1]).shape == (4, 1, 32, 32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    register_dataset(DATASET, tiny_digits)
    out = tmp_path_factory.mktemp("sg2") / "run"
    train(config(steps=2, model="stylegan2"), out, quiet=True)
    return out


def test_sampling_tools(trained, tmp_path):
    run = load_run(trained)
    a, b = run.sample(3, seed=5, truncation=0.5), run.sample(3, seed=5)
    assert a.shape == b.shape == (3, 1, 32, 32) and not torch.equal(a, b)
    cut = run.sample(3, seed=5, truncation=0.5, truncation_cutoff=2)
    assert not torch.equal(cut, a) and not torch.equal(cut, b)
    walk = run.interpolate([1, 2, 3], steps=4)
    assert walk.shape == (8, 1, 32, 32)
    torch.testing.assert_close(walk[0], run.sample(1, seed=1)[0], atol=1e-5, rtol=0)  # a leg starts at a seed's image
    assert main(["stylegan2-tools", "--run", str(trained), "--out", str(tmp_path / "tools"), "--rows", "1,2",
                 "--cols", "3,4,5", "--crossover", "3"]) == 0
    for name in ("style-mixing.png", "truncation.png", "interpolation.png"):
        assert (tmp_path / "tools" / name).is_file()


@pytest.mark.parametrize("args,needle", [
    (["sample", "--truncation", "1.5"], "truncation psi must be in [0, 1]"),
    (["sample", "--truncation", "0.5", "--truncation-cutoff", "99"], "truncation cutoff must be"),
    (["stylegan2-tools", "--crossover", "0"], "crossover must be a layer"),
])
def test_bad_sampling_input_is_one_line_and_exit_2(trained, tmp_path, capsys, args, needle):
    out = tmp_path / "x.png" if args[0] == "sample" else tmp_path / "tools"
    code = main([args[0], "--run", str(trained), "--out", str(out), *args[1:]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1 and err.startswith("genforge: error:")
    assert not out.exists()


@pytest.mark.parametrize("sets,needle", [
    (["stylegan2.mapping_layers=0"], "stylegan2.mapping_layers must be at least 1"),
    (["stylegan2.mixing_prob=1.5"], "stylegan2.mixing_prob must be in [0, 1]"),
    (["stylegan2.fit=none"], "power-of-two image side"),
    (["model.image_size=48"], "is not a power of two >= 32"),
])
def test_bad_training_input_is_one_line_and_exit_2(tmp_path, capsys, sets, needle):
    args = ["train", "--model", "stylegan2", "--data", DATASET, "--steps", "1", "--out", str(tmp_path / "run")]
    for s in sets:
        args += ["--set", s]
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_project_writes_its_results_and_refuses_images_of_another_shape(trained, tmp_path, capsys):
    from PIL import Image

    grey = tmp_path / "grey.png"  # 28x28 like the training data: padded to 32 as it was
    Image.fromarray((torch.rand(28, 28) * 255).to(torch.uint8).numpy(), "L").save(grey)
    assert main(["project", "--run", str(trained), "--input", str(grey), "--out", str(tmp_path / "p"),
                 "--steps", "4"]) == 0
    for name in ("reconstruction.png", "target.png", "w.npy", "progress.png", "loss.json"):
        assert (tmp_path / "p" / name).is_file()
    assert Image.open(tmp_path / "p" / "target.png").size == Image.open(tmp_path / "p" / "reconstruction.png").size
    import numpy as np

    assert np.load(tmp_path / "p" / "w.npy").shape == (4,)
    capsys.readouterr()
    small, colour = tmp_path / "small.png", tmp_path / "colour.png"
    Image.fromarray((torch.rand(64, 64) * 255).to(torch.uint8).numpy(), "L").save(small)
    Image.fromarray((torch.rand(32, 32, 3) * 255).to(torch.uint8).numpy(), "RGB").save(colour)
    for path, needle in ((small, "the image is 64x64 but the model draws 32x32"), (colour, "the image is colour")):
        assert main(["project", "--run", str(trained), "--input", str(path), "--out", str(tmp_path / "q")]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1
        assert not (tmp_path / "q").exists()
