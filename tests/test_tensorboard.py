"""train.log=tensorboard: the numbers of metrics.jsonl, the learning rates and the sample grids as
TensorBoard events, read back with the tensorboard package's own event reader."""

from __future__ import annotations

import json

import pytest


def test_log_tensorboard_writes_losses_learning_rates_and_grids_readable_by_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from genforge.training import train
    from tests.conftest import tiny_config

    cfg = tiny_config("gan-mlp", steps=6, train={"log": "tensorboard", "log_every": 3, "sample_every": 3,
                                                 "checkpoint_every": 3})
    train(cfg, tmp_path / "run", quiet=True)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss_d", "train/loss_g", "train/images_per_s", "learning_rate/generator",
            "learning_rate/discriminator"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss_d")] == [3, 6]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [round(e.value, 4) for e in events.Scalars("train/loss_d")] == [round(r["loss_d"], 4) for r in records]
    assert events.Scalars("learning_rate/generator")[0].value == pytest.approx(cfg.train.lr)
    assert [e.step for e in events.Images("samples")] == [0, 3, 6]
    assert events.Images("samples")[0].width > 28  # a grid, not one image
