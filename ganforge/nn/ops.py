"""Parameter-free math of StyleGAN2, written with plain torch ops (no custom CUDA/C++).

The formulas follow the official StyleGAN2-ADA definitions so official weights give the same
outputs: bias + activation with gains and clamp, FIR up/down-sampling with the [1,3,3,1] filter,
resampling convolutions, modulated convolution with demodulation, 2nd-moment normalization and
minibatch standard deviation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------
# Bias + activation.

# name -> (function, default gain). Gains keep the output variance of a unit-variance input.
ACTIVATIONS = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, math.sqrt(2)),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), math.sqrt(2)),
    "tanh": (torch.tanh, 1.0),
    "sigmoid": (torch.sigmoid, 1.0),
}


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """y = clamp(act(x + b) · gain, ±clamp); b is per channel (dim 1). The clamp comes after the gain."""
    fn, default_gain = ACTIVATIONS[act]
    if b is not None:
        x = x + b.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    x = fn(x)
    gain = default_gain if gain is None else float(gain)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


# ----------------------------------------------------------------------------
# FIR filtering.


def setup_filter(taps: list[float] | tuple[float, ...] = (1, 3, 3, 1)) -> torch.Tensor:
    """Separable taps -> normalized 2-D filter (outer product, sum 1): [1,3,3,1] -> [4, 4] / 64."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample (zero insertion), pad (x0, x1, y0, y1; negative = crop), convolve with f, downsample.

    [N, C, H, W] -> [N, C, (H·up + y0 + y1 - fh) // down + 1, (W·up + x0 + x1 - fw) // down + 1].
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x0, x1, y0, y1 = padding
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0) : x.shape[2] - max(-y1, 0), max(-x0, 0) : x.shape[3] - max(-x1, 0)]
    # Convolution (not correlation) with the filter: flip it.
    k = (f * gain).to(x.dtype).flip([0, 1])
    k = k[None, None].expand(c, 1, *k.shape)
    return F.conv2d(x, k, stride=down, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """2× FIR upsampling with gain up² (keeps the mean)."""
    fh, fw = f.shape
    pad = ((fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2)
    return upfirdn2d(x, f, up=up, padding=pad, gain=up**2)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """2× FIR downsampling."""
    fh, fw = f.shape
    pad = ((fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2)
    return upfirdn2d(x, f, down=down, padding=pad)


# ----------------------------------------------------------------------------
# Convolution with optional 2× up- or down-sampling.


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,  # [O, I/groups, kh, kw]
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> torch.Tensor:
    """Same-padded conv combined with FIR resampling, as official `conv2d_resample`.

    up = 2: transposed stride-2 conv, then the FIR filter with gain 4.
    down = 2: the FIR filter, then a stride-2 conv (1×1 kernels: filter+subsample, then conv).
    """
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    assert f is not None, "resampling needs a FIR filter"
    fh, fw = f.shape
    o, ipg, kh, kw = w.shape
    if down > 1:
        pad = (padding + (fw - down + 1) // 2, padding + (fw - down) // 2,
               padding + (fh - down + 1) // 2, padding + (fh - down) // 2)
        if kh == 1 and kw == 1:
            x = upfirdn2d(x, f, down=down, padding=pad)
            return F.conv2d(x, w, groups=groups)
        x = upfirdn2d(x, f, padding=pad)
        return F.conv2d(x, w, stride=down, groups=groups)
    # Upsampling.
    pad = [padding + (fw + up - 1) // 2, padding + (fw - up) // 2,
           padding + (fh + up - 1) // 2, padding + (fh - up) // 2]
    if kh == 1 and kw == 1:
        x = F.conv2d(x, w, groups=groups)
        return upfirdn2d(x, f, up=up, padding=tuple(pad), gain=up**2)
    # conv_transpose2d takes [I, O/groups, kh, kw].
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, o // groups, ipg, kh, kw).transpose(1, 2).reshape(groups * ipg, o // groups, kh, kw)
    x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
    pad = (pad[0] - (kw - 1), pad[1] - (kw - up), pad[2] - (kh - 1), pad[3] - (kh - up))
    return upfirdn2d(x, f, padding=pad, gain=up**2)


# ----------------------------------------------------------------------------
# Modulated convolution.


def modulated_conv2d(
    x: torch.Tensor,  # [N, I, H, W]
    weight: torch.Tensor,  # [O, I, kh, kw]
    styles: torch.Tensor,  # [N, I]
    noise: torch.Tensor | None = None,  # Broadcastable to the output.
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused: bool = True,
) -> torch.Tensor:
    """w'_ijk = s_i · w_ijk;  w''_ijk = w'_ijk / sqrt(Σ_ik w'_ijk² + 1e-8)  (StyleGAN2 eqs. 1-3).

    fused=True runs one grouped conv with per-sample weights; fused=False scales activations
    before the shared conv and multiplies the demodulation coefficients after it. Same math.
    """
    n = x.shape[0]
    o, i, kh, kw = weight.shape
    # Pre-normalize to avoid fp16 overflow (official guard; cancelled by demodulation).
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / math.sqrt(i * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    wmod = None
    dcoefs = None
    if demodulate or fused:
        wmod = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [NOIkk]
    if demodulate:
        dcoefs = (wmod.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [NO]

    if not fused:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    if demodulate:
        wmod = wmod * dcoefs.reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])  # [1, N·I, H, W]
    wmod = wmod.reshape(-1, i, kh, kw)  # [N·O, I, kh, kw]
    x = conv2d_resample(x, wmod.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=n)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


# ----------------------------------------------------------------------------
# Normalizations and statistics.


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x²) + eps): PixelNorm (over channels) and the mapping-input normalization."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def minibatch_std(x: torch.Tensor, group_size: int | None = 4, num_channels: int = 1) -> torch.Tensor:
    """Append the mean stddev over groups of G samples as `num_channels` extra feature maps.

    Sample i belongs to group i mod (N / G), as official. [N, C, H, W] -> [N, C + F, H, W].
    """
    n, c, h, w = x.shape
    g = min(group_size, n) if group_size else n
    if n % g != 0:
        raise ValueError(
            f"minibatch-std group size {g} does not divide the batch size {n}: use a batch that is a "
            f"multiple of {g}, or set mbstd_group to a divisor of {n}"
        )
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)  # [GnFcHW]
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [nFcHW]
    y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1)  # [nF11]
    y = y.repeat(g, 1, h, w)  # [NFHW]
    return torch.cat([x, y], dim=1)
