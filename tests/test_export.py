"""genforge export: parity of every family's exports (ONNX Runtime, torch.export, re-loaded safetensors)
against the run they came from, the export folder's contents, and its refusals."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch

import genforge
from benchmarks.export_parity import fresh_inputs
from genforge.export import export_run, graphs_of
from tests.conftest import tiny_config
from tests.families.pix2pix.pix2pix_helpers import write_inversion_pairs

# One model per family present: conditional GAN (latents + labels), VAE (generate + encode), pix2pix
# (translate), class-conditional diffusion (one denoiser evaluation: noisy images, noise levels, labels),
# class-conditional StyleGAN2 (latents + labels, the activation-scaling path).
MODELS = ("cdcgan", "vae-conv", "pix2pix", "cdiffusion-unet", "cstylegan2")
RTOL, ATOL = 1e-3, 1e-5  # ONNX Runtime against PyTorch (issue 16)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-runs")
    pairs = write_inversion_pairs(root / "pairs", size=16, n_train=16, n_test=4)
    configs = {
        "cdcgan": tiny_config("cdcgan", steps=2),
        "vae-conv": tiny_config("vae-conv", steps=2),
        "pix2pix": tiny_config("pix2pix", steps=2, model={"width": 4}, data={"name": f"paired:{pairs}"},
                               train={"batch_size": 4}, pix2pix={"n_layers": 1}),
        "cdiffusion-unet": tiny_config("cdiffusion-unet", steps=2, model={"width": 8},
                                       data={"image_size": 16}, diffusion={"channel_mult": "1,2"}),
        "cstylegan2": tiny_config("cstylegan2", steps=2, model={"width": 2, "latent_dim": 8},
                                  stylegan2={"channel_max": 8}),
    }
    out = {}
    for name, cfg in configs.items():
        genforge.train(cfg, root / name, quiet=True)
        out[name] = genforge.load_run(root / name)
    return out


def _inputs(graph, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Fresh inputs like the graph's examples, with another batch size (the batch dimension is free):
    the parity benchmark's own, so the test and benchmarks/export_parity.py check the same thing."""
    return fresh_inputs(graph, n, seed)


@pytest.mark.parametrize("model", MODELS)
def test_onnx_matches_pytorch(runs, model, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the onnx extra: pip install 'genforge[onnx]'")
    pytest.importorskip("onnxscript", reason="ONNX export needs the onnx extra: pip install 'genforge[onnx]'")
    run = runs[model]
    done = export_run(run, tmp_path / "onnx", "onnx")
    graphs = graphs_of(run)
    assert sorted(f for f in done.files if f.endswith(".onnx")) == sorted(f"{name}.onnx" for name in graphs)
    for name, graph in graphs.items():
        session = ort.InferenceSession(str(tmp_path / "onnx" / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == list(graph.inputs)
        for n in (1, 7):  # neither is the batch size of the export's example inputs
            inputs = _inputs(graph, n, seed=n)
            (got,) = session.run(None, {k: v.numpy() for k, v in inputs.items()})
            with torch.no_grad():
                want = graph.module(*inputs.values()).numpy()
            assert got.shape == want.shape and got.shape[0] == n
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("model", MODELS)
def test_torch_export_matches_eager(runs, model, tmp_path):
    run = runs[model]
    export_run(run, tmp_path / "pt2", "torch-export")
    for name, graph in graphs_of(run).items():
        program = torch.export.load(tmp_path / "pt2" / f"{name}.pt2").module()
        for n in (1, 5):
            inputs = _inputs(graph, n, seed=10 + n)
            with torch.no_grad():
                torch.testing.assert_close(program(*inputs.values()), graph.module(*inputs.values()),
                                           rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", MODELS)
def test_safetensors_reloads_as_the_run(runs, model, tmp_path):
    run = runs[model]
    export_run(run, tmp_path / "st", "safetensors")
    loaded = genforge.load_exported(tmp_path / "st")
    assert loaded.family == run.family and loaded.step == run.step
    # The family's inference networks this model has (no discriminator; a text encoder only where there is text).
    assert set(loaded.networks) == {n for n in run.networks if n in run.model_family.inference}
    for name, net in loaded.networks.items():
        for key, value in net.state_dict().items():
            assert torch.equal(value, run.networks[name].state_dict()[key]), f"{name}.{key}"
    if run.model_family.from_noise:
        labels = torch.tensor([3]) if run.config.model.num_classes else None
        assert torch.equal(loaded.sample(6, seed=4, labels=labels), run.sample(6, seed=4, labels=labels))
    else:
        from genforge.conditioning import Condition
        from genforge.families.contract import SampleRequest

        source = torch.randint(0, 256, (3, run.config.model.channels, 16, 16), dtype=torch.uint8)
        request = SampleRequest(3, cond=Condition(image=source))
        assert torch.equal(loaded.draw(request), run.draw(request))
    assert genforge.load_run(tmp_path / "st").family == run.family  # load_run reads exports too


def test_export_folder_contents_and_permissions(runs, tmp_path):
    run = runs["vae-conv"]
    done = export_run(run, tmp_path / "st", "safetensors")
    info = json.loads((tmp_path / "st" / "export.json").read_text())
    assert info["format"] == "safetensors" and info["family"] == "vae" and info["step"] == run.step
    assert set(done.files) == {"model.safetensors", "config.yaml", "model_card.md", "export.json"}
    card = (tmp_path / "st" / "model_card.md").read_text()
    assert "vae-conv" in card and "mnist-5k" in card and "test_loss" in card  # the end-of-run test numbers
    umask = os.umask(0)
    os.umask(umask)
    for name in done.files:
        assert stat.S_IMODE((tmp_path / "st" / name).stat().st_mode) == 0o666 & ~umask, name
    # the ONNX export of the same run names each graph's inputs in export.json
    pytest.importorskip("onnxscript", reason="ONNX export needs the onnx extra: pip install 'genforge[onnx]'")
    export_run(run, tmp_path / "onnx", "onnx")
    graphs = json.loads((tmp_path / "onnx" / "export.json").read_text())["graphs"]
    assert graphs["generate"]["inputs"]["latents"]["shape"] == ["batch", run.config.model.latent_dim]
    assert graphs["encode"]["output"] == "latents"


def test_onnx_example_from_the_docs(runs, tmp_path):
    """docs/export.md's example: sample from the ONNX file with onnxruntime and numpy alone."""
    ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the onnx extra: pip install 'genforge[onnx]'")
    pytest.importorskip("onnxscript", reason="ONNX export needs the onnx extra: pip install 'genforge[onnx]'")
    export_run(runs["cdcgan"], tmp_path / "dcgan-onnx", "onnx")
    # --- the example ---
    session = ort.InferenceSession(str(tmp_path / "dcgan-onnx" / "generate.onnx"))
    latent_dim = session.get_inputs()[0].shape[1]
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((16, latent_dim)).astype(np.float32)
    labels = np.full(16, 7, dtype=np.int64)
    (images,) = session.run(None, {"latents": latents, "labels": labels})   # (16, 1, 28, 28) in [0, 1]
    # --- end ---
    assert images.shape == (16, 1, 28, 28) and 0 <= images.min() and images.max() <= 1


def test_export_cli_and_sample_from_the_export(runs, cli, tmp_path):
    run_dir = runs["cdcgan"].run_dir
    out = cli("export", "--run", run_dir, "--format", "safetensors", "--out", tmp_path / "e", check=True)
    assert "safetensors export" in out.stdout
    again = cli("export", "--run", run_dir, "--format", "safetensors", "--out", tmp_path / "e")
    assert again.returncode == 2 and "already holds an export" in again.stderr and "--force" in again.stderr
    sampled = cli("sample", "--run", tmp_path / "e", "--n", "4", "--class", "2", "--out", tmp_path / "s.png")
    assert sampled.returncode == 0 and (tmp_path / "s.png").is_file(), sampled.stderr


def test_force_replaces_an_export_without_stale_files(runs, tmp_path):
    run = runs["cdcgan"]
    export_run(run, tmp_path / "e", "safetensors")
    export_run(run, tmp_path / "e", "torch-export", force=True)
    files = json.loads((tmp_path / "e" / "export.json").read_text())["files"]
    assert sorted(os.listdir(tmp_path / "e")) == sorted(files) and "model.safetensors" not in files
    export_run(run, tmp_path / "e", "safetensors", force=True)
    assert "generate.pt2" not in os.listdir(tmp_path / "e")
    assert genforge.load_exported(tmp_path / "e").step == run.step


@pytest.mark.parametrize("args, message", [
    (("--format", "tflite"), "invalid choice"),
    (("--format", "onnx", "--run", "missing"), "not a genforge run directory"),
])
def test_export_bad_input(runs, cli, tmp_path, args, message):
    base = {"--run": str(runs["cdcgan"].run_dir), "--out": str(tmp_path / "x")}
    argv = ["export", *args]
    argv += [item for key, value in base.items() if key not in args for item in (key, value)]
    proc = cli(*argv)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_export_a_run_without_checkpoint(cli, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("model: {name: dcgan}\n")
    proc = cli("export", "--run", tmp_path / "run", "--format", "onnx", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "no checkpoint" in proc.stderr and not (tmp_path / "x").exists()
