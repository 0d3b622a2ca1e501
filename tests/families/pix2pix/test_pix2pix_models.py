"""U-Net and PatchGAN: shapes, receptive field, inference-mode behaviour."""

import pytest
import torch

from genforge.config import ModelConfig
from genforge.errors import GenforgeError
from genforge.families.pix2pix.config import Pix2PixConfig
from genforge.families.pix2pix.networks import (
    PatchDiscriminator,
    UNetGenerator,
    build,
    patch_map_size,
    receptive_field,
    unet_depth,
)
from genforge.families.pix2pix.translate import translate_batch


@pytest.mark.parametrize("size, channels, expected_depth", [(32, 1, 5), (64, 3, 6), (48, 3, 4), (256, 1, 8), (24, 1, 3)])
def test_unet_output_shape_equals_input_shape(size, channels, expected_depth):
    nets = build(ModelConfig("pix2pix", width=2, image_size=size, channels=channels))
    generator = nets["generator"]
    assert generator.depth == expected_depth == unet_depth(size)
    x = torch.rand(2, channels, size, size) * 2 - 1
    y = generator(x)
    assert y.shape == x.shape
    assert y.min() >= -1 and y.max() <= 1  # tanh output, the range of the targets


def test_unet_any_size_divisible_by_two_to_the_depth():
    generator = UNetGenerator(1, 1, depth=3, width=2)
    for height, width in ((24, 40), (8, 8)):
        assert generator(torch.zeros(1, 1, height, width)).shape == (1, 1, height, width)


def test_size_not_divisible_by_two_to_the_depth_is_a_user_error():
    with pytest.raises(GenforgeError, match="not divisible by 2\\^4"):
        build(ModelConfig("pix2pix", width=2, image_size=36, channels=1), Pix2PixConfig(depth=4))
    with pytest.raises(GenforgeError, match="data.image_size"):
        unet_depth(18)  # 18 = 2 * 9: one halving only


@pytest.mark.parametrize("size, n_layers, side", [(256, 3, 30), (128, 3, 14), (32, 3, 2), (64, 1, 30), (64, 2, 14)])
def test_patchgan_output_map_size(size, n_layers, side):
    discriminator = PatchDiscriminator(3, 3, width=2, n_layers=n_layers)
    logits = discriminator(torch.zeros(2, 3, size, size), torch.zeros(2, 3, size, size))
    assert logits.shape == (2, 1, side, side) and side == patch_map_size(size, n_layers)


def test_patchgan_sees_70x70_patches_with_three_layers():
    assert receptive_field(3) == 70 and receptive_field(1) == 16
    discriminator = PatchDiscriminator(1, 1, width=2, n_layers=3, norm="batch").eval()
    source = torch.zeros(1, 1, 128, 128, requires_grad=True)
    image = torch.zeros(1, 1, 128, 128, requires_grad=True)
    logits = discriminator(source, image)
    logits[0, 0, 7, 7].backward()
    for grad in (source.grad, image.grad):  # D sees both images of the pair
        touched = grad[0, 0].abs() > 0
        rows, cols = touched.any(1).nonzero().flatten(), touched.any(0).nonzero().flatten()
        assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


def test_too_deep_patchgan_is_a_user_error():
    with pytest.raises(GenforgeError, match="n_layers=4 is too deep"):
        build(ModelConfig("pix2pix", width=2, image_size=16, channels=1), Pix2PixConfig(n_layers=4))


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_inference_mode_is_deterministic_and_dropout_is_off(norm):
    torch.manual_seed(0)
    generator = UNetGenerator(1, 1, depth=4, width=4, norm=norm, dropout=0.5)
    x = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    generator.train()
    x_signed = x.float() / 127.5 - 1
    generator(x_signed)  # one training-mode pass (updates batch-norm running statistics)
    assert not torch.equal(generator(x_signed), generator(x_signed)), "dropout should be active in training"
    first, second = translate_batch(generator, x), translate_batch(generator, x)
    assert torch.equal(first, second)
    # In eval mode an image's output does not depend on the other images of its batch.
    assert torch.equal(translate_batch(generator, x[:1]), first[:1])


def test_dropout_at_inference_is_seeded():
    torch.manual_seed(0)
    generator = UNetGenerator(1, 1, depth=4, width=4, dropout=0.5)
    x = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)
    state = torch.get_rng_state()
    a = translate_batch(generator, x, dropout_seed=1)
    assert torch.equal(torch.get_rng_state(), state), "seeded inference must not move the global RNG"
    assert torch.equal(a, translate_batch(generator, x, dropout_seed=1))
    assert not torch.equal(a, translate_batch(generator, x, dropout_seed=2))
    assert not torch.equal(a, translate_batch(generator, x))
    assert not any(m.training for m in generator.modules()), "translate_batch leaves the model in eval mode"


def test_scores_and_resizes_are_the_same_a_chunk_at_a_time(monkeypatch):
    # Scoring and resizing go a few images at a time to bound memory: the numbers must not change.
    from genforge.data import transforms
    from genforge.families.pix2pix import translate

    gen = torch.Generator().manual_seed(0)
    outputs = torch.rand(10, 3, 16, 16, generator=gen)
    targets = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8, generator=gen)
    whole = translate.score(outputs, targets)
    monkeypatch.setattr(translate, "PIXELS_PER_CHUNK", 3 * 16 * 16)  # 3 images per chunk, the last one short
    assert translate.chunk_size(outputs) == 3
    chunked = translate.score(outputs, targets)
    for k in whole:
        assert torch.allclose(whole[k], chunked[k], atol=1e-6), k
    identity = translate.score(targets, targets)  # uint8 outputs are read as [0, 1] too
    assert float(identity["l1"].max()) == 0 and float(identity["ssim"].min()) > 0.999
    images = torch.randint(0, 256, (7, 3, 20, 20), dtype=torch.uint8, generator=gen)
    assert torch.equal(transforms.resize_uint8(images, 12), transforms.resize_uint8(images, 12, chunk=2))
