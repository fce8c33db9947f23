"""Differentiable per-sample image operations used by the ADA pipeline (plain torch, no CUDA plugins).

All functions take x [N, C, H, W] float and per-sample parameters, return [N, C, H, W], and are
differentiable w.r.t. x to second order (R1 through the pipeline needs a double backward). The resampling
and the filter bank follow the official StyleGAN2-ADA pipeline (same wavelets, padding and sampling), so a
batch warped or filtered here matches it to float32 rounding.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# Low-pass (scaling) filters of two orthogonal wavelets, as published (PyWavelets' `dec_lo` reversed, i.e.
# `rec_lo`): Symlet 6 resamples the geometric warp, Symlet 2 (= Daubechies 2) builds the filter bank.
SYM6 = (
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
)
SYM2 = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)

# Fraction of an image's energy assumed to lie in each of the 4 bands (natural images: ~1/f² power, so the
# lowest band dominates). Used to keep the expected energy when the bands are amplified (ADA, Appendix B).
BAND_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)


# ----------------------------------------------------------------------------
# Padding and separable 2x resampling.


def _reflect_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Source index of each position of a reflect-padded axis (edge not repeated), for any padding size."""
    i = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(i)
    i = i.remainder(2 * (n - 1))
    return torch.where(i < n, i, 2 * (n - 1) - i)


def reflect_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Mirror padding without repeating the edge ('reflect'). Pads wider than the image reflect again."""
    h, w = x.shape[-2:]
    if max(left, right) < w and max(top, bottom) < h:
        return F.pad(x, [left, right, top, bottom], mode="reflect")
    x = x.index_select(-1, _reflect_index(w, left, right, x.device))
    return x.index_select(-2, _reflect_index(h, top, bottom, x.device))


def _axis_kernels(taps: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D taps [K] -> depthwise kernels along W [C, 1, 1, K] and along H [C, 1, K, 1]."""
    k = taps.reshape(1, 1, 1, -1).expand(channels, 1, 1, -1)
    return k, k.transpose(2, 3)


def upsample2x(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, 2H, 2W]: zero insertion, then convolution with `taps` (even length K, sum 2 per axis).

    Output sample m of an axis is the full convolution's sample m + K/2 − 1, so the result stays centred on the
    input (the polyphase synthesis step of a wavelet reconstruction).
    """
    kw, kh = _axis_kernels(taps.to(x.dtype), x.shape[1])
    crop = taps.numel() // 2 - 1
    x = F.conv_transpose2d(x, kw, stride=(1, 2), padding=(0, crop), groups=x.shape[1])
    return F.conv_transpose2d(x, kh, stride=(2, 1), padding=(crop, 0), groups=x.shape[1])


def downsample2x(x: torch.Tensor, taps: torch.Tensor, crop: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, (H − 2·crop − K) // 2 + 1, ...]: drop `crop` pixels on every side, correlate with
    `taps` (the time-reversed synthesis filter: the analysis step, adjoint of upsample2x) and keep every other one."""
    kw, kh = _axis_kernels(taps.to(x.dtype), x.shape[1])
    if crop > 0:
        x = x[:, :, crop:-crop, crop:-crop]
    x = F.conv2d(x, kw, stride=(1, 2), groups=x.shape[1])
    return F.conv2d(x, kh, stride=(2, 1), groups=x.shape[1])


@functools.cache
def _sym6() -> torch.Tensor:
    f = torch.tensor(SYM6, dtype=torch.float64)
    return (f / f.sum()).to(torch.float32)  # Sum 1; upsampling multiplies by 2 per axis.


# ----------------------------------------------------------------------------
# Geometric warp.


def _mat3(rows: list[list[float]], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype, device=device)


def _shift(tx: float, ty: float, dtype, device) -> torch.Tensor:
    return _mat3([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype, device)


def _scale(sx: float, sy: float, dtype, device) -> torch.Tensor:
    return _mat3([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], dtype, device)


def warp_margins(g: torch.Tensor, height: int, width: int, border: int) -> list[int]:
    """Reflect padding [left, top, right, bottom] that covers where any sample of the batch reads the input.

    The output's corner pixel centres are mapped through G; the padding reaches the furthest of them plus
    `border` pixels for the resampling filters, at least 0 and at most the image size − 1 (one reflection).
    """
    cx, cy = (width - 1) / 2, (height - 1) / 2
    corners = torch.tensor([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1, 1, 1, 1]], dtype=g.dtype, device=g.device)
    reached = (g @ corners)[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, N·4]
    margin = torch.cat([-reached, reached]).amax(dim=1)  # [left, top, right, bottom] beyond the centre
    margin = margin + torch.tensor([border - cx, border - cy] * 2, dtype=g.dtype, device=g.device)
    margin = margin.clamp(min=0).minimum(torch.tensor([width - 1, height - 1] * 2, dtype=g.dtype, device=g.device))
    return [int(m) for m in margin.ceil().tolist()]


def warp(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """y(p) = x(G·p): G [N, 3, 3] maps output to input pixel coordinates (origin at the image centre).

    Resampled as in the official pipeline: reflect padding wide enough for every sample of the batch, 2x
    upsampling with the Symlet-6 wavelet, bilinear sampling (zeros outside the padded image) on a 2x canvas with
    a 2·q-pixel border (q = 3, a quarter of the 12 taps), and 2x wavelet downsampling that crops the border.
    Upsampling and downsampling with an orthogonal wavelet are each other's adjoint, so a pure integer move is
    exact up to float rounding; the geometry's output does depend on the batch (through the common padding).
    """
    n, c, h, w = x.shape
    taps = _sym6().to(x.device)
    q = taps.numel() // 4
    f32 = dict(dtype=torch.float32, device=x.device)

    left, top, right, bottom = warp_margins(g, h, w, 2 * q)
    x = reflect_pad(x, left, right, top, bottom)
    x = upsample2x(x, taps * 2)  # [N, C, 2(H + top + bottom), 2(W + left + right)]
    out_h, out_w = 2 * (h + 2 * q), 2 * (w + 2 * q)

    # G, re-expressed step by step (output canvas [-1, 1] -> the upsampled input's [-1, 1]): the padded input's
    # centre, then pixels at 2x (the 2x grids' pixel centres sit half a pixel off), then [-1, 1] units.
    g = _shift((left - right) / 2, (top - bottom) / 2, **f32) @ g.to(torch.float32)
    g = _scale(2, 2, **f32) @ g @ _scale(1 / 2, 1 / 2, **f32)
    g = _shift(-0.5, -0.5, **f32) @ g @ _shift(0.5, 0.5, **f32)
    g = _scale(2 / x.shape[3], 2 / x.shape[2], **f32) @ g @ _scale(out_w / 2, out_h / 2, **f32)
    theta = g[:, :2, :]
    grid = F.affine_grid(theta.to(x.dtype), [n, c, out_h, out_w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return downsample2x(x, taps, crop=2 * q - (taps.numel() // 2 - 1))


# ----------------------------------------------------------------------------
# Color.


def apply_color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """[r, g, b]' = M[:3, :3]·[r, g, b] + M[:3, 3], M [N, 4, 4].

    1 channel: the gray value goes in as r = g = b and the mean of the outputs comes back,
    y = x·mean_i Σ_j M_ij + mean_i M_i3.
    """
    n, c, h, w = x.shape
    m = m.to(x.dtype)
    if c == 3:
        return (m[:, :3, :3] @ x.reshape(n, 3, h * w) + m[:, :3, 3:]).reshape(n, c, h, w)
    row = m[:, :3, :].mean(dim=1)  # [N, 4]: the mean output of a gray input
    return x * row[:, :3].sum(dim=1)[:, None, None, None] + row[:, 3, None, None, None]


# ----------------------------------------------------------------------------
# Frequency bands.


@functools.cache
def filter_bank() -> torch.Tensor:
    """Four zero-phase band filters [4, 43] (float32) that sum to a unit impulse; row 0 is the lowest band.

    From the Symlet-2 low-pass h and its mirror g(n) = (−1)ⁿ·h(n), the half-band pair L = (h ⋆ h̃)/2 and
    Hh = (g ⋆ g̃)/2 (⋆ full convolution, ~ time reversal) splits a signal in two: L + Hh = δ. Splitting the low
    half again at each octave (L(z²), L(z⁴): the filters with zeros inserted) gives
    band 3 = Hh(z), band 2 = L(z)·Hh(z²), band 1 = L(z)·L(z²)·Hh(z⁴), band 0 = L(z)·L(z²)·L(z⁴),
    each centred in 43 taps.
    """
    h = torch.tensor(SYM2, dtype=torch.float64)
    g = h * torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)

    def conv(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # Full 1-D convolution.
        return F.conv1d(a[None, None], b.flip(0)[None, None], padding=b.numel() - 1)[0, 0]

    def dilate(a: torch.Tensor, k: int) -> torch.Tensor:  # a(z) -> a(z^k)
        out = torch.zeros((a.numel() - 1) * k + 1, dtype=a.dtype)
        out[::k] = a
        return out

    lo, hi = conv(h, h.flip(0)) / 2, conv(g, g.flip(0)) / 2
    bands = [
        conv(conv(lo, dilate(lo, 2)), dilate(lo, 4)),
        conv(conv(lo, dilate(lo, 2)), dilate(hi, 4)),
        conv(lo, dilate(hi, 2)),
        hi,
    ]
    size = bands[0].numel()
    bank = torch.zeros(4, size, dtype=torch.float64)
    for i, band in enumerate(bands):
        start = (size - band.numel()) // 2
        bank[i, start : start + band.numel()] = band
    return bank.to(torch.float32)


def band_filter(x: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """y = Σ_b gains[n, b]·band_b(x), the separable band filters applied along W then H; gains [N, 4].

    The image is reflect-padded by half the filter length first. All gains 1 = identity (to float rounding).
    """
    n, c, h, w = x.shape
    bank = filter_bank().to(device=x.device)
    taps = (gains.to(torch.float32) @ bank).to(x.dtype).repeat_interleave(c, dim=0)  # [N·C, K]
    pad = bank.shape[1] // 2
    y = reflect_pad(x.reshape(1, n * c, h, w), pad, pad, pad, pad)
    y = F.conv2d(y, taps[:, None, None, :], groups=n * c)
    y = F.conv2d(y, taps[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def band_gains(amplify: torch.Tensor) -> torch.Tensor:
    """g_i = a_i / sqrt(Σ_j power_j·a_j²): amplify band i by a_i [N, 4] at constant expected energy."""
    power = torch.tensor(BAND_POWER, dtype=amplify.dtype, device=amplify.device)
    return amplify / (power * amplify.square()).sum(dim=1, keepdim=True).sqrt()


# ----------------------------------------------------------------------------
# Corruptions.


def add_noise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """y = x + σ_n·ε, ε ~ N(0, I) per pixel (drawn in float32, [N, C, H, W]); sigma [N] or [N, 1, 1, 1]."""
    eps = torch.randn(x.shape, device=x.device)
    return x + (eps * sigma.reshape(-1, 1, 1, 1)).to(x.dtype)


def cutout(x: torch.Tensor, centre: torch.Tensor, size: torch.Tensor | float) -> torch.Tensor:
    """Zero a rectangle of size·(W, H) centred at centre [N, 2] (fractions of the width, height); a pixel is
    kept when its centre lies at least size/2 away on either axis. size: a number or per sample [N]."""
    n, _, h, w = x.shape
    centre = centre.reshape(n, 2).to(torch.float32)
    half = (torch.as_tensor(size, dtype=torch.float32, device=x.device) / 2).reshape(-1, 1)
    xs = (torch.arange(w, device=x.device) + 0.5) / w
    ys = (torch.arange(h, device=x.device) + 0.5) / h
    outside_x = (xs[None, :] - centre[:, 0:1]).abs() >= half  # [N, W]
    outside_y = (ys[None, :] - centre[:, 1:2]).abs() >= half  # [N, H]
    keep = outside_x[:, None, :] | outside_y[:, :, None]  # [N, H, W]
    return x * keep[:, None].to(x.dtype)
