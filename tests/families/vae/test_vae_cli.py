"""The VAE commands end to end: encode, decode, vae-tools, the objective flags, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genforge.cli import main
from genforge.config import PRESETS
from genforge.families.registry import resolve_config
from genforge.training import train
from tests.families.vae.vae_helpers import one_thread, tiny_config  # noqa: F401 - one_thread: an autouse fixture


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny unconditional and a tiny conditional VAE (quality does not matter here)."""
    root = tmp_path_factory.mktemp("vae-cli")
    train(tiny_config("vae-mlp", steps=10), root / "vae", quiet=True)
    train(tiny_config("cvae-conv", steps=10), root / "cvae", quiet=True)
    return root


def _write_digits(folder, n=3, size=28):
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(g.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / f"digit-{i}.png")
    return folder


def test_encode_decode_and_tools_end_to_end(runs, tmp_path, cli):
    digits = _write_digits(tmp_path / "digits")
    cli("encode", "--run", runs / "vae", "--input", digits, "--out", tmp_path / "z.npy", check=True)
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (3, 8) and z.dtype == np.float32
    cli("decode", "--run", runs / "vae", "--input", tmp_path / "z.npy", "--out", tmp_path / "decoded", check=True)
    assert sorted(p.name for p in (tmp_path / "decoded").iterdir()) == [f"decoded-{i:05d}.png" for i in range(3)]
    proc = cli("vae-tools", "--run", runs / "cvae", "--out", tmp_path / "tools", "--n", "8", "--steps", "4", check=True)
    assert {p.name for p in (tmp_path / "tools").iterdir()} == {"reconstructions.png", "interpolation.png",
                                                               "traversal.png"}
    assert "reconstructions.png" in proc.stdout


def test_decoded_codes_match_the_python_api(runs, tmp_path, capsys):
    from genforge import load_run

    z = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    assert main(["decode", "--run", str(runs / "vae"), "--input", str(tmp_path / "z.npy"),
                 "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").is_file()
    expected = load_run(runs / "vae").decode(torch.from_numpy(z))
    main(["decode", "--run", str(runs / "vae"), "--input", str(tmp_path / "z.npy"), "--out", str(tmp_path / "one")])
    got = np.asarray(Image.open(tmp_path / "one" / "decoded-00001.png"))
    assert np.abs(got.astype(int) - (expected[1, 0].numpy() * 255).round().astype(int)).max() <= 1


def test_objective_names_from_the_issue_resolve(capsys):
    assert main(["train", "--model", "vae-conv", "--set", "vae.objective=iwae", "--set", "vae.importance_samples=5",
                 "--set", "vae.kl_weight=4", "--set", "vae.kl_warmup_steps=100", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "objective: iwae" in out and "importance_samples: 5" in out and "kl_weight: 4.0" in out
    assert main(["train", "--model", "cvae-mlp", "--dry-run"]) == 0
    assert "num_classes: 10" in capsys.readouterr().out


def test_vae_presets_resolve():
    cfg = resolve_config("cvae-mnist")
    assert (cfg.model.name, cfg.model.latent_dim, cfg.vae.binarize) == ("cvae-mlp", 4, "dynamic")
    assert cfg.vae.lr_decay_start + cfg.vae.lr_decay_steps == cfg.train.steps  # decays to 0 at the end
    assert resolve_config("vae-mnist").model.name == "vae-mlp"
    # Every setting each VAE preset names is what the resolved configuration carries.
    for preset in ("demo-vae", "vae-mnist", "cvae-mnist"):
        resolved = resolve_config(preset).to_dict()
        for section, values in PRESETS[preset].items():
            for key, value in values.items():
                assert resolved[section][key] == value, f"{preset}: {section}.{key} is {resolved[section][key]!r}"


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "vae-mlp", "--set", "model.latent_dim=0", "--dry-run"], "latent_dim must be at least 1"),
    (["train", "--model", "vae-mlp", "--set", "vae.objective=iwae", "--set", "vae.importance_samples=0"],
     "importance_samples"),
    (["train", "--model", "iwae", "--dry-run"], "--set vae.objective=iwae"),
    (["sample", "--run", "{cvae}", "--n", "4"], "class-conditional; give a class"),
    (["sample", "--run", "{cvae}", "--class", "10"], "out of range"),
    (["encode", "--run", "{vae}", "--input", "{big}"], "32x32 but the model was trained on 28x28"),
    (["encode", "--run", "{cvae}", "--input", "{small}"], "class-conditional; give a class"),
    (["decode", "--run", "{vae}", "--input", "{bad_z}", "--out", "{tmp}/d"], "shape (N, 8)"),
    (["decode", "--run", "{vae}", "--input", "{small}/digit-0.png", "--out", "{tmp}/d"], "not a readable .npy"),
])
def test_bad_input_is_one_line_and_status_2(runs, tmp_path, capsys, argv, message):
    paths = {"vae": runs / "vae", "cvae": runs / "cvae", "tmp": tmp_path,
             "big": _write_digits(tmp_path / "big", 1, 32), "small": _write_digits(tmp_path / "small", 1, 28),
             "bad_z": tmp_path / "z.npy"}
    np.save(paths["bad_z"], np.zeros((2, 5), dtype=np.float32))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genforge: error: ") and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written or removed


def test_help_lists_the_vae_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("encode", "decode", "vae-tools"):
        assert command in out


def test_conditional_sample_of_one_class_and_of_all(runs, tmp_path, capsys):
    assert main(["sample", "--run", str(runs / "cvae"), "--class", "3", "--n", "4", "--out", str(tmp_path / "three.png")]) == 0
    assert main(["sample", "--run", str(runs / "cvae"), "--class", "all", "--n", "20",
                 "--out", str(tmp_path / "all.png")]) == 0
    assert Image.open(tmp_path / "all.png").size[1] > Image.open(tmp_path / "three.png").size[1]  # 10 rows vs 2
