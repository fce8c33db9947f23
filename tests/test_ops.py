"""Ops against independent, loop-based references written from the published definitions."""

import math

import numpy as np
import pytest
import torch

from ganforge.nn import ops
from ganforge.nn.layers import AdaINStyle, Conv2dLayer, FullyConnectedLayer, adain


def naive_upfirdn2d(x, f, up, down, pad):
    """Zero-insert, pad, true 2-D convolution, subsample: one output pixel at a time (numpy)."""
    x0, x1, y0, y1 = pad
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    p = np.zeros((n, c, h * up + y0 + y1, w * up + x0 + x1))
    p[:, :, y0 : y0 + h * up, x0 : x0 + w * up] = u
    fh, fw = f.shape
    oh, ow = p.shape[2] - fh + 1, p.shape[3] - fw + 1
    out = np.zeros((n, c, oh, ow))
    ff = f[::-1, ::-1]
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = (p[:, :, i : i + fh, j : j + fw] * ff).sum(axis=(2, 3))
    return out[:, :, ::down, ::down]


def test_setup_filter_is_normalized_outer_product():
    f = ops.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4)
    assert torch.allclose(f, torch.tensor([1.0, 3, 3, 1]).outer(torch.tensor([1.0, 3, 3, 1])) / 64)


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (1, 1, (1, 2, 0, 1))])
def test_upfirdn2d_matches_naive(up, down, pad):
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    f = torch.rand(4, 4, dtype=torch.float64)  # Asymmetric, so a flip error would show.
    y = ops.upfirdn2d(x, f, up=up, down=down, padding=pad)
    ref = naive_upfirdn2d(x.numpy(), f.numpy(), up, down, pad)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)


def test_up_and_down_sampling_keep_constant_images():
    f = ops.setup_filter()
    x = torch.full([1, 2, 8, 8], 3.0, dtype=torch.float64)
    up = ops.upsample2d(x, f)
    down = ops.downsample2d(x, f)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    # Away from the zero-padded border the gain keeps the mean exactly.
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.tensor(3.0, dtype=torch.float64))
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.tensor(3.0, dtype=torch.float64))


def test_bias_act_gain_then_clamp():
    x = torch.tensor([[-2.0, 0.5, 300.0]]).reshape(1, 3, 1, 1)
    b = torch.tensor([0.0, 0.5, 0.0])
    y = ops.bias_act(x, b, act="lrelu", clamp=256 * math.sqrt(2)).flatten()
    s2 = math.sqrt(2)
    assert torch.allclose(y, torch.tensor([-0.4 * s2, 1.0 * s2, 256 * s2]))
    assert torch.allclose(ops.bias_act(x, act="linear", clamp=1.0).flatten(), torch.tensor([-1.0, 0.5, 1.0]))


def test_conv2d_resample_sizes_and_same_padding_when_no_resampling():
    x = torch.randn(2, 4, 8, 12)
    w = torch.randn(5, 4, 3, 3)
    f = ops.setup_filter()
    assert ops.conv2d_resample(x, w, f, up=2, padding=1).shape == (2, 5, 16, 24)
    assert ops.conv2d_resample(x, w, f, down=2, padding=1).shape == (2, 5, 4, 6)
    assert ops.conv2d_resample(x, w[:, :, :1, :1], f, up=2).shape == (2, 5, 16, 24)
    assert ops.conv2d_resample(x, w[:, :, :1, :1], f, down=2).shape == (2, 5, 4, 6)
    assert torch.allclose(ops.conv2d_resample(x, w, padding=1), torch.nn.functional.conv2d(x, w, padding=1))


def test_upsampling_conv_equals_fir_upsample_then_convolution():
    """Convolution and FIR filtering commute: away from the border, transposed conv + FIR == FIR upsample + conv."""
    x = torch.randn(1, 3, 5, 7, dtype=torch.float64)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    f = ops.setup_filter().double()
    y = ops.conv2d_resample(x, w, f, up=2, padding=1)
    ref = torch.nn.functional.conv2d(ops.upsample2d(x, f), w.flip([2, 3]), padding=1)
    assert y.shape == ref.shape == (1, 2, 10, 14)
    assert torch.allclose(y[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], atol=1e-10)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_fused_and_unfused_agree_float64(up, demodulate):
    x = torch.randn(3, 4, 6, 5, dtype=torch.float64)
    weight = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    styles = torch.randn(3, 4, dtype=torch.float64)
    noise = torch.randn(3, 1, 6 * up, 5 * up, dtype=torch.float64)
    f = ops.setup_filter().double()
    a = ops.modulated_conv2d(
        x, weight, styles, noise, up=up, padding=1, resample_filter=f, demodulate=demodulate, fused=True
    )
    b = ops.modulated_conv2d(
        x, weight, styles, noise, up=up, padding=1, resample_filter=f, demodulate=demodulate, fused=False
    )
    assert a.shape == (3, 6, 6 * up, 5 * up)
    assert (a - b).abs().max() / b.abs().max() < 1e-5


def test_modulated_conv_matches_explicit_per_sample_weights():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    styles = torch.randn(2, 3, dtype=torch.float64)
    y = ops.modulated_conv2d(x, weight, styles, padding=1)
    for n in range(2):
        w = weight * styles[n].reshape(1, 3, 1, 1)
        w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        ref = torch.nn.functional.conv2d(x[n : n + 1], w, padding=1)
        assert torch.allclose(y[n : n + 1], ref, atol=1e-10)


def test_minibatch_std_matches_loop():
    x = torch.randn(8, 6, 3, 3, dtype=torch.float64)
    y = ops.minibatch_std(x, group_size=4, num_channels=2)
    assert y.shape == (8, 8, 3, 3)
    n_groups = 2
    for i in range(8):
        members = [j for j in range(8) if j % n_groups == i % n_groups]
        for f in range(2):
            g = x[members][:, f * 3 : (f + 1) * 3]
            std = (g.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            assert torch.allclose(y[i, 6 + f], std.expand(3, 3))
    with pytest.raises(ValueError, match="does not divide the batch size 6"):
        ops.minibatch_std(torch.randn(6, 2, 2, 2), group_size=4)


def test_normalize_2nd_moment():
    x = torch.randn(5, 16, dtype=torch.float64) * 7
    y = ops.normalize_2nd_moment(x)
    assert torch.allclose(y.square().mean(dim=1), torch.ones(5, dtype=torch.float64))


def test_equalized_lr_dense_and_conv():
    fc = FullyConnectedLayer(16, 8, lr_multiplier=0.01, bias_init=1)
    # Stored weights are N(0,1)/lr_mul; the effective weight is N(0, 1/fan_in).
    assert 50 < fc.weight.std() < 200
    x = torch.randn(4, 16)
    ref = x @ (fc.weight * 0.01 / 4).t() + fc.bias * 0.01
    assert torch.allclose(fc(x), ref, atol=1e-6)
    conv = Conv2dLayer(4, 6, 3, activation="lrelu")
    xi = torch.randn(2, 4, 5, 5)
    ref = torch.nn.functional.leaky_relu(torch.nn.functional.conv2d(xi, conv.weight / 6, padding=1), 0.2) * 2**0.5
    assert torch.allclose(conv(xi), ref, atol=1e-6)


def test_adain_normalizes_then_styles():
    x = torch.randn(2, 3, 8, 8) * 5 + 2
    y = adain(x, torch.full([2, 3], 2.0), torch.full([2, 3], 0.5))
    assert torch.allclose(y.mean(dim=[2, 3]), torch.full([2, 3], 0.5), atol=1e-5)
    assert torch.allclose(y.std(dim=[2, 3], unbiased=False), torch.full([2, 3], 2.0), atol=1e-4)
    layer = AdaINStyle(w_dim=4, channels=3)
    out = layer(x, torch.zeros(2, 4))  # w = 0: scale 1, bias 0 from the affine's init.
    assert torch.allclose(out.std(dim=[2, 3], unbiased=False), torch.ones(2, 3), atol=1e-4)
