"""Fixtures for the GAN family's tests: tiny configurations, hand-made batches, tiny trained runs."""

from __future__ import annotations

import pytest
import torch

from genforge.families.registry import resolve_config
from genforge.training import train


def gan_config(name: str = "dcgan", image_size: int = 28, channels: int = 1, num_classes: int = 0,
               steps: int = 4, **sections):
    """A fully resolved tiny GAN configuration (image_size/channels/num_classes filled in, as the
    loop's resolve_model would), for calling build_networks and gan_step directly."""
    base = {"model": {"name": name, "width": 8, "latent_dim": 8, "image_size": image_size,
                      "channels": channels, "num_classes": num_classes},
            "data": {"name": "mnist-5k"},
            "train": {"steps": steps, "batch_size": 8, "lr": 1e-3, "log_every": 2, "sample_every": 2,
                      "checkpoint_every": 2, "device": "cpu"}}
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    return resolve_config(overrides=[base])


def random_batch(n: int = 8, image_size: int = 28, channels: int = 1, num_classes: int = 0, seed: int = 0):
    from genforge.conditioning import Batch, Condition

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, image_size, image_size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g) if num_classes else None
    return Batch(images, Condition(labels=labels))


@pytest.fixture
def make_gan_config():
    return gan_config


@pytest.fixture
def make_batch():
    return random_batch


def _tiny_run(folder, model: str, steps: int = 2, **sections):
    cfg = resolve_config(overrides=[{
        "model": {"name": model, "width": 8, "latent_dim": 8}, "data": {"name": "mnist-5k"},
        "train": {"steps": steps, "batch_size": 16, "log_every": 1, "sample_every": steps,
                  "checkpoint_every": steps, "device": "cpu"}, **sections}])
    train(cfg, folder, quiet=True)
    return folder


@pytest.fixture(scope="session")
def conditional_run(tmp_path_factory):
    """A cdcgan run on mnist-5k trained for 2 steps (10 classes)."""
    return _tiny_run(tmp_path_factory.mktemp("cdcgan") / "run", "cdcgan")


@pytest.fixture(scope="session")
def unconditional_run(tmp_path_factory):
    """A dcgan run on mnist-5k trained for 2 steps."""
    return _tiny_run(tmp_path_factory.mktemp("dcgan") / "run", "dcgan")
