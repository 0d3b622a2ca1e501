"""Contract tests run on every model: shapes, determinism, save/load round trip, one step learns."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from genforge.conditioning import Batch
from genforge.config import replace
from genforge.families.registry import MODELS, build_networks, resolve_config
from genforge.runtime import Precision
from genforge.training.optim import make_optimizers
from tests.conftest import tiny_config

FOUNDATION = ["gan-mlp", "dcgan", "vae-mlp", "vae-conv"]


def resolved(name: str, size: int = 28, channels: int = 1):
    return replace(tiny_config(name), model={"image_size": size, "channels": channels})


@pytest.mark.parametrize("name", FOUNDATION)
def test_shapes(name):
    cfg = resolved(name)
    nets = build_networks(cfg)
    x = torch.rand(4, 1, 28, 28)
    if MODELS[name].family.name == "gan":
        fake = nets["generator"](torch.randn(4, cfg.model.latent_dim))
        assert fake.shape == (4, 1, 28, 28)
        assert fake.min() >= -1 and fake.max() <= 1  # tanh output range
        assert nets["discriminator"](x).shape == (4,)
    else:
        out, mean, logvar = nets["vae"](x)
        assert out.shape == x.shape and mean.shape == logvar.shape == (4, cfg.model.latent_dim)


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3), (64, 1)])
def test_dcgan_sizes(size, channels):
    cfg = resolved("dcgan", size, channels)
    nets = build_networks(cfg)
    fake = nets["generator"](torch.randn(2, cfg.model.latent_dim))
    assert fake.shape == (2, channels, size, size)
    assert nets["discriminator"](fake).shape == (2,)


def test_dcgan_rejects_odd_size():
    from genforge.errors import GenforgeError

    cfg = resolved("dcgan", 30, 1)
    with pytest.raises(GenforgeError, match="image size"):
        build_networks(cfg)


@pytest.mark.parametrize("name", FOUNDATION)
def test_deterministic_under_seed(name):
    cfg = resolved(name)
    torch.manual_seed(3)
    a = build_networks(cfg)
    torch.manual_seed(3)
    b = build_networks(cfg)
    for net in a:
        for (ka, va), (kb, vb) in zip(a[net].state_dict().items(), b[net].state_dict().items()):
            assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize("name", FOUNDATION)
def test_save_load_round_trip(name):
    cfg = resolved(name)
    nets = build_networks(cfg)
    buffer = io.BytesIO()
    torch.save({k: v.state_dict() for k, v in nets.items()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    fresh = build_networks(cfg)
    for k, net in fresh.items():
        net.load_state_dict(loaded[k])
        net.eval()
        nets[k].eval()
    z = torch.randn(3, cfg.model.latent_dim)
    if "generator" in nets:
        assert torch.equal(nets["generator"](z), fresh["generator"](z))
    else:
        assert torch.equal(nets["vae"].decode(z), fresh["vae"].decode(z))


@pytest.mark.parametrize("name", FOUNDATION)
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_one_step_changes_every_network(name, optimizer):
    width = 8 if "conv" in name or name == "dcgan" else 32
    cfg = resolve_config(overrides=[{"model": {"name": name, "latent_dim": 8, "width": width, "image_size": 28, "channels": 1},
                                     "train": {"optimizer": optimizer, "lr": 0.01, "momentum": 0.9}}])
    torch.manual_seed(0)
    nets = build_networks(cfg)
    before = {k: copy.deepcopy(v.state_dict()) for k, v in nets.items()}
    opts = make_optimizers(cfg, nets)
    batch = Batch(torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8))
    losses = MODELS[name].family.step(nets, opts, batch, cfg, Precision(torch.device("cpu"), "fp32", list(nets)))
    assert all(torch.isfinite(v) for v in losses.values())
    for k, net in nets.items():
        changed = [n for n, p in net.state_dict().items() if p.dtype.is_floating_point and not torch.equal(p, before[k][n])]
        assert changed, f"{k} did not change"
    assert type(opts[next(iter(opts))]).__name__.lower() == optimizer


def test_gan_mlp_discriminator_layout():
    """The article's discriminator: 784 -> 1024 -> 512 -> 256 -> 1."""
    nets = build_networks(resolved("gan-mlp"))
    sizes = [(m.in_features, m.out_features) for m in nets["discriminator"].modules() if isinstance(m, torch.nn.Linear)]
    assert sizes == [(784, 1024), (1024, 512), (512, 256), (256, 1)]
    assert nets["generator"].latent_dim == 8  # tiny config; the default is 100
    assert MODELS["gan-mlp"].latent_dim == 100
