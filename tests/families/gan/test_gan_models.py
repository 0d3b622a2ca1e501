"""The GAN architectures: shapes, conditioning, spectral norm, and one step of every model with
every loss and regulariser."""

from __future__ import annotations

import copy

import pytest
import torch

from genforge.families.gan.step import gan_step
from genforge.families.registry import MODELS, build_networks
from genforge.runtime import Precision
from genforge.training.optim import make_optimizers

from .conftest import gan_config, random_batch

GAN_MODELS = ["dcgan", "cdcgan", "resnet-gan", "resnet-cgan"]


def conditional(name: str) -> int:
    return 10 if MODELS[name].conditional else 0


@pytest.mark.parametrize("name", GAN_MODELS)
@pytest.mark.parametrize("size,channels", [(32, 1), (32, 3), (64, 3), (28, 1)])
def test_shapes(name, size, channels):
    cfg = gan_config(name, size, channels, conditional(name))
    nets = build_networks(cfg)
    z = torch.randn(3, cfg.model.latent_dim)
    labels = (torch.tensor([0, 4, 9]),) if conditional(name) else ()
    fake = nets["generator"](z, *labels)
    assert fake.shape == (3, channels, size, size)
    assert fake.min() >= -1 and fake.max() <= 1
    assert nets["discriminator"](fake, *labels).shape == (3,)


@pytest.mark.parametrize("name", ["cdcgan", "resnet-cgan"])
def test_generator_depends_on_the_label(name):
    cfg = gan_config(name, 32, 1, 10)
    generator = build_networks(cfg)["generator"]
    # Conditional batch norm starts as plain batch norm; give the class scales some spread.
    with torch.no_grad():
        for m in generator.modules():
            if hasattr(m, "scale") and isinstance(m.scale, torch.nn.Embedding):
                m.scale.weight.normal_(1, 0.5)
    generator.eval()
    z = torch.randn(1, cfg.model.latent_dim).expand(2, -1)
    a, b = generator(z, torch.tensor([1, 2]))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", ["cdcgan", "resnet-cgan"])
@pytest.mark.parametrize("head", ["projection", "acgan", "both"])
def test_class_heads(name, head):
    cfg = gan_config(name, 32, 3, 10, model={"class_head": head})
    discriminator = build_networks(cfg)["discriminator"]
    x, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    if head == "projection":
        with pytest.raises(ValueError, match="auxiliary classifier"):
            discriminator(x, labels, return_class_logits=True)
    else:
        logits, class_logits = discriminator(x, labels, return_class_logits=True)
        assert logits.shape == (4,) and class_logits.shape == (4, 10)
    if head != "acgan":  # the projection term makes the logit depend on the label
        assert not torch.allclose(discriminator(x, labels), discriminator(x, (labels + 1) % 10))
    else:
        assert torch.allclose(discriminator(x, labels), discriminator(x, (labels + 1) % 10))


def test_unconditional_dcgan_keeps_the_foundation_layout():
    """dcgan without spectral norm is the foundation's network: same parameter names, so old
    checkpoints still load."""
    names = list(build_networks(gan_config("dcgan"))["discriminator"].state_dict())
    assert names[0] == "net.0.weight" and "net.3.running_mean" in names and not any("class_head" in n for n in names)


def _largest_singular_values(net):
    out = []
    for module in net.modules():
        if hasattr(module, "parametrizations") and "weight" in module.parametrizations:
            out.append(torch.linalg.matrix_norm(module.weight.detach().flatten(1), ord=2).item())
    return out


@pytest.mark.parametrize("name", GAN_MODELS)
def test_spectral_norm_bounds_singular_values(name):
    cfg = gan_config(name, 32, 3, conditional(name), model={"spectral_norm": True, "class_head": "both"})
    discriminator = build_networks(cfg)["discriminator"]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in discriminator.modules())
    labels = (torch.zeros(2, dtype=torch.long),) if conditional(name) else ()
    with torch.no_grad():
        for _ in range(200):  # each training-mode forward pass runs one power iteration per layer
            discriminator(torch.randn(2, 3, 32, 32), *labels)
    sigmas = _largest_singular_values(discriminator)
    assert len(sigmas) >= 4
    assert all(abs(s - 1) < 0.05 for s in sigmas), sigmas
    # Without it, the same layers are far from 1: the test can tell the difference.
    plain = build_networks(gan_config(name, 32, 3, conditional(name)))["discriminator"]
    raw = [torch.linalg.matrix_norm(m.weight.flatten(1), ord=2).item() for m in plain.modules()
           if isinstance(m, torch.nn.Conv2d)]
    assert any(abs(s - 1) > 0.2 for s in raw)


COMBOS = [  # (loss, gan section extras, model extras)
    ("non-saturating", {}, {}),
    ("minimax", {}, {}),
    ("hinge", {}, {}),
    ("least-squares", {}, {}),
    ("wasserstein", {"gradient_penalty": 10.0}, {"spectral_norm": True}),
    ("wasserstein", {}, {"spectral_norm": True}),
    ("hinge", {"r1_gamma": 1.0, "r1_every": 1}, {"spectral_norm": True}),
    ("non-saturating", {"diffaugment": "color,translation,cutout"}, {}),
    ("hinge", {"d_steps": 3}, {"spectral_norm": True}),
    ("non-saturating", {}, {"class_head": "acgan"}),
    ("hinge", {"diffaugment": "translation", "d_steps": 2}, {"class_head": "both", "spectral_norm": True}),
]


@pytest.mark.parametrize("name", GAN_MODELS)
@pytest.mark.parametrize("loss,gan,model", COMBOS, ids=[f"{c[0]}-{'-'.join(c[1]) or 'plain'}-{'-'.join(c[2])}" for c in COMBOS])
def test_one_step_of_every_combination_changes_both_networks(name, loss, gan, model):
    size = 28 if name.endswith("dcgan") else 32
    classes = conditional(name)
    cfg = gan_config(name, size, 1, classes, gan={"loss": loss, **gan}, model=model)
    torch.manual_seed(0)
    nets = build_networks(cfg)
    before = {k: copy.deepcopy(v.state_dict()) for k, v in nets.items()}
    opts = make_optimizers(cfg, nets)
    out = gan_step(nets, opts, random_batch(8, size, 1, classes), cfg, Precision(torch.device("cpu"), "fp32", list(nets)))
    assert all(torch.isfinite(v) for v in out.values())
    for k, net in nets.items():
        changed = [n for n, p in net.state_dict().items() if p.dtype.is_floating_point and not torch.equal(p, before[k][n])]
        assert changed, f"{k} did not change"
    if gan.get("gradient_penalty"):
        assert out["gradient_penalty"] > 0
    if gan.get("r1_gamma"):
        assert out["r1_term"] > 0
    if model.get("class_head") in ("acgan", "both") and classes:
        assert "class_loss_d" in out and "class_loss_g" in out


def test_d_steps_update_the_discriminator_that_many_times():
    cfg = gan_config("dcgan", gan={"d_steps": 3})
    nets = build_networks(cfg)
    opts = make_optimizers(cfg, nets)
    gan_step(nets, opts, random_batch(), cfg, Precision(torch.device("cpu"), "fp32", list(nets)))
    step_count = lambda opt: int(next(iter(opt.state.values()))["step"])  # noqa: E731
    assert step_count(opts["discriminator"]) == 3 and step_count(opts["generator"]) == 1
