"""The family contract, checked on every registered model with a tiny configuration: shapes,
determinism under a seed, state-dict round trip, one step changes every trained network, sample
range, and exact resume through the real train()."""

from __future__ import annotations

import pytest
import torch

from genforge.conditioning import Condition
from genforge.config import replace
from genforge.data import DATASETS, ImageDataset, register_dataset
from genforge.families import registry
from genforge.families.contract import SampleRequest
from genforge.rundir import list_checkpoints, load_checkpoint
from genforge.runtime import Precision
from genforge.training import train
from genforge.training.batches import BatchSampler
from genforge.training.optim import make_optimizers

CPU = torch.device("cpu")
SIZE, CLASSES, N = 32, 3, 24
DATASET = "contract-tiny"


def tiny_data(root=None, split="train") -> ImageDataset:
    """24 random 32x32 grey images with 3 classes, paired targets (the inverted images) and captions."""
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    images = torch.randint(0, 256, (N, 1, SIZE, SIZE), generator=g, dtype=torch.uint8)
    labels = torch.arange(N) % CLASSES
    captions = [[f"a picture of class {i % CLASSES}", f"class {i % CLASSES} number {i}"] for i in range(N)]
    return ImageDataset(images, labels, [f"c{i}" for i in range(CLASSES)], DATASET, targets=255 - images,
                        captions=captions)


@pytest.fixture(autouse=True, scope="module")
def tiny_dataset():
    register_dataset(DATASET, tiny_data)
    yield
    DATASETS.pop(DATASET, None)


def config(name: str, steps: int = 4):
    cfg = registry.resolve_config(overrides=[{
        "model": {"name": name, "width": 8 if registry.MODELS[name].width < 100 else 16,
                  **({"latent_dim": 4} if registry.MODELS[name].latent_dim else {})},
        "data": {"name": DATASET},
        "text": {"width": 8, "layers": 1, "heads": 2, "context": 8},
        "train": {"steps": steps, "batch_size": 4, "log_every": 2, "sample_every": 2, "checkpoint_every": 2,
                  "device": "cpu", "precision": "fp32"},
    }])
    return registry.resolve_model(cfg, registry.load_data(cfg))


def build(cfg, seed: int = 0):
    torch.manual_seed(seed)
    return registry.build_networks(cfg)


def one_step(cfg, nets, step: int = 0):
    family = registry.family_of(cfg)
    opts = make_optimizers(cfg, nets)
    sampler = BatchSampler(registry.load_data(cfg), cfg.train.batch_size, 0, CPU)
    state = family.make_state(cfg) if family.make_state else None
    torch.manual_seed(step)
    return family.step(nets, opts, sampler(step), cfg, Precision(CPU, "fp32", list(nets)), state)


def request(cfg, n: int = 6, seed: int = 0) -> SampleRequest:
    """A sampling request the model can answer: latents from the seed, labels or source images as it needs."""
    spec = registry.model_spec(cfg.model.name)
    labels = torch.arange(n) % CLASSES if "labels" in spec.conditions else None
    image = tiny_data(split="test").images[:n] if "image" in spec.conditions else None
    options = {"prompt": [f"class {i % CLASSES}" for i in range(n)]} if "text" in spec.conditions else {}
    return SampleRequest(n, seed, Condition(labels=labels, image=image), options=options)


MODELS = sorted(registry.MODELS)


def test_every_model_is_covered():
    """The parametrisation below is the registry itself: a new model gets these tests by registering."""
    assert MODELS and set(MODELS) == set(registry.MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_sample_shape_range_and_determinism(name):
    cfg = config(name)
    family = registry.family_of(cfg)
    nets = build(cfg)
    a = registry.sample(family, nets, request(cfg, seed=3), cfg)
    b = registry.sample(family, build(cfg), request(cfg, seed=3), cfg)  # same init seed, same request
    assert a.shape == (6, 1, SIZE, SIZE)
    assert a.min() >= 0 and a.max() <= 1 and torch.isfinite(a).all()
    assert torch.equal(a, b)
    if family.from_noise:  # another seed draws other images
        assert not torch.equal(a, registry.sample(family, nets, request(cfg, seed=4), cfg))


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip(name):
    cfg = config(name)
    nets, fresh = build(cfg, seed=0), build(cfg, seed=1)
    for key in nets:
        fresh[key].load_state_dict(nets[key].state_dict())
        for (k, v), (k2, v2) in zip(nets[key].state_dict().items(), fresh[key].state_dict().items()):
            assert k == k2 and torch.equal(v, v2), f"{key}.{k}"


@pytest.mark.parametrize("name", MODELS)
def test_one_step_changes_every_network_and_is_deterministic(name):
    cfg = config(name)
    nets = build(cfg)
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in nets.items()}
    losses = one_step(cfg, nets)
    assert losses and all(torch.isfinite(v).all() and not v.requires_grad for v in losses.values())
    for n, net in nets.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[n], net.parameters())), f"{n} did not change"
    again = build(cfg)
    losses_again = one_step(cfg, again)
    assert {k: v.item() for k, v in losses.items()} == {k: v.item() for k, v in losses_again.items()}
    for n in nets:
        for a, b in zip(nets[n].parameters(), again[n].parameters()):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", MODELS)
def test_exact_resume_through_train(name, tmp_path):
    cfg = config(name, steps=4)
    train(cfg, tmp_path / "straight", quiet=True)
    half = replace(cfg, train={"steps": 2})
    train(half, tmp_path / "resumed", quiet=True)
    train(cfg, tmp_path / "resumed", quiet=True)  # rerun the same command with more steps: resumes at 2
    a = load_checkpoint(list_checkpoints(tmp_path / "straight")[-1][1])
    b = load_checkpoint(list_checkpoints(tmp_path / "resumed")[-1][1])
    assert a["step"] == b["step"] == 4
    for part in ("networks", "ema"):
        for net, state in a[part].items():
            for key, value in state.items() if part == "networks" else state["model"].items():
                other = b[part][net][key] if part == "networks" else b[part][net]["model"][key]
                assert torch.equal(value, other), f"{part} {net}.{key}"
    assert a["family_state"] == b["family_state"]


@pytest.mark.parametrize("name", MODELS)
def test_every_optimiser_steps_through_backward_step(name):
    # Under torchrun the gradients are averaged in Precision.backward_step's hook: a step that
    # called optimizer.step() itself would train every rank apart without any error.
    cfg = config(name)
    nets = build(cfg)
    family = registry.family_of(cfg)
    opts = make_optimizers(cfg, nets)
    hooked = []
    precision = Precision(CPU, "fp32", list(nets), grad_hook=lambda n, opt: hooked.append((n, opt)))
    stepped = {n: 0 for n in opts}
    for n, opt in opts.items():
        opt.register_step_post_hook(lambda opt, args, kwargs, n=n: stepped.__setitem__(n, stepped[n] + 1))
    sampler = BatchSampler(registry.load_data(cfg), cfg.train.batch_size, 0, CPU)
    family.step(nets, opts, sampler(0), cfg, precision, family.make_state(cfg) if family.make_state else None)
    assert {n for n, _ in hooked} == set(opts)
    assert all(opts[n] is opt for n, opt in hooked)
    assert stepped == {n: sum(1 for m, _ in hooked if m == n) for n in opts}  # no optimiser step bypasses the hook
