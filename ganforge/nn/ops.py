"""Parameter-free math of StyleGAN2, written with plain torch ops (no custom CUDA/C++).

The formulas follow the official StyleGAN2-ADA definitions so official weights give the same
outputs: bias + activation with gains and clamp, FIR up/down-sampling with the [1,3,3,1] filter,
resampling convolutions, modulated convolution with demodulation, 2nd-moment normalization and
minibatch standard deviation.

Each op has a plain reference formulation (the official one, step by step) and, by default, a fast
path with the same math: FIR filters as single depthwise convolutions whose derivatives of every order
are depthwise convolutions again (R1 and path length differentiate twice), demodulation coefficients
from one matmul, biases inside the convolutions and activations in place, channels_last activations
on CPUs. The ops that have both take `fast=False` for the reference formulation; a network passes the
choice it was built with (`ganforge.nn.numerics`). tests/test_fast_paths.py compares the two.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def preferred_layout(x: torch.Tensor, *, fast: bool = True) -> torch.Tensor:
    """Activations channels_last (NHWC) on CPUs under the fast paths, else unchanged.

    oneDNN's convolutions and their backward passes run 5-25% faster on NHWC than on NCHW tensors
    (fewer reorders); elementwise ops and the depthwise FIR filters keep the layout of their input.
    """
    if fast and x.ndim == 4 and x.device.type == "cpu":
        return x.contiguous(memory_format=torch.channels_last)
    return x


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


def scale_bias_act_(
    x: torch.Tensor,
    scale: torch.Tensor | None,  # Broadcastable to x (e.g. [N, C, 1, 1]); None = 1.
    b: torch.Tensor | None,  # Broadcastable to x; None = 0.
    gain: float,  # Positive: lrelu(x)·g = lrelu(x·g) lets the gain move inside the activation.
    act: str = "lrelu",  # lrelu | linear.
    clamp: float | None = None,
    noise: torch.Tensor | None = None,  # Broadcastable to x, added before the bias.
) -> torch.Tensor:
    """clamp(act(x·scale + noise + b) · gain, ±clamp): one addcmul, then in place (noise, clamp, activation).

    The first op always makes a fresh tensor, so the in-place ops never touch the caller's x. The reference
    path takes six passes (scale, noise, bias, activation, gain, clamp) and keeps more tensors for backward.
    """
    if scale is not None:
        scale = scale * gain
    if b is not None:
        b = b * gain
    if scale is not None and b is not None:
        x = torch.addcmul(b, x, scale)
    elif scale is not None:
        x = x * scale
    elif b is not None:
        x = torch.add(b, x, alpha=gain) if gain != 1 else x + b
    else:
        x = x * gain
    if noise is not None:
        x = x.add_(noise.to(x.dtype) * gain)
    return activate_(x, act, clamp)


def activate_(x: torch.Tensor, act: str = "lrelu", clamp: float | None = None, gain: float = 1.0) -> torch.Tensor:
    """clamp(act(x)·gain, ±clamp) in place, for lrelu | linear and gain > 0 (= act(x·gain)).

    x must be a fresh tensor that only the caller holds.
    """
    # hardtanh_, not clamp_: its backward is one pass over the result, where clamp_ keeps a copy of its input
    # and takes four passes. An in-place op after leaky_relu_ would overwrite the result it keeps for backward.
    clamp = clamp if clamp is not None and clamp >= 0 else None
    if act == "lrelu" and gain != 1:
        x = F.leaky_relu_(x, 0.2) * gain  # The official rounding order; the product is a fresh tensor.
        return x if clamp is None else F.hardtanh_(x, -clamp, clamp)
    if gain != 1:
        x = x.mul_(gain)
    if clamp is not None:  # clamp(lrelu(y), ±c) = lrelu(clamp(y, -c/0.2, c)).
        x = F.hardtanh_(x, -clamp / 0.2 if act == "lrelu" else -clamp, clamp)
    return F.leaky_relu_(x, 0.2) if act == "lrelu" else x


# ----------------------------------------------------------------------------
# FIR filtering.


class _DepthwiseConv(torch.autograd.Function):
    """Depthwise conv2d with a fixed filter k [C, 1, kh, kw], whose input gradient is the transposed conv.

    Autograd's own double backward of a grouped convolution loops over the groups (one small conv per
    channel: ~10x slower for R1 and path-length regularization); here every derivative is again a
    depthwise (transposed) convolution.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
        ctx.save_for_backward(k)
        ctx.stride, ctx.pad = stride, pad
        ctx.out_pad = ((x.shape[2] + 2 * pad - k.shape[2]) % stride, (x.shape[3] + 2 * pad - k.shape[3]) % stride)
        return F.conv2d(x, k, stride=stride, padding=pad, groups=x.shape[1])

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (k,) = ctx.saved_tensors
        dx = _DepthwiseConvT.apply(dy, k, ctx.stride, ctx.pad, ctx.out_pad) if ctx.needs_input_grad[0] else None
        return dx, None, None, None


class _DepthwiseConvT(torch.autograd.Function):
    """The adjoint of _DepthwiseConv: conv_transpose2d with the same filter, stride and padding (= crop)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: torch.Tensor, stride: int, pad: int, out_pad: tuple[int, int]):
        ctx.save_for_backward(k)
        ctx.stride, ctx.pad = stride, pad
        return F.conv_transpose2d(x, k, stride=stride, padding=pad, output_padding=out_pad, groups=x.shape[1])

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (k,) = ctx.saved_tensors
        dx = _DepthwiseConv.apply(dy, k, ctx.stride, ctx.pad) if ctx.needs_input_grad[0] else None
        return dx, None, None, None, None


def _depthwise_conv(x: torch.Tensor, k: torch.Tensor, stride: int, pad: int, transpose: bool = False) -> torch.Tensor:
    """The custom autograd pair where a graph is recorded; plain ops otherwise (inference, tracing, export)."""
    if torch.is_grad_enabled() and x.requires_grad:
        if transpose:
            return _DepthwiseConvT.apply(x, k, stride, pad, (0, 0))
        return _DepthwiseConv.apply(x, k, stride, pad)
    if transpose:
        return F.conv_transpose2d(x, k, stride=stride, padding=pad, groups=x.shape[1])
    return F.conv2d(x, k, stride=stride, padding=pad, groups=x.shape[1])


def _upfirdn2d_fast(x, f, up, down, padding, gain):
    """upfirdn2d as one depthwise conv: strided conv for down, strided transposed conv for up (no zero insertion).

    Symmetric padding (every use in the networks) goes into the convolution itself: no padded copy.
    """
    c, (fh, fw) = x.shape[1], f.shape
    x0, x1, y0, y1 = padding
    k = (f * gain).to(x.dtype)
    if up > 1:
        # Zero insertion + true convolution with k = conv_transpose2d with the unflipped k ("full" output,
        # length (H-1)·up + fh); upfirdn2d's output o is full[o + fh - 1 - y0]: crop or zero-pad to it.
        h, w = x.shape[2:]
        kt = k[None, None].expand(c, 1, fh, fw).contiguous()
        oh, ow = h * up + y0 + y1 - fh + 1, w * up + x0 + x1 - fw + 1
        sy, sx = fh - 1 - y0, fw - 1 - x0
        ey, ex = (h - 1) * up + fh - oh - sy, (w - 1) * up + fw - ow - sx  # Crop at the end.
        if sy == sx == ey == ex and sy >= 0:
            return _depthwise_conv(x, kt, up, sy, transpose=True)
        return F.pad(_depthwise_conv(x, kt, up, 0, transpose=True), [-sx, -ex, -sy, -ey])
    # Convolution (not correlation) with the filter: flip it.
    kc = k.flip([0, 1])[None, None].expand(c, 1, fh, fw).contiguous()
    if x0 == x1 == y0 == y1 and x0 >= 0:
        return _depthwise_conv(x, kc, down, x0)
    return _depthwise_conv(F.pad(x, [x0, x1, y0, y1]), kc, down, 0)  # Negative padding = crop.


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
    *,
    fast: bool = True,
) -> torch.Tensor:
    """Upsample (zero insertion), pad (x0, x1, y0, y1; negative = crop), convolve with f, downsample.

    [N, C, H, W] -> [N, C, (H·up + y0 + y1 - fh) // down + 1, (W·up + x0 + x1 - fw) // down + 1].
    """
    if fast and (up == 1 or down == 1):
        return _upfirdn2d_fast(x, f, up, down, padding, gain)
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


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2, *, fast: bool = True) -> torch.Tensor:
    """2× FIR upsampling with gain up² (keeps the mean)."""
    fh, fw = f.shape
    pad = ((fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2)
    return upfirdn2d(x, f, up=up, padding=pad, gain=up**2, fast=fast)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2, *, fast: bool = True) -> torch.Tensor:
    """2× FIR downsampling."""
    fh, fw = f.shape
    pad = ((fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2)
    return upfirdn2d(x, f, down=down, padding=pad, fast=fast)


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
    bias: torch.Tensor | None = None,  # [O], added to the output (inside the conv where possible).
    *,
    fast: bool = True,  # False: the reference FIR filtering.
) -> torch.Tensor:
    """Same-padded conv combined with FIR resampling, as official `conv2d_resample`.

    up = 2: transposed stride-2 conv, then the FIR filter with gain 4.
    down = 2: the FIR filter, then a stride-2 conv (1×1 kernels: filter+subsample, then conv).
    """
    if up == 1 and down == 1:
        return F.conv2d(x, w, bias, padding=padding, groups=groups)
    assert f is not None, "resampling needs a FIR filter"
    fh, fw = f.shape
    o, ipg, kh, kw = w.shape
    if down > 1:
        pad = (
            padding + (fw - down + 1) // 2,
            padding + (fw - down) // 2,
            padding + (fh - down + 1) // 2,
            padding + (fh - down) // 2,
        )
        if kh == 1 and kw == 1:
            x = upfirdn2d(x, f, down=down, padding=pad, fast=fast)
            return F.conv2d(x, w, bias, groups=groups)
        x = upfirdn2d(x, f, padding=pad, fast=fast)
        return F.conv2d(x, w, bias, stride=down, groups=groups)
    # Upsampling.
    pad = (
        padding + (fw + up - 1) // 2,
        padding + (fw - up) // 2,
        padding + (fh + up - 1) // 2,
        padding + (fh - up) // 2,
    )
    if kh == 1 and kw == 1:
        x = F.conv2d(x, w, groups=groups)
        x = upfirdn2d(x, f, up=up, padding=pad, gain=up**2, fast=fast)
    else:
        # conv_transpose2d takes [I, O/groups, kh, kw].
        if groups == 1:
            wt = w.transpose(0, 1)
        else:
            wt = w.reshape(groups, o // groups, ipg, kh, kw).transpose(1, 2).reshape(groups * ipg, o // groups, kh, kw)
        x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
        pad = (pad[0] - (kw - 1), pad[1] - (kw - up), pad[2] - (kh - 1), pad[3] - (kh - up))
        x = upfirdn2d(x, f, padding=pad, gain=up**2, fast=fast)
    return x if bias is None else x + bias.reshape(1, -1, 1, 1)


# ----------------------------------------------------------------------------
# Modulated convolution.


def demodulation_coefs(weight: torch.Tensor, styles: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 / sqrt(Σ_ik (s_i · w_oik)² + eps) = rsqrt(s² · Σ_k w²ᵀ + eps): [O, I, kh, kw], [N, I] -> [N, O].

    One [N, I] × [I, O] matmul instead of the [N, O, I, kh, kw] modulated weights (151 MB for 16 samples
    of a 512-channel 3×3 layer, kept alive for backward).
    """
    dtype = torch.promote_types(weight.dtype, styles.dtype)
    return (styles.to(dtype).square() @ weight.to(dtype).square().sum(dim=[2, 3]).t() + eps).rsqrt()


def prefer_fused(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Per-shape choice of the modulated-conv form where the caller leaves it open (measured on CPUs).

    1×1 kernels (ToRGB): fused, as a batched matmul with per-sample [O, I] weights (no pass over x to
    scale it). 3×3: fused only for a single sample (one plain conv with modulated weights); for a batch
    the grouped conv costs more than scaling the activations before and after one shared conv.
    """
    return weight.shape[2] * weight.shape[3] == 1 or x.shape[0] == 1


def modulated_conv2d_parts(
    x: torch.Tensor,  # [N, I, H, W]
    weight: torch.Tensor,  # [O, I, kh, kw]
    styles: torch.Tensor,  # [N, I]
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The modulated conv without its output scaling: (y, dcoefs [N, O] still to multiply, or None).

    The fast path of `modulated_conv2d`; layers fold the returned coefficients into their bias/activation pass.
    """
    n = x.shape[0]
    o, i, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:  # Official fp16 guard, cancelled by demodulation.
        weight = weight * (1 / math.sqrt(i * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    dcoefs = demodulation_coefs(weight, styles) if demodulate else None  # [NO]
    if not fused:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        y = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding)
        return y, dcoefs
    wmod = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [NOIkk]
    if dcoefs is not None:
        wmod = wmod * dcoefs.reshape(n, -1, 1, 1, 1)
    wmod = wmod.to(x.dtype)
    if kh == 1 and kw == 1 and up == 1:  # Batched matmul with per-sample weights, NCHW out.
        h, w = x.shape[2:]
        if x.is_contiguous():
            return torch.bmm(wmod.reshape(n, o, i), x.reshape(n, i, h * w)).reshape(n, o, h, w), None
        y = torch.bmm(x.permute(0, 2, 3, 1).reshape(n, h * w, i), wmod.reshape(n, o, i).transpose(1, 2))  # NHWC
        return y.transpose(1, 2).reshape(n, o, h, w), None
    x = x.reshape(1, -1, *x.shape[2:])  # [1, N·I, H, W]
    y = conv2d_resample(x, wmod.reshape(-1, i, kh, kw), f=resample_filter, up=up, padding=padding, groups=n)
    return y.reshape(n, -1, *y.shape[2:]), None


def modulated_conv2d(
    x: torch.Tensor,  # [N, I, H, W]
    weight: torch.Tensor,  # [O, I, kh, kw]
    styles: torch.Tensor,  # [N, I]
    noise: torch.Tensor | None = None,  # Broadcastable to the output.
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused: bool | None = True,  # None = per-shape choice (prefer_fused) under the fast path, else fused.
    *,
    fast: bool = True,  # False: the reference formulation, step by step.
) -> torch.Tensor:
    """w'_ijk = s_i · w_ijk;  w''_ijk = w'_ijk / sqrt(Σ_ik w'_ijk² + 1e-8)  (StyleGAN2 eqs. 1-3).

    fused=True runs one grouped conv with per-sample weights; fused=False scales activations
    before the shared conv and multiplies the demodulation coefficients after it. Same math.
    """
    if fused is None:
        fused = prefer_fused(x, weight) if fast else True
    if fast:
        y, dcoefs = modulated_conv2d_parts(x, weight, styles, up, padding, resample_filter, demodulate, fused)
        if dcoefs is not None:
            y = y * dcoefs.to(y.dtype).reshape(y.shape[0], -1, 1, 1)
        return y if noise is None else y + noise.to(y.dtype)
    n = x.shape[0]
    o, i, kh, kw = weight.shape
    # Pre-normalize to avoid fp16 overflow (official guard; cancelled by demodulation).
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / math.sqrt(i * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    wmod: torch.Tensor | None = None
    dcoefs = None  # Set iff demodulate.
    if demodulate or fused:
        wmod = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [NOIkk]
        if demodulate:
            dcoefs = (wmod.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [NO]

    if not fused:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding, fast=False)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    assert wmod is not None  # Set above whenever fused.
    if dcoefs is not None:
        wmod = wmod * dcoefs.reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])  # [1, N·I, H, W]
    wmod = wmod.reshape(-1, i, kh, kw)  # [N·O, I, kh, kw]
    x = conv2d_resample(x, wmod.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=n, fast=False)
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
