"""Per-batch random crop and flip: correct windows, deterministic in (seed, step), resume-safe."""

from __future__ import annotations

import torch

from genforge.data.base import ImageDataset
from genforge.data.transforms import center_crop, random_crop_flip
from genforge.training.batches import BatchSampler


def test_crop_flip_takes_windows_of_the_original():
    images = torch.randint(0, 256, (16, 3, 10, 10), dtype=torch.uint8)
    out = random_crop_flip(images, 6, True, torch.Generator().manual_seed(3))
    assert out.shape == (16, 3, 6, 6)
    flips = 0
    for img, crop in zip(images, out):
        windows = {(t, left, f) for t in range(5) for left in range(5) for f in (False, True)
                   if torch.equal(crop, (img[:, t:t + 6, left:left + 6].flip(-1) if f else img[:, t:t + 6, left:left + 6]))}
        assert windows, "each output must be a (possibly flipped) 6x6 window of its input"
        flips += any(f for _, _, f in windows)
    assert 0 < flips < 16  # some flipped, some not (probability 1/2 each)


def test_crop_flip_is_a_function_of_the_seed():
    images = torch.randint(0, 256, (8, 1, 9, 9), dtype=torch.uint8)
    a = random_crop_flip(images, 7, True, torch.Generator().manual_seed(11))
    b = random_crop_flip(images, 7, True, torch.Generator().manual_seed(11))
    c = random_crop_flip(images, 7, True, torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_flip_only_keeps_size():
    images = torch.randint(0, 256, (32, 1, 3, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    assert not any(torch.equal(img, img.flip(-1)) for img in images)  # every flip is visible
    out = random_crop_flip(images, 3, True, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    flipped = []
    for img, o in zip(images, out):
        assert torch.equal(o, img) or torch.equal(o, img.flip(-1))
        flipped.append(torch.equal(o, img.flip(-1)))
    assert 0 < sum(flipped) < len(images)  # some flipped, the others unchanged (probability 1/2 each)
    # Without flip, every image comes back unchanged.
    assert torch.equal(random_crop_flip(images, 3, False, torch.Generator().manual_seed(0)), images)


def test_center_crop():
    images = torch.arange(25, dtype=torch.uint8).view(1, 1, 5, 5)
    assert center_crop(images, 3)[0, 0].tolist() == [[6, 7, 8], [11, 12, 13], [16, 17, 18]]


def test_sampler_batches_depend_only_on_seed_and_step():
    data = ImageDataset(torch.randint(0, 256, (40, 3, 12, 12), dtype=torch.uint8), torch.arange(40) % 4)
    first = BatchSampler(data, 8, seed=5, device=torch.device("cpu"), random_crop=8, hflip=True)
    steps = [first(s) for s in range(12)]  # crosses epochs
    fresh = BatchSampler(data, 8, seed=5, device=torch.device("cpu"), random_crop=8, hflip=True)
    resumed = fresh(9)  # a resumed run starts in the middle, with no sampler state
    assert torch.equal(resumed.images, steps[9].images) and torch.equal(resumed.labels, steps[9].labels)
    assert steps[0].images.shape == (8, 3, 8, 8)
    assert not torch.equal(steps[0].images, steps[5].images)


def test_training_with_augmentation_resumes_exactly(tmp_path):
    from genforge.config import replace
    from genforge.training import train
    from tests.conftest import tiny_config  # tests/conftest.py

    cfg = tiny_config("dcgan", steps=4, data={"name": "digits", "image_size": 10, "random_crop": 8, "hflip": True},
                      train={"batch_size": 8, "checkpoint_every": 2, "log_every": 2, "sample_every": 100},
                      gan={"ema_decay": 0})
    whole = train(cfg, tmp_path / "whole", quiet=True)
    half = replace(cfg, train={"steps": 2})
    train(half, tmp_path / "split", quiet=True)
    train(cfg, tmp_path / "split", quiet=True)  # resume from step 2
    from genforge.training import checkpoint as ckpt

    a = ckpt.load_checkpoint(ckpt.list_checkpoints(whole.run_dir)[-1][1])
    b = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "split")[-1][1])
    assert a["config"]["model"]["image_size"] == 8
    for name, state in a["networks"]["generator"].items():
        assert torch.equal(state, b["networks"]["generator"][name]), name
