"""The training loop on real data: learning, run directory, exact resume, checkpoint safety, NaN stop."""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import pytest
import torch
import torch.nn.functional as F

from genforge.data import load_dataset
from genforge.errors import GenforgeError
from genforge.families import registry
from genforge.training import checkpoint as ckpt
from genforge.training import train
from genforge.training.batches import BatchSampler
from tests.conftest import tiny_config


def test_vae_learns_on_mnist5k(tmp_path):
    """300 steps of a small conv VAE beat the best constant image by a wide margin on held-out digits.

    The best constant predictor (the training set's mean image) scores about 207 nats per test image;
    an untrained decoder about 543 (784 * log 2). We require at least 20 nats better than the mean image.
    """
    train_images = load_dataset("mnist-5k", split="train").images.float() / 255
    test_images = load_dataset("mnist-5k", split="test").images.float() / 255
    mean_image = train_images.mean(0, keepdim=True).clamp(1e-4, 1 - 1e-4)
    baseline = F.binary_cross_entropy(mean_image.expand_as(test_images), test_images,
                                      reduction="none").flatten(1).sum(1).mean().item()
    cfg = tiny_config("vae-conv", steps=300, model={"width": 16},
                      train={"batch_size": 32, "lr": 1e-3, "betas": [0.9, 0.999], "log_every": 100})
    result = train(cfg, tmp_path / "run", quiet=True)
    assert result.test["loss"] < baseline - 20, (result.test, baseline)
    assert result.test["kl"] > 0.5  # the latent is used


def test_gan_trains_and_writes_run_directory(tmp_path):
    cfg = tiny_config("dcgan", steps=40, train={"log_every": 10, "sample_every": 20, "checkpoint_every": 20})
    result = train(cfg, tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30, 40]
    assert all(torch.isfinite(torch.tensor([r["loss_d"], r["loss_g"]])).all() for r in records)
    assert records[0]["loss_d"] != records[-1]["loss_d"] and records[0]["loss_g"] != records[-1]["loss_g"]
    assert all(r["images_per_s"] > 0 for r in records)
    assert (run / "samples" / "step-0000020.png").is_file() and (run / "samples" / "step-0000040.png").is_file()
    assert result.samples.is_file()
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [20, 40]


def final_state(run_dir):
    payload = ckpt.load_checkpoint(ckpt.list_checkpoints(run_dir)[-1][1])
    return payload


def assert_same_state(a, b):
    assert a["step"] == b["step"]
    for group in ("networks", "optimizers"):
        flat_a, flat_b = flatten(a[group]), flatten(b[group])
        assert flat_a.keys() == flat_b.keys()
        for key in flat_a:
            va, vb = flat_a[key], flat_b[key]
            if isinstance(va, torch.Tensor):
                assert torch.equal(va, vb), key
            else:
                assert va == vb, key
    if a.get("ema"):
        assert a["ema"].keys() == b["ema"].keys()
        for name, average in a["ema"].items():
            assert average["num_updates"] == b["ema"][name]["num_updates"], name
            for key, value in average["model"].items():
                assert torch.equal(value, b["ema"][name]["model"][key]), f"{name}/{key}"


def flatten(tree, prefix=""):
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}/{k}"))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}/{i}"))
    else:
        out[prefix] = tree
    return out


@pytest.mark.parametrize("name", ["dcgan", "vae-mlp"])
def test_stop_and_resume_is_bit_identical(tmp_path, name):
    """Training to 30 steps, then rerunning with --steps 50, equals training to 50 in one go."""
    full = tiny_config(name, steps=50)
    train(full, tmp_path / "full", quiet=True)
    train(tiny_config(name, steps=30), tmp_path / "split", quiet=True)
    train(tiny_config(name, steps=50), tmp_path / "split", quiet=True)
    assert_same_state(final_state(tmp_path / "full"), final_state(tmp_path / "split"))


def test_batch_order_depends_only_on_seed_and_step():
    data = load_dataset("mnist-5k", split="test")
    a = BatchSampler(data, 32, seed=5, device=torch.device("cpu"))
    b = BatchSampler(data, 32, seed=5, device=torch.device("cpu"))
    c = BatchSampler(data, 32, seed=6, device=torch.device("cpu"))
    late = [a(s).images for s in (40, 3, 17)]  # any order of access
    assert all(torch.equal(x, b(s).images) for x, s in zip(late, (40, 3, 17)))
    assert not torch.equal(a(3).images, c(3).images)
    epoch = torch.cat([a(s).labels for s in range(len(data) // 32)])
    assert len(epoch) == (len(data) // 32) * 32  # drop-last, no repeats within an epoch


def test_interrupted_checkpoint_write_keeps_previous(tmp_path, monkeypatch):
    target = tmp_path / "step-0000010.pt"
    ckpt.save_checkpoint(target, {"format": "genforge-checkpoint", "x": torch.ones(3)})

    def crash(fd):
        raise OSError("disk pulled out")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(target, {"format": "genforge-checkpoint", "x": torch.zeros(3)})
    monkeypatch.undo()
    assert torch.equal(ckpt.load_checkpoint(target)["x"], torch.ones(3))


def test_leftover_temporary_file_is_ignored(tmp_path):
    cfg = tiny_config("vae-mlp", steps=20)
    train(cfg, tmp_path / "run", quiet=True)
    (tmp_path / "run" / "checkpoints" / "step-0000030.pt.tmp").write_bytes(b"half a checkpoint")
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "run")] == [10, 20]
    train(tiny_config("vae-mlp", steps=30), tmp_path / "run", quiet=True)
    assert ckpt.list_checkpoints(tmp_path / "run")[-1][0] == 30


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    cfg = tiny_config("vae-mlp", steps=20)
    train(cfg, tmp_path / "run", quiet=True)
    path = ckpt.list_checkpoints(tmp_path / "run")[-1][1]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GenforgeError, match="truncated, corrupt or not a genforge checkpoint"):
        train(tiny_config("vae-mlp", steps=30), tmp_path / "run", quiet=True)
    assert path.read_bytes() == data[: len(data) // 2]  # nothing overwritten


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "genforge-checkpoint", "payload": Evil()}, path)
    with pytest.raises(GenforgeError, match="not a genforge checkpoint"):
        ckpt.load_checkpoint(path)


def test_rng_state_round_trip(tmp_path):
    import random

    import numpy as np

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    state = ckpt.capture_rng_state()
    ckpt.save_checkpoint(tmp_path / "rng.pt", {"format": "genforge-checkpoint", "rng": state})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.restore_rng_state(ckpt.load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    spec = registry.model_spec("vae-mlp")
    real_step = spec.family.step
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = real_step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 25:
            out["loss"] = out["loss"] * float("nan")
        return out

    # The loop calls the step of the model's family (registry.model_spec(name).family.step); a
    # Family is frozen, so the registry's entry is swapped for a copy with the poisoned step.
    family = dataclasses.replace(spec.family, step=poisoned)
    monkeypatch.setitem(registry.MODELS, "vae-mlp", dataclasses.replace(spec, family=family))
    with pytest.raises(GenforgeError, match="NaN or infinite.*step 20.*kept"):
        train(tiny_config("vae-mlp", steps=60), tmp_path / "run", quiet=True)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "run")] == [10, 20]
    ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "run")[-1][1])


def test_checkpoint_with_the_older_single_average_still_loads(tmp_path):
    """Checkpoints written before the family contract hold one unnamed average ({"model", "num_updates"});
    sampling and resuming still use it as the generator's (genforge.rundir.averaged_states)."""
    train(tiny_config("dcgan", steps=20), tmp_path / "full", quiet=True)
    run_dir = tmp_path / "old"
    train(tiny_config("dcgan", steps=10), run_dir, quiet=True)
    path = ckpt.list_checkpoints(run_dir)[-1][1]
    payload = ckpt.load_checkpoint(path)
    average = payload["ema"]["generator"]
    ckpt.save_checkpoint(path, {**payload, "ema": average})  # the older format
    assert set(ckpt.load_checkpoint(path)["ema"]) == {"model", "num_updates"}

    from genforge.run import load_run

    run = load_run(run_dir)
    key = next(k for k in average["model"] if k.endswith("weight"))
    assert not torch.equal(payload["networks"]["generator"][key], average["model"][key])
    assert torch.equal(run.generator.state_dict()[key], average["model"][key])  # samples from the average
    train(tiny_config("dcgan", steps=20), run_dir, quiet=True)  # resumes from it ...
    assert_same_state(final_state(tmp_path / "full"), final_state(run_dir))  # ... exactly


def test_a_signal_during_a_snapshot_still_leaves_a_checkpoint_where_it_stopped(tmp_path, monkeypatch):
    """SIGTERM arriving while step 3's snapshot is drawn (after the loop decided whether to checkpoint
    step 3): the run must still stop at a step it has a checkpoint for, as its message says."""
    from genforge.training import loop

    flags = []

    class RecordedFlag(loop._StopFlag):
        def __enter__(self):
            flags.append(self)
            return super().__enter__()

    real_snapshot = loop.snapshot

    def snapshot(tr, *args):
        out = real_snapshot(tr, *args)
        if tr.step == 3:
            flags[0]._handle(signal.SIGTERM, None)  # what the signal handler does, without a real signal
        return out

    monkeypatch.setattr(loop, "_StopFlag", RecordedFlag)
    monkeypatch.setattr(loop, "snapshot", snapshot)
    cfg = tiny_config("vae-mlp", steps=50, train={"sample_every": 3, "checkpoint_every": 10})
    result = train(cfg, tmp_path / "run", quiet=True)
    assert result.stopped_by_signal == "SIGTERM" and result.step < 10
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "run")][-1:] == [result.step]


def test_grids_at_step_zero_and_where_a_run_finishes_off_the_sample_interval(tmp_path):
    """Issue 18: a run whose steps are not a multiple of sample_every still ends with the grid of its
    last step (and names it), and the first grid is drawn at step 0."""
    cfg = tiny_config("vae-mlp", steps=13, train={"sample_every": 5, "checkpoint_every": 100})
    result = train(cfg, tmp_path / "run", quiet=True)
    grids = sorted(p.name for p in (tmp_path / "run" / "samples").glob("step-*.png"))
    assert grids == ["step-0000000.png", "step-0000005.png", "step-0000010.png", "step-0000013.png"]
    assert result.samples == tmp_path / "run" / "samples" / "step-0000013.png"


def test_a_signal_writes_the_grid_of_the_step_it_stopped_at(tmp_path, monkeypatch):
    from genforge.training import loop

    flags = []

    class RecordedFlag(loop._StopFlag):
        def __enter__(self):
            flags.append(self)
            return super().__enter__()

    class SignalAfterEightSteps(loop.Reporter):
        def advance(self, n):
            super().advance(n)
            self.done_steps = getattr(self, "done_steps", 0) + n
            if self.done_steps == 8:
                flags[0]._handle(signal.SIGINT, None)  # what the signal handler does, without a real signal

    monkeypatch.setattr(loop, "_StopFlag", RecordedFlag)
    monkeypatch.setattr(loop, "Reporter", SignalAfterEightSteps)
    cfg = tiny_config("vae-mlp", steps=50, train={"sample_every": 5, "checkpoint_every": 100})
    result = train(cfg, tmp_path / "run", quiet=True)
    assert result.stopped_by_signal == "SIGINT" and result.step == 8
    assert result.samples == tmp_path / "run" / "samples" / "step-0000008.png" and result.samples.is_file()


def test_a_stop_request_delivered_twice_is_one_request_but_a_later_one_stops_at_once(monkeypatch):
    from genforge.training import loop

    now = [100.0]
    monkeypatch.setattr(loop.time, "monotonic", lambda: now[0])
    flag = loop._StopFlag()
    flag._handle(signal.SIGTERM, None)
    assert flag.signal_name == "SIGTERM"
    now[0] += 0.05  # e.g. `kill -TERM -- -PGID` under timeout: the trainer's copy and the forwarded one
    flag._handle(signal.SIGTERM, None)  # no exception: the loop still writes its checkpoint
    assert flag.signal_name == "SIGTERM"
    with pytest.raises(KeyboardInterrupt):  # another signal, even at once, is a second request
        flag._handle(signal.SIGINT, None)
    now[0] += loop._StopFlag.DUPLICATE_S
    with pytest.raises(KeyboardInterrupt):  # the same signal later: the user insists
        flag._handle(signal.SIGTERM, None)
