"""GAN training through the loop: exact resume with the stateful-looking options, extra batches,
and refused configurations."""

from __future__ import annotations

import pytest
import torch

from genforge.config import PRESETS
from genforge.data import load_dataset
from genforge.errors import GenforgeError
from genforge.families.registry import resolve_config  # checks the GAN family's setting pairs too
from genforge.training import checkpoint as ckpt
from genforge.training import train
from genforge.training.batches import BatchSampler


def tiny(steps: int, **sections):
    base = {"model": {"name": "cdcgan", "width": 8, "latent_dim": 8, "spectral_norm": True, "class_head": "both"},
            "data": {"name": "mnist-5k"},
            "train": {"steps": steps, "batch_size": 8, "log_every": 2, "sample_every": 100, "checkpoint_every": 2,
                      "device": "cpu"},
            "gan": {"loss": "hinge", "d_steps": 2, "r1_gamma": 1.0, "r1_every": 3,
                    "diffaugment": "color,translation,cutout"}}
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    return resolve_config(overrides=[base])


def final_state(run_dir):
    payload = ckpt.load_checkpoint(ckpt.list_checkpoints(run_dir)[-1][1])
    return payload["networks"], payload["ema"]["generator"]["model"]


def test_resume_is_bit_identical_with_d_steps_lazy_r1_and_diffaugment(tmp_path):
    """6 steps in one go equal 4 steps + a resumed run to 6: the extra D batches, the lazy R1
    schedule and the augmentation draws all follow from (seed, step) and the saved RNG states."""
    train(tiny(6), tmp_path / "full", quiet=True)
    train(tiny(4), tmp_path / "split", quiet=True)
    train(tiny(6), tmp_path / "split", quiet=True)
    (nets_a, ema_a), (nets_b, ema_b) = final_state(tmp_path / "full"), final_state(tmp_path / "split")
    for name in nets_a:
        for key, value in nets_a[name].items():
            assert torch.equal(value, nets_b[name][key]), f"{name}.{key}"
    assert ema_a.keys() == ema_b.keys()
    assert all(torch.equal(v, ema_b[k]) for k, v in ema_a.items())


def test_extra_batches_depend_only_on_seed_step_and_index():
    data = load_dataset("mnist-5k", split="test")
    a = BatchSampler(data, 16, seed=3, device=torch.device("cpu"))
    b = BatchSampler(data, 16, seed=3, device=torch.device("cpu"))
    first = a(7)
    assert first.step == 7
    assert torch.equal(first.extra(1).images, b.extra(7, 1).images)
    assert torch.equal(first.extra(1).labels, b(7).extra(1).labels)
    assert not torch.equal(first.extra(1).images, first.extra(2).images)
    assert not torch.equal(first.extra(1).images, a(8).extra(1).images)
    assert len(set(a.extra(7, 1).images.flatten(1).sum(1).tolist())) > 1


def test_plain_gan_step_is_the_foundations_step():
    """With d_steps=1 and no regulariser, gan_step does exactly what the foundation's step did
    (written out here as the reference): same random draws, same updates, bit for bit."""
    from genforge import losses
    from genforge.families.gan.step import gan_step
    from genforge.families.registry import build_networks
    from genforge.imageio import to_signed
    from genforge.runtime import Precision
    from genforge.training.optim import make_optimizers

    from .conftest import gan_config, random_batch

    cfg = gan_config("dcgan")
    batch = random_batch()

    def fresh():
        torch.manual_seed(0)
        nets = build_networks(cfg)
        return nets, make_optimizers(cfg, nets)

    nets, opts = fresh()
    torch.manual_seed(1)
    gan_step(nets, opts, batch, cfg, Precision(torch.device("cpu"), "fp32", list(nets)))

    ref, ref_opts = fresh()
    torch.manual_seed(1)
    real = to_signed(batch.images)
    z = torch.randn(real.shape[0], cfg.model.latent_dim)
    fake = ref["generator"](z)
    loss_d = losses.discriminator_loss(ref["discriminator"](real), ref["discriminator"](fake.detach()))
    ref_opts["discriminator"].zero_grad()
    loss_d.backward()
    ref_opts["discriminator"].step()
    ref["discriminator"].requires_grad_(False)
    loss_g = losses.generator_loss_non_saturating(ref["discriminator"](fake))
    ref_opts["generator"].zero_grad()
    loss_g.backward()
    ref_opts["generator"].step()

    for name in nets:
        for key, value in nets[name].state_dict().items():
            assert torch.equal(value, ref[name].state_dict()[key]), f"{name}.{key}"


@pytest.mark.parametrize("overrides,message", [
    ({"gan": {"loss": "wasserstein"}}, "Lipschitz"),
    ({"gan": {"gradient_penalty": 10.0, "r1_gamma": 1.0}}, "keep one"),
    ({"gan": {"gradient_penalty": 10.0}}, "batch norm"),
    ({"gan": {"r1_gamma": 1.0}}, "batch norm"),
    ({"gan": {"diffaugment": "color,flip"}}, "flip"),
    ({"gan": {"loss": "softmax"}}, "gan.loss"),
    ({"gan": {"d_steps": 0}}, "d_steps"),
    ({"model": {"class_head": "nope"}}, "class_head"),
    ({"model": {"spectral_norm": "maybe"}}, "spectral_norm"),
])
def test_incompatible_or_bad_settings_are_one_line_errors(overrides, message):
    with pytest.raises(GenforgeError, match=message) as info:
        resolve_config(overrides=[{"model": {"name": "dcgan"}}, overrides])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("overrides,expected", [
    ({"model": {"name": "dcgan", "spectral_norm": True}, "gan": {"loss": "wasserstein"}},
     {"model": {"name": "dcgan", "spectral_norm": True}, "gan": {"loss": "wasserstein", "gradient_penalty": 0.0}}),
    ({"model": {"name": "dcgan", "spectral_norm": "true"}, "gan": {"gradient_penalty": 10}},
     {"model": {"name": "dcgan", "spectral_norm": True}, "gan": {"gradient_penalty": 10.0}}),
    ({"model": {"name": "resnet-gan"}, "gan": {"loss": "wasserstein", "gradient_penalty": 10}},
     {"model": {"name": "resnet-gan", "spectral_norm": False}, "gan": {"loss": "wasserstein", "gradient_penalty": 10.0}}),
    ({"model": {"name": "resnet-cgan"}, "gan": {"r1_gamma": 1, "r1_every": 16}},
     {"model": {"name": "resnet-cgan"}, "gan": {"r1_gamma": 1.0, "r1_every": 16, "gradient_penalty": 0.0}}),
    # GAN settings are ignored by VAEs (kept in the config, never refused)
    ({"model": {"name": "vae-mlp"}, "gan": {"loss": "wasserstein"}},
     {"model": {"name": "vae-mlp"}, "gan": {"loss": "wasserstein"}}),
])
def test_compatible_pairs_pass(overrides, expected):
    cfg = resolve_config(overrides=[overrides])
    for section, values in expected.items():
        for key, value in values.items():
            actual = getattr(getattr(cfg, section), key)
            assert actual == value and type(actual) is type(value), f"{section}.{key}: {actual!r} != {value!r}"


@pytest.mark.parametrize("preset", ["demo-dcgan", "dcgan-mnist", "cgan-mnist", "acgan-mnist", "sngan-cifar",
                                    "sngan-cifar-diffaug", "wgan-gp-cifar", "cgan-cifar", "cdcgan-cifar"])
def test_gan_presets_resolve(preset):
    cfg = resolve_config(preset)
    assert cfg.model.name in ("dcgan", "cdcgan", "resnet-gan", "resnet-cgan")
    # Every setting the preset names is what the resolved configuration carries (not only the model).
    resolved = cfg.to_dict()
    for section, values in PRESETS[preset].items():
        for key, value in values.items():
            assert resolved[section][key] == value, f"{preset}: {section}.{key} is {resolved[section][key]!r}, not {value!r}"
