"""StyleGAN2's networks against independent computations: the modulated convolution, demodulation,
the two convolution paths, truncation, the shapes of every block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genforge.families.stylegan2.networks import (
    Discriminator,
    Generator,
    MappingNetwork,
    blur,
    downsample2x,
    minibatch_stddev,
    modulated_conv2d,
    truncate,
    upsample2x,
)


def test_modulated_convolution_equals_a_per_sample_convolution_with_modulated_weights():
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 5, 8, 8), torch.randn(7, 5, 3, 3), torch.randn(3, 5)
    for demodulate in (False, True):
        out = modulated_conv2d(x, weight, styles, demodulate=demodulate, grouped=True)
        for i in range(3):  # eq. 1 (and eq. 3) written out for sample i, then a plain convolution
            w = weight * styles[i][None, :, None, None]
            if demodulate:
                w = w / torch.sqrt((w ** 2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
            expected = F.conv2d(x[i:i + 1], w, padding=1)
            torch.testing.assert_close(out[i:i + 1], expected, rtol=1e-5, atol=1e-5)


def test_the_grouped_and_activation_scaling_paths_agree():
    torch.manual_seed(1)
    x, weight, styles = torch.randn(4, 6, 8, 8), torch.randn(9, 6, 3, 3), torch.randn(4, 6) + 1
    for demodulate in (False, True):
        a = modulated_conv2d(x, weight, styles, demodulate, grouped=True)
        b = modulated_conv2d(x, weight, styles, demodulate, grouped=False)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    g = Generator(8, 8, 0, 32, 3, 8, 64, 2)
    z = torch.randn(3, 8)
    torch.testing.assert_close(g(z, grouped=True), g(z, grouped=False), rtol=1e-4, atol=1e-5)


def test_demodulated_outputs_have_unit_variance_for_unit_variance_inputs():
    torch.manual_seed(2)
    # Large spatial maps, 1x1 kernels: each output is a sum of independent unit-variance inputs with
    # unit-norm weights, so its variance is 1 (eq. 2-3 of the paper); 3x3 kernels the same.
    x = torch.randn(2, 64, 64, 64)
    for k in (1, 3):
        out = modulated_conv2d(x, torch.randn(32, 64, k, k), torch.rand(2, 64) * 3 + 0.1, demodulate=True)
        assert abs(out.var(dim=(0, 2, 3)).mean().item() - 1) < 0.05
        assert abs(out.var().item() - 1) < 0.05


def test_truncation_psi_zero_gives_the_average_and_psi_one_changes_nothing():
    torch.manual_seed(3)
    g = Generator(8, 8, 0, 32, 1, 8, 64, 2)
    g.mapping.w_avg.copy_(torch.randn(8))
    z = torch.randn(5, 8)
    ws = g.ws(z)
    assert torch.equal(g.ws(z, psi=1.0), ws)
    torch.testing.assert_close(g.ws(z, psi=0.0), g.mapping.w_avg.expand(5, g.num_ws, 8))
    cut = truncate(ws, g.mapping.w_avg, 0.0, cutoff=2)  # only the first 2 layers move
    torch.testing.assert_close(cut[:, :2], g.mapping.w_avg.expand(5, 2, 8))
    assert torch.equal(cut[:, 2:], ws[:, 2:])
    half = truncate(ws, g.mapping.w_avg, 0.5)
    torch.testing.assert_close(half, g.mapping.w_avg + 0.5 * (ws - g.mapping.w_avg))


def test_the_mapping_network_normalises_z_tracks_w_avg_and_embeds_labels():
    torch.manual_seed(4)
    m = MappingNetwork(4, 6, 3, layers=2)
    z = torch.randn(10, 4)
    torch.testing.assert_close(m(z * 5, torch.zeros(10, dtype=torch.long)), m(z, torch.zeros(10, dtype=torch.long)))
    labels = torch.arange(10) % 3
    assert not torch.allclose(m(z, labels), m(z, (labels + 1) % 3))
    assert torch.equal(m.w_avg, torch.zeros(6))
    w = m(z, labels, update_w_avg=True)
    torch.testing.assert_close(m.w_avg, 0.005 * w.mean(0))
    with pytest.raises(ValueError):
        MappingNetwork(4, 6, 0, layers=0)


def test_lr_multiplier_scales_the_mapping_layers_gradients():
    """Equalised lr with multiplier 0.01: the stored weight is 1/0.01 larger and its effective change
    per unit of stored change is 0.01 x that of a normal layer."""
    torch.manual_seed(5)
    m = MappingNetwork(4, 4, 0, layers=1, lr_mul=0.01)
    layer = m.layers[0]
    assert layer.weight.std() > 20  # N(0, 1) / 0.01
    assert layer.weight_gain == pytest.approx(0.01 / 2)


def test_low_pass_resampling_keeps_constants_and_shapes():
    x = torch.ones(2, 3, 8, 8)
    up, down = upsample2x(x), downsample2x(x)
    assert up.shape == (2, 3, 16, 16) and down.shape == (2, 3, 4, 4)
    torch.testing.assert_close(up[:, :, 2:-2, 2:-2], torch.ones(2, 3, 12, 12))  # gain 4: the mean is kept
    torch.testing.assert_close(down[:, :, 1:-1, 1:-1], torch.ones(2, 3, 2, 2))


def test_separable_filters_equal_the_4x4_binomial_kernel():
    """blur/upsample2x (shifted sums) against a depthwise convolution with outer([1,3,3,1], [1,3,3,1]) / 64."""
    torch.manual_seed(8)
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = (f[:, None] * f[None, :] / 64).expand(3, 1, 4, 4)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(blur(x, (1, 2, 1, 2)), F.conv2d(F.pad(x, (1, 2, 1, 2)), kernel, groups=3))
    zeros = torch.zeros(2, 3, 16, 16)
    zeros[:, :, ::2, ::2] = x
    torch.testing.assert_close(upsample2x(x), F.conv2d(F.pad(zeros, (2, 1, 2, 1)), kernel * 4, groups=3))


def test_minibatch_stddev_appends_the_group_standard_deviation():
    x = torch.randn(8, 3, 4, 4)
    out = minibatch_stddev(x, 4)
    assert out.shape == (8, 4, 4, 4)
    groups = x.reshape(4, 2, 3, 4, 4)
    expected = groups.std(dim=0, unbiased=False).mean(dim=(1, 2, 3))  # one per group, sample i in group i % 2
    torch.testing.assert_close(out[:, 3, 0, 0], expected.repeat(4), rtol=1e-4, atol=1e-5)
    assert minibatch_stddev(torch.randn(6, 3, 4, 4), 4).shape == (6, 4, 4, 4)  # 6 is not divisible by 4: groups of 3


@pytest.mark.parametrize("size", [32, 64])
def test_generator_and_discriminator_shapes_and_conditioning(size):
    torch.manual_seed(6)
    g = Generator(8, 8, 3, size, 3, 4, 32, 2)
    d = Discriminator(size, 3, 4, 32, num_classes=3)
    labels = torch.tensor([0, 1, 2, 0])
    images = g(torch.randn(4, 8), labels)
    assert images.shape == (4, 3, size, size)
    assert g.num_ws == 2 * (size.bit_length() - 1) - 2
    logits = d(images, labels)
    assert logits.shape == (4,)
    assert not torch.allclose(logits, d(images, (labels + 1) % 3))  # the projection uses the label
    assert Discriminator(size, 3, 4, 32)(images).shape == (4,)


def test_noise_modes():
    torch.manual_seed(7)
    g = Generator(8, 8, 0, 32, 1, 4, 32, 2)
    for p in g.parameters():
        if p.ndim == 0:
            p.data.fill_(0.5)  # noise strengths
    z = torch.randn(2, 8)
    assert torch.equal(g(z, noise_mode="const"), g(z, noise_mode="const"))
    assert not torch.equal(g(z, noise_mode="random"), g(z, noise_mode="random"))
    assert not torch.equal(g(z, noise_mode="none"), g(z, noise_mode="const"))
