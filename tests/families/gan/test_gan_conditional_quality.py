"""A short class-conditional run on mnist-5k draws the requested digits well above chance, judged
by a classifier trained here on the real digits (the evaluation package's classifier is not used,
so that this test stands alone)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genforge.data import load_dataset
from genforge.families.registry import resolve_config
from genforge.run import load_run
from genforge.training import train

STEPS = 400
MIN_ACCURACY = 0.5  # chance is 0.1: the margin asserted is 40 points


def digit_classifier() -> tuple[torch.nn.Module, float]:
    """Softmax regression on mnist-5k's 4,500 training digits (full-batch Adam, a second or two);
    returns the model and its accuracy on the 500 test digits."""
    torch.manual_seed(0)
    train_set, test_set = load_dataset("mnist-5k", split="train"), load_dataset("mnist-5k", split="test")
    model = torch.nn.Linear(784, 10)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = train_set.images.flatten(1).float() / 255, train_set.labels
    for _ in range(150):
        opt.zero_grad()
        (F.cross_entropy(model(x), y) + 1e-4 * model.weight.pow(2).sum()).backward()
        opt.step()
    with torch.no_grad():
        accuracy = (model(test_set.images.flatten(1).float() / 255).argmax(1) == test_set.labels).float().mean().item()
    return model, accuracy


@pytest.mark.slow
def test_conditional_run_draws_the_requested_digits(tmp_path):
    classifier, real_accuracy = digit_classifier()
    assert real_accuracy > 0.8  # the judge itself is sound

    cfg = resolve_config(overrides=[{
        "model": {"name": "cdcgan", "width": 16, "latent_dim": 32, "class_head": "both"}, "data": {"name": "mnist-5k"},
        "train": {"steps": STEPS, "batch_size": 32, "lr": 5e-4, "seed": 0, "log_every": 100, "sample_every": STEPS,
                  "checkpoint_every": STEPS, "device": "cpu"}}])
    train(cfg, tmp_path / "run", quiet=True)
    run = load_run(tmp_path / "run")
    labels = torch.arange(10).repeat_interleave(30)
    images = run.sample(len(labels), seed=123, labels=labels)
    with torch.no_grad():
        predicted = classifier(images.flatten(1)).argmax(1)
    accuracy = (predicted == labels).float().mean().item()
    print(f"class accuracy of conditional samples: {accuracy:.3f} (real test digits: {real_accuracy:.3f})")
    assert accuracy >= MIN_ACCURACY
