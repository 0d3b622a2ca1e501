"""Pix2pix through the one training loop: learning, exact resume, the schedule in the optimiser."""

import json

import pytest
import torch

from genforge.conditioning import Condition
from genforge.errors import GenforgeError
from genforge.families.contract import SampleRequest
from genforge.families.registry import resolve_config
from genforge.run import load_run
from genforge.training import checkpoint as ckpt
from genforge.training import train
from tests.families.pix2pix.pix2pix_helpers import write_inversion_pairs


def _config(data_dir, steps, every=5, **pix2pix):
    return resolve_config(overrides=[{
        "model": {"name": "pix2pix", "width": 8}, "data": {"name": f"paired:{data_dir}"},
        "train": {"steps": steps, "batch_size": 8, "log_every": 5, "sample_every": every, "checkpoint_every": every,
                  "keep_checkpoints": 10, "device": "cpu"},
        "pix2pix": {"n_layers": 2, **pix2pix}}])


def test_tiny_run_beats_the_identity_mapping(tmp_path):
    data = write_inversion_pairs(tmp_path / "pairs")
    result = train(_config(data, 40, every=40), tmp_path / "run", quiet=True)
    test = result.test
    assert set(test) >= {"l1", "psnr", "ssim", "identity_l1", "identity_psnr", "identity_ssim"}
    assert test["l1"] < 0.5 * test["identity_l1"]
    assert test["psnr"] > test["identity_psnr"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("test_l1" in r for r in records) and any("l1" in r and "loss_d" in r for r in records)
    assert (tmp_path / "run" / "samples" / "latest.png").is_file()


def _final_state(run_dir):
    payload = ckpt.load_checkpoint(ckpt.list_checkpoints(run_dir)[-1][1])
    return payload["step"], payload["networks"], payload["optimizers"]


def _assert_same(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_stop_and_resume_is_bit_identical(tmp_path):
    data = write_inversion_pairs(tmp_path / "pairs", n_train=24, n_test=4)
    # Jitter, flip, dropout and the lr decay all draw on or depend on state that must survive a resume.
    options = {"jitter": 2, "flip": True, "lr_decay_start": 3, "lr_decay_steps": 6}
    train(_config(data, 10, **options), tmp_path / "straight", quiet=True)
    train(_config(data, 5, **options), tmp_path / "resumed", quiet=True)
    train(_config(data, 10, **options), tmp_path / "resumed", quiet=True)
    straight, resumed = _final_state(tmp_path / "straight"), _final_state(tmp_path / "resumed")
    assert straight[0] == resumed[0] == 10
    _assert_same(straight, resumed)


def test_learning_rate_decays_to_the_schedule(tmp_path):
    data = write_inversion_pairs(tmp_path / "pairs", n_train=16, n_test=4)
    train(_config(data, 10, lr_decay_start=6, lr_decay_steps=4), tmp_path / "run", quiet=True)
    _, _, optimizers = _final_state(tmp_path / "run")
    # The last step taken is step 9, the 4th of the decay: factor 1 - 4 / 5.
    for name in ("generator", "discriminator"):
        assert optimizers[name]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.2)


def test_l1_only_run_builds_and_stores_no_discriminator_and_still_resumes_and_translates(tmp_path):
    data = write_inversion_pairs(tmp_path / "pairs", n_train=16, n_test=4)
    train(_config(data, 5, gan_weight=0.0), tmp_path / "run", quiet=True)
    payload = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "run")[-1][1])
    assert set(payload["networks"]) == set(payload["optimizers"]) == {"generator"}
    assert "loss_d" not in json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    # Resume by rerunning with more steps: bit-identical to the straight run, still without a discriminator.
    train(_config(data, 10, gan_weight=0.0), tmp_path / "run", quiet=True)
    train(_config(data, 10, gan_weight=0.0), tmp_path / "straight", quiet=True)
    resumed, straight = _final_state(tmp_path / "run"), _final_state(tmp_path / "straight")
    assert resumed[0] == 10 and set(resumed[1]) == {"generator"}
    _assert_same(straight, resumed)
    run = load_run(tmp_path / "run")
    assert set(run.networks) == {"generator"}
    source = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)
    images = run.draw(SampleRequest(2, cond=Condition(image=source)))
    assert images.shape == (2, 1, 16, 16) and 0 <= float(images.min()) <= float(images.max()) <= 1


def test_an_old_l1_only_checkpoint_with_a_discriminator_still_resumes(tmp_path):
    # Runs from before the discriminator was left out stored one (untrained) with its optimiser.
    data = write_inversion_pairs(tmp_path / "pairs", n_train=16, n_test=4)
    train(_config(data, 5, gan_weight=0.0), tmp_path / "run", quiet=True)
    path = ckpt.list_checkpoints(tmp_path / "run")[-1][1]
    payload = ckpt.load_checkpoint(path)
    stale = torch.optim.Adam(torch.nn.Linear(2, 2).parameters()).state_dict()
    payload["networks"]["discriminator"] = {"weight": torch.zeros(2, 2)}
    payload["optimizers"]["discriminator"] = stale
    ckpt.save_checkpoint(path, payload)
    result = train(_config(data, 10, gan_weight=0.0), tmp_path / "run", quiet=True)
    assert result.step == 10
    assert set(_final_state(tmp_path / "run")[1]) == {"generator"}


def test_pix2pix_on_unpaired_data_is_refused_before_writing(tmp_path):
    cfg = resolve_config(overrides=[{"model": {"name": "pix2pix", "width": 8}, "data": {"name": "mnist-5k"},
                                     "train": {"steps": 5, "device": "cpu"}}])
    with pytest.raises(GenforgeError, match="needs paired data"):
        train(cfg, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()
