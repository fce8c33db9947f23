"""Alias-free resampling for StyleGAN3: low-pass filter design and the filtered leaky ReLU.

Karras et al. 2021, "Alias-Free Generative Adversarial Networks": a pointwise nonlinearity creates frequencies
above what the feature map can carry, so each layer runs it at a higher sampling rate between an upsampling
and a downsampling low-pass filter (section 3.2):

    y = D_down( f_d ∗ clamp( lrelu( gain · (f_u ∗ U_up(x + b)) · up² ) ) )

U inserts up-1 zeros between samples (the up² keeps the mean), D keeps every down-th sample, and the filters
are Kaiser-windowed sinc (separable, one row of taps used along x and then y) or jinc (radially symmetric,
2-D) low-passes. Filters are designed once, in float64, and stored as float32 buffers; the ops compute in
the dtype of their input.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------
# Filter design.


def lowpass_filter(
    numtaps: int,  # Taps per side; 1 = no filter (None).
    cutoff: float,  # Cutoff frequency f_c, in the units of fs.
    width: float,  # Transition band width 2·f_h.
    fs: float,  # Sampling rate.
    radial: bool = False,  # Radially symmetric 2-D filter instead of separable taps.
) -> np.ndarray | None:
    """A Kaiser-windowed low-pass: [numtaps] separable taps, [numtaps, numtaps] radial, or None for one tap.

    Separable: scipy's `firwin` (windowed sinc, Kaiser β from the transition width, unit DC gain). Radial: the
    2-D ideal low-pass of a disc of radius f_c, h(r) = f_c · 2·J1(2π f_c r) / (2π f_c r) = J1(2π f_c r) / (π r)
    (a jinc), times the outer product of the same 1-D Kaiser window, scaled to sum 1.
    """
    import scipy.signal
    import scipy.special

    if numtaps < 1:
        raise ValueError(f"numtaps={numtaps}: a filter has at least one tap")
    if numtaps == 1:
        return None
    if not radial:
        return scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
    t = (np.arange(numtaps) - (numtaps - 1) / 2) / fs  # Tap positions, in units of 1/fs.
    r = np.hypot(*np.meshgrid(t, t))
    with np.errstate(invalid="ignore", divide="ignore"):
        f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    f[r == 0] = cutoff  # The limit of J1(2π f_c r) / (π r) at r = 0 (odd tap counts only).
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f *= np.outer(window, window)
    f /= np.sum(f)
    return f


def filter_buffer(f: np.ndarray | None) -> torch.Tensor | None:
    """A designed filter as a float32 tensor (on the current default device, the meta device included)."""
    return None if f is None else torch.tensor(f, dtype=torch.float32)


# ----------------------------------------------------------------------------
# FIR resampling with separable or 2-D filters.


def _filter_conv(x: torch.Tensor, k: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Depthwise convolution (not correlation) of every channel with the 2-D kernel k [kh, kw]."""
    c = x.shape[1]
    weight = k.flip([0, 1]).to(x.dtype)[None, None].expand(c, 1, *k.shape)
    return F.conv2d(x, weight, stride=stride, groups=c)


def upfirdn2d(
    x: torch.Tensor,  # [N, C, H, W]
    f: torch.Tensor | None,  # None = identity; [k] = separable taps (along x, then y); [kh, kw] = 2-D.
    up: int = 1,  # Zero insertion factor.
    down: int = 1,  # Keep every down-th sample of the filtered map.
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),  # (x0, x1, y0, y1) after upsampling; negative = crop.
    gain: float = 1.0,  # Overall gain of the filter (both passes together when separable).
) -> torch.Tensor:
    """Upsample, pad, convolve with f, downsample: [N, C, H, W] -> [N, C, (H·up + y0 + y1 - kh) // down + 1, …]."""
    x0, x1, y0, y1 = padding
    if f is not None and f.ndim == 1:
        # Separable: one axis at a time, each upsampled just before its pass, so the x pass runs over the H input
        # rows instead of H·up rows that are zero but for every up-th one (same sums, 1/up of that pass's work).
        taps = f * math.sqrt(gain)
        x = _filter_conv(_upsample_pad(x, 3, up, x0, x1), taps[None, :], (1, down))
        return _filter_conv(_upsample_pad(x, 2, up, y0, y1), taps[:, None], (down, 1))
    x = _upsample_pad(_upsample_pad(x, 3, up, x0, x1), 2, up, y0, y1)
    if f is None:
        x = x[:, :, ::down, ::down]
        return x * gain if gain != 1 else x
    return _filter_conv(x, f * gain, (down, down))


def _upsample_pad(x: torch.Tensor, dim: int, up: int, lo: int, hi: int) -> torch.Tensor:
    """Along dim 2 (y) or 3 (x): insert up-1 zeros after every sample, then pad (or crop, if negative) lo, hi."""
    if up > 1:
        x = F.pad(x.unsqueeze(dim + 1), [0, 0] * (3 - dim) + [0, up - 1]).flatten(dim, dim + 1)
    if lo or hi:
        x = F.pad(x, [lo, hi] if dim == 3 else [0, 0, lo, hi])
    return x


def filtered_lrelu(
    x: torch.Tensor,  # [N, C, H, W]
    fu: torch.Tensor | None,  # Upsampling filter (see upfirdn2d); None = identity.
    fd: torch.Tensor | None,  # Downsampling filter; None = identity.
    b: torch.Tensor | None,  # [C] bias added first; None = 0.
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),  # Of the upsampled map, as in upfirdn2d.
    gain: float = math.sqrt(2),  # Applied after the upsampling filter, before the clamp.
    slope: float = 0.2,  # Leaky ReLU slope on the negative side; 1 = linear.
    clamp: float | None = None,  # Clamp to ±clamp after the activation; None = off.
) -> torch.Tensor:
    """The alias-free nonlinearity: bias, upsample, lrelu·gain, clamp, downsample (see the module docstring)."""
    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up**2)
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d(x, fd, down=down)
