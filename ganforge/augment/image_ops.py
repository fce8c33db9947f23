"""Differentiable per-sample image operations used by the ADA pipeline (plain torch, no CUDA plugins).

All functions take x [N, C, H, W] float and per-sample parameters, return [N, C, H, W], and are
differentiable w.r.t. x to second order (R1 through the pipeline needs a double backward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.augment.transforms import pixel_to_affine_theta

# Fraction of an image's energy assumed to lie in each of the 4 bands (natural images: ~1/f² power, so the
# lowest band dominates). Used to keep the expected energy when the bands are amplified (ADA, Appendix B).
BAND_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)


def warp(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """y(p) = x(G·p): G [N, 3, 3] maps output to input pixel coordinates (origin at the image centre).

    Resampling is bicubic (Keys, a = −0.75) with reflection outside the image. The official pipeline instead
    pads, upsamples 2x with a sym6 wavelet, samples bilinearly and downsamples 2x: ours is simpler and
    4x cheaper, at the cost of a little more blur at fractional offsets and a small bicubic overshoot
    (|y| ≤ 1.89·max|x|). Pixel-exact for flips, 90° turns (even sides) and integer translations.
    """
    n, c, h, w = x.shape
    theta = pixel_to_affine_theta(g.to(torch.float32), h, w)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False).to(x.dtype)
    return F.grid_sample(x, grid, mode="bicubic", padding_mode="reflection", align_corners=False)


def apply_color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """[r, g, b]' = M[:3, :3]·[r, g, b] + M[:3, 3], M [N, 4, 4].

    1 channel: the gray value goes in as r = g = b and the mean of the outputs comes back,
    y = x·mean_i Σ_j M_ij + mean_i M_i3.
    """
    m = m.to(x.dtype)
    if x.shape[1] == 3:
        return torch.einsum("nij,njhw->nihw", m[:, :3, :3], x) + m[:, :3, 3, None, None]
    gain = m[:, :3, :3].sum(dim=2).mean(dim=1)
    offset = m[:, :3, 3].mean(dim=1)
    return x * gain[:, None, None, None] + offset[:, None, None, None]


def band_weights(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Smooth partition of unity over 4 octave bands of radial frequency r (cycles/pixel): [4, height, width//2 + 1].

    b(r) = clamp(log2(r / (1/16)), 0, 3); band i gets weight max(0, 1 − |b − i|), so the weights sum to 1:
    band 0 ≤ 1/16, then centred on 1/8, 1/4 and 1/2 (Nyquist) cycles/pixel.
    """
    fy = torch.fft.fftfreq(height, device=device)[:, None]
    fx = torch.fft.rfftfreq(width, device=device)[None, :]
    r = torch.sqrt(fx**2 + fy**2).clamp(min=1e-8)
    b = torch.log2(r * 16).clamp(0, 3)
    centres = torch.arange(4, device=device, dtype=b.dtype)[:, None, None]
    return (1 - (b - centres).abs()).clamp(min=0)


def band_filter(x: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Y = Σ_i gains[n, i]·band_i(X) in the Fourier domain; gains [N, 4]. All gains 1 = identity.

    The image is mirrored to 2H x 2W first so the FFT's periodic extension has no seams at the borders.
    """
    n, c, h, w = x.shape
    mirrored = torch.cat([x, x.flip(-1)], dim=-1)
    mirrored = torch.cat([mirrored, mirrored.flip(-2)], dim=-2)  # [N, C, 2H, 2W]
    spectrum = torch.fft.rfft2(mirrored)
    response = torch.einsum("nb,bhw->nhw", gains.to(x.dtype), band_weights(2 * h, 2 * w, x.device).to(x.dtype))
    y = torch.fft.irfft2(spectrum * response[:, None], s=(2 * h, 2 * w))
    return y[..., :h, :w]


def band_gains(amplify: torch.Tensor) -> torch.Tensor:
    """g_i = a_i / sqrt(Σ_j power_j·a_j²): amplify band i by a_i [N, 4] at constant expected energy."""
    power = torch.tensor(BAND_POWER, dtype=amplify.dtype, device=amplify.device)
    return amplify / (amplify.square() * power).sum(dim=1, keepdim=True).sqrt()


def add_noise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """y = x + σ_n·ε, ε ~ N(0, I) per pixel; sigma [N]."""
    return x + torch.randn_like(x) * sigma.to(x.dtype)[:, None, None, None]


def cutout(x: torch.Tensor, centre: torch.Tensor, size: float) -> torch.Tensor:
    """Zero a rectangle of size·(W, H) centred at centre [N, 2] (fractions of the width, height)."""
    n, _, h, w = x.shape
    ys = (torch.arange(h, device=x.device, dtype=x.dtype) + 0.5) / h
    xs = (torch.arange(w, device=x.device, dtype=x.dtype) + 0.5) / w
    centre = centre.to(x.dtype)
    outside_x = (xs[None, :] - centre[:, 0:1]).abs() >= size / 2  # [N, W]
    outside_y = (ys[None, :] - centre[:, 1:2]).abs() >= size / 2  # [N, H]
    keep = outside_x[:, None, :] | outside_y[:, :, None]  # [N, H, W]
    return x * keep[:, None].to(x.dtype)
