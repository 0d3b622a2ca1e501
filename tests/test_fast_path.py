"""The fast path: precision resolution, channels-last, bf16 steps, the compile fallback, determinism.

No timings here: speed is measured by benchmarks/bench_train.py against a baseline in the same run.
"""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from genforge import runtime
from genforge.errors import GenforgeError
from genforge.families.registry import FAMILIES, build_networks, resolve_config, resolve_model
from genforge.imageio import to_signed
from genforge.runtime import Precision, resolve_precision, to_channels_last
from genforge.training import train
from genforge.training.batches import BatchSampler
from genforge.training.checkpoint import list_checkpoints, load_checkpoint
from genforge.training.optim import make_optimizers
from tests.conftest import tiny_config

CPU = torch.device("cpu")


# ---- precision resolution --------------------------------------------------------------------

@pytest.mark.parametrize("given", ["fp32", "bf16", "fp16"])
def test_explicit_precision_is_kept(given):
    assert resolve_precision(CPU, given) == given


def test_auto_on_cpu_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", lambda: {"avx512_bf16": True, "amx_bf16": False})
    assert resolve_precision(CPU, "auto") == "bf16"
    monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", lambda: {"avx512_bf16": False, "amx_bf16": True})
    assert resolve_precision(CPU, "auto") == "bf16"
    monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", lambda: {"avx512_bf16": False, "amx_bf16": False})
    assert resolve_precision(CPU, "auto") == "fp32"


def test_auto_on_cpu_without_flags_is_fp32(monkeypatch):
    def no_flags():
        raise RuntimeError("cpuinfo failed")
    monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", no_flags)
    assert resolve_precision(CPU, "auto") == "fp32"


def test_auto_on_cuda_picks_bf16_or_fp16(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision(cuda, "auto") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert resolve_precision(cuda, "auto") == "fp16"


def test_auto_elsewhere_is_fp32():
    assert resolve_precision(torch.device("meta"), "auto") == "fp32"


def test_precision_object_resolves_auto(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert Precision(CPU, "auto", ["vae"]).precision == "fp32"
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert Precision(CPU, "auto", ["vae"]).precision == "bf16"


def test_config_checks_precision_and_switches():
    assert resolve_config(overrides=[{"train": {"precision": "auto"}}]).train.precision == "auto"
    assert resolve_config(overrides=[{"train": {"compile": "true", "channels_last": "false"}}]).train.compile is True
    with pytest.raises(GenforgeError, match="precision"):
        resolve_config(overrides=[{"train": {"precision": "fp8"}}])
    with pytest.raises(GenforgeError, match="channels_last"):
        resolve_config(overrides=[{"train": {"channels_last": "maybe"}}])


def test_auto_keeps_dense_networks_in_fp32_on_cpu(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision(CPU, "auto", convolutional=False) == "fp32"
    assert resolve_precision(CPU, "auto", convolutional=True) == "bf16"
    assert resolve_precision(CPU, "bf16", convolutional=False) == "bf16"  # asked for explicitly


@pytest.mark.parametrize("model, expected", [("vae-conv", "bf16"), ("vae-mlp", "fp32")])
def test_saved_config_records_resolved_precision_and_resume_accepts_auto(tmp_path, monkeypatch, model, expected):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    run_dir = tmp_path / "run"
    train(tiny_config(model, 4, train={"precision": "auto", "checkpoint_every": 2}), run_dir, quiet=True)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["precision"] == expected
    # Rerunning the same command (still 'auto') resumes instead of refusing a changed setting.
    result = train(tiny_config(model, 6, train={"precision": "auto", "checkpoint_every": 2}), run_dir, quiet=True)
    assert result.step == 6


def test_resume_with_auto_keeps_the_saved_precision(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    train(tiny_config("vae-conv", 2, train={"precision": "fp32", "checkpoint_every": 2}), run_dir, quiet=True)
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)  # 'auto' alone would now give bf16
    result = train(tiny_config("vae-conv", 4, train={"precision": "auto", "checkpoint_every": 2}), run_dir, quiet=True)
    assert result.step == 4
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["precision"] == "fp32"


# ---- channels-last and bf16 steps ------------------------------------------------------------

def _setup(model: str, precision: str, channels_last: bool, batch_size: int = 8):
    from genforge.data import load_dataset
    data = load_dataset("mnist-5k")
    cfg = resolve_model(tiny_config(model, 2, train={"precision": precision, "batch_size": batch_size}), data)
    torch.manual_seed(0)
    nets = build_networks(cfg)
    converted = to_channels_last(nets, channels_last)
    sampler = BatchSampler(data, batch_size, 0, CPU, channels_last=converted)
    return cfg, nets, make_optimizers(cfg, nets), Precision(CPU, precision, list(nets)), sampler, converted


def test_channels_last_applies_to_conv_nets_only():
    cfg, nets, *_ , converted = _setup("dcgan", "fp32", True)
    assert converted
    conv_weights = [p for p in nets["generator"].parameters() if p.ndim == 4]
    assert conv_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
    *_, dense_converted = _setup("vae-mlp", "fp32", True)
    assert not dense_converted
    *_, off = _setup("dcgan", "fp32", False)
    assert not off


def test_sampler_gives_channels_last_uint8_batches():
    *_, sampler, _ = _setup("dcgan", "fp32", True)
    batch = sampler(0)
    assert batch.images.dtype == torch.uint8
    assert batch.images.is_contiguous(memory_format=torch.channels_last)
    assert to_signed(batch.images).is_contiguous(memory_format=torch.channels_last)
    # Same images as the NCHW sampler, only laid out differently.
    *_, plain, _ = _setup("dcgan", "fp32", False)
    assert torch.equal(plain(0).images, batch.images)


@pytest.mark.parametrize("model", ["dcgan", "vae-conv"])
def test_channels_last_bf16_step_runs_and_changes_parameters(model):
    cfg, nets, opts, precision, sampler, _ = _setup(model, "bf16", True)
    before = {n: copy.deepcopy(net.state_dict()) for n, net in nets.items()}
    family = "gan" if model == "dcgan" else "vae"
    losses = FAMILIES[family].step(nets, opts, sampler(0), cfg, precision)
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in losses.values())
    for name, net in nets.items():
        after = net.state_dict()
        changed = [k for k in after if after[k].is_floating_point() and not torch.equal(after[k], before[name][k])]
        assert changed, f"{name}: no parameter changed"
        assert all(after[k].dtype == torch.float32 for k in after if after[k].is_floating_point())  # master weights


def test_channels_last_matches_nchw_in_fp32():
    """channels-last changes the memory layout, not the mathematics: one fp32 step agrees closely."""
    results = []
    for channels_last in (False, True):
        cfg, nets, opts, precision, sampler, _ = _setup("dcgan", "fp32", channels_last)
        torch.manual_seed(1)
        FAMILIES["gan"].step(nets, opts, sampler(0), cfg, precision)
        results.append(torch.cat([p.detach().flatten() for p in nets["generator"].parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-5)


# ---- compile ---------------------------------------------------------------------------------

def test_compile_fallback_logs_one_line_and_keeps_networks(monkeypatch):
    monkeypatch.setattr(runtime, "compile_unavailable", lambda device: "no C++ compiler")
    messages = []
    nets = {"vae": torch.nn.Linear(2, 2)}
    assert runtime.compile_networks(nets, CPU, messages.append) is nets
    assert messages == ["torch.compile is unavailable (no C++ compiler); training in eager mode"]


def test_training_with_compile_falls_back_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runtime, "compile_unavailable", lambda device: "no C++ compiler")
    cfg = tiny_config("vae-mlp", 3, train={"compile": True, "log_every": 3})
    result = train(cfg, tmp_path / "run", quiet=False)
    assert result.step == 3
    out = capsys.readouterr().out
    assert out.count("torch.compile is unavailable") == 1


def test_compile_unavailable_reports_a_missing_compiler(monkeypatch):
    import torch._inductor.cpp_builder as builder

    def missing():
        raise RuntimeError("Failed to find C compiler")
    monkeypatch.setattr(builder, "get_cpp_compiler", missing)
    assert "Failed to find C compiler" in runtime.compile_unavailable(CPU)


def test_compiled_wrappers_share_parameters_with_the_networks():
    if runtime.compile_unavailable(CPU):
        pytest.skip("torch.compile is unavailable here")
    nets = {"vae": torch.nn.Linear(2, 2)}
    wrapped = runtime.compile_networks(nets, CPU, print)
    assert wrapped["vae"] is not nets["vae"]
    assert all(a is b for a, b in zip(wrapped["vae"].parameters(), nets["vae"].parameters()))


# ---- determinism -----------------------------------------------------------------------------

def _final_networks(run_dir):
    return load_checkpoint(list_checkpoints(run_dir)[-1][1])["networks"]


@pytest.mark.parametrize("model", ["dcgan", "vae-conv"])
def test_fast_path_runs_are_deterministic(tmp_path, model):
    """Two identical runs under bf16 + channels-last give bit-identical parameters on CPU."""
    cfg = tiny_config(model, 6, train={"precision": "bf16", "channels_last": True, "checkpoint_every": 6})
    train(cfg, tmp_path / "a", quiet=True)
    train(cfg, tmp_path / "b", quiet=True)
    a, b = _final_networks(tmp_path / "a"), _final_networks(tmp_path / "b")
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}.{key} differs between identical runs"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fast_path_resume_is_bit_exact(tmp_path, precision):
    """Channels-last, fused Adam and (for bf16) autocast keep exact resume on CPU."""
    cfg = dict(precision=precision, channels_last=True, checkpoint_every=3)
    train(tiny_config("dcgan", 6, train=cfg), tmp_path / "whole", quiet=True)
    train(tiny_config("dcgan", 3, train=cfg), tmp_path / "split", quiet=True)
    train(tiny_config("dcgan", 6, train=cfg), tmp_path / "split", quiet=True)
    a, b = _final_networks(tmp_path / "whole"), _final_networks(tmp_path / "split")
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}.{key} differs after resume"
