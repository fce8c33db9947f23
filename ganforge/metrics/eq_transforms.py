"""The image operators of the equivariance metrics: integer and fractional translation, rotation and pseudo-rotation
of an image batch, each with the mask of the output pixels that are valid.

Paper: Karras et al., "Alias-Free Generative Adversarial Networks", NeurIPS 2021 (arXiv:2106.12423), appendix E
(operators T_x of E.1 and E.2, R_α and R*_α of E.3). Reference implementation matched: NVlabs/stylegan3
`metrics/equivariance.py` (Lanczos-windowed sinc kernels with a = 3; rotation by 4x upsampling with an oriented
band-limit filter, then bilinear resampling). Images are [N, C, H, W] float; shifts are in units of the image
width/height; angles in radians.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ganforge.nn.filtered import upfirdn2d

LANCZOS_A = 3  # Kernel half-width in pixels (official).


# ----------------------------------------------------------------------------------------------------------------
# Kernels.


def sinc(x: torch.Tensor) -> torch.Tensor:
    """sin(πx) / (πx), 1 at x = 0."""
    y = (x * math.pi).abs()
    return torch.where(y < 1e-30, torch.ones_like(x), torch.sin(y) / y.clamp(1e-30, float("inf")))


def lanczos_window(x: torch.Tensor, a: float) -> torch.Tensor:
    """sinc(x / a) inside |x| < a, 0 outside."""
    x = x.abs() / a
    return torch.where(x < 1, sinc(x), torch.zeros_like(x))


def rotation_matrix(angle: torch.Tensor) -> torch.Tensor:
    """[3, 3] float32 [[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]]: the inverse of an image rotation by `angle`."""
    angle = torch.as_tensor(angle).to(torch.float32)
    mat = torch.eye(3, device=angle.device)
    mat[0, 0], mat[0, 1] = angle.cos(), angle.sin()
    mat[1, 0], mat[1, 1] = -angle.sin(), angle.cos()
    return mat


def filter2d(x: torch.Tensor, f: torch.Tensor, padding: tuple[int, int, int, int] = (0, 0, 0, 0)) -> torch.Tensor:
    """Convolve with the 2-D filter f [fh, fw], zero-padded so the output keeps x's size, plus `padding`
    (x0, x1, y0, y1; negative = crop)."""
    fh, fw = f.shape
    x0, x1, y0, y1 = padding
    return upfirdn2d(x, f, padding=(x0 + fw // 2, x1 + (fw - 1) // 2, y0 + fh // 2, y1 + (fh - 1) // 2))


# ----------------------------------------------------------------------------------------------------------------
# Translation (appendix E.1 and E.2).


def integer_translation(x: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x shifted by (round(tx·W), round(ty·H)) pixels with zeros coming in, mask of the pixels that came from x)."""
    _, _, h, w = x.shape
    ix = int(torch.as_tensor(tx * w).to(torch.float32).round())
    iy = int(torch.as_tensor(ty * h).to(torch.float32).round())
    out, mask = torch.zeros_like(x), torch.zeros_like(x)
    if abs(ix) < w and abs(iy) < h:
        dst = (slice(None), slice(None), slice(max(iy, 0), h + min(iy, 0)), slice(max(ix, 0), w + min(ix, 0)))
        out[dst] = x[:, :, max(-iy, 0) : h + min(-iy, 0), max(-ix, 0) : w + min(-ix, 0)]
        mask[dst] = 1
    return out, mask


def fractional_translation(
    x: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, a: int = LANCZOS_A
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x shifted by (tx·W, ty·H) pixels through a separable Lanczos-windowed sinc kernel of 2a taps, mask of the
    pixels whose whole kernel support lay inside x)."""
    _, _, h, w = x.shape
    sx = torch.as_tensor(tx * w).to(dtype=torch.float32, device=x.device)
    sy = torch.as_tensor(ty * h).to(dtype=torch.float32, device=x.device)
    ix, iy = int(sx.floor()), int(sy.floor())
    fx, fy = sx - ix, sy - iy
    b = a - 1  # Taps before the sample: the kernel covers offsets -b .. a.

    # Filtered image, placed where its support reaches.
    out = torch.zeros_like(x)
    zx0, zy0, zx1, zy1 = max(ix - b, 0), max(iy - b, 0), min(ix + a, 0) + w, min(iy + a, 0) + h
    if zx0 < zx1 and zy0 < zy1:
        taps = torch.arange(a * 2, device=x.device) - b
        kx = (sinc(taps - fx) * sinc((taps - fx) / a))[None, :]  # [1, 2a]
        ky = (sinc(taps - fy) * sinc((taps - fy) / a))[:, None]  # [2a, 1]
        y = filter2d(x, kx / kx.sum(), padding=(b, a, 0, 0))
        y = filter2d(y, ky / ky.sum(), padding=(0, 0, b, a))
        y = y[:, :, max(b - iy, 0) : h + b + a + min(-iy - a, 0), max(b - ix, 0) : w + b + a + min(-ix - a, 0)]
        out[:, :, zy0:zy1, zx0:zx1] = y

    # Valid pixels: the whole kernel inside the source.
    mask = torch.zeros_like(x)
    mx0, my0, mx1, my1 = max(ix + a, 0), max(iy + a, 0), min(ix - b, 0) + w, min(iy - b, 0) + h
    if mx0 < mx1 and my0 < my1:
        mask[:, :, my0:my1, mx0:mx1] = 1
    return out, mask


# ----------------------------------------------------------------------------------------------------------------
# Rotation (appendix E.3).


def bandlimit_filter(
    mat: torch.Tensor,  # [3, 3] affine transform; its 2x2 part orients the output band limit.
    a: int = LANCZOS_A,  # Lanczos window half-width (pixels).
    amax: int = 16,  # Half-width of the returned filter (pixels).
    aflt: int = 64,  # Half-width of the grid the filter is designed on (pixels).
    up: int = 4,  # Taps per pixel.
    cutoff_in: float = 1,  # Band limit of the input, cycles per pixel.
    cutoff_out: float = 1,  # Band limit of the output, in the transformed coordinates.
) -> torch.Tensor:
    """[2·amax·up - 1]² float32 FIR filter: the input's sinc band limit convolved with the transformed output's,
    windowed by the convolution of the two Lanczos windows; each of the up² polyphase components sums to 1/up²."""
    assert a <= amax < aflt
    mat = torch.as_tensor(mat).to(torch.float32)

    # Tap positions in input and output coordinates (centre tap first, for the circular FFT convolutions).
    taps = ((torch.arange(aflt * up * 2 - 1, device=mat.device) + 1) / up - aflt).roll(1 - aflt * up)
    yi, xi = torch.meshgrid(taps, taps, indexing="ij")
    xo, yo = (torch.stack([xi, yi], dim=2) @ mat[:2, :2].t()).unbind(2)

    # Sinc band limits and Lanczos windows, each pair convolved (circularly, through the FFT).
    conv = lambda p, q: torch.fft.ifftn(torch.fft.fftn(p) * torch.fft.fftn(q)).real
    limit = conv(sinc(xi * cutoff_in) * sinc(yi * cutoff_in), sinc(xo * cutoff_out) * sinc(yo * cutoff_out))
    window = conv(lanczos_window(xi, a) * lanczos_window(yi, a), lanczos_window(xo, a) * lanczos_window(yo, a))
    f = limit * window

    # Centre, keep ±amax pixels, normalize each polyphase component.
    c = (aflt - amax) * up
    f = f.roll([aflt * up - 1] * 2, dims=[0, 1])[c:-c, c:-c]
    f = F.pad(f, [0, 1, 0, 1]).reshape(amax * 2, up, amax * 2, up)
    f = f / f.sum([0, 2], keepdim=True) / up**2
    return f.reshape(amax * 2 * up, amax * 2 * up)[:-1, :-1]


def affine_transformation(
    x: torch.Tensor, mat: torch.Tensor, up: int = 4, **filter_kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x resampled by the affine map `mat` [3, 3]: upsampled `up`x through bandlimit_filter, then sampled
    bilinearly; mask of the output pixels that land inside the valid part of the upsampled image)."""
    n, _, h, w = x.shape
    mat = torch.as_tensor(mat).to(dtype=torch.float32, device=x.device)
    f = bandlimit_filter(mat, up=up, **filter_kwargs)
    assert f.ndim == 2 and f.shape[0] == f.shape[1] and f.shape[0] % 2 == 1
    p = f.shape[0] // 2

    # Sampling grid: the inverse map in the [-1, 1] coordinates of the padded, upsampled image.
    theta = mat.inverse()
    theta[:2, 2] *= 2
    theta[0, 2] += 1 / up / w
    theta[1, 2] += 1 / up / h
    theta[0, :] *= w / (w + p / up * 2)
    theta[1, :] *= h / (h + p / up * 2)
    grid = F.affine_grid(theta[:2, :3].unsqueeze(0).repeat([n, 1, 1]), list(x.shape), align_corners=False)

    # Upsample (zero insertion, filter, gain up²; p extra pixels each side), then resample.
    fs = f.shape[0]
    pad = (p + (fs + up - 1) // 2, p + (fs - up) // 2, p + (fs + up - 1) // 2, p + (fs - up) // 2)
    y = upfirdn2d(x, f, up=up, padding=pad, gain=up**2)
    out = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # Valid pixels: away from the border by the filter's reach.
    mask = torch.zeros_like(y)
    c = p * 2 + 1
    mask[:, :, c:-c, c:-c] = 1
    mask = F.grid_sample(mask, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out, mask


def fractional_rotation(x: torch.Tensor, angle: torch.Tensor, a: int = LANCZOS_A) -> tuple[torch.Tensor, torch.Tensor]:
    """R_α: x rotated by `angle` with the oriented band limit, and its valid-pixel mask."""
    angle = torch.as_tensor(angle).to(dtype=torch.float32, device=x.device)
    return affine_transformation(x, rotation_matrix(angle), a=a, amax=a * 2)


def pseudo_rotation(x: torch.Tensor, angle: torch.Tensor, a: int = LANCZOS_A) -> tuple[torch.Tensor, torch.Tensor]:
    """R*_α: x filtered as if it had been rotated by `angle` (the same band limit, no rotation), and its mask."""
    angle = torch.as_tensor(angle).to(dtype=torch.float32, device=x.device)
    f = bandlimit_filter(rotation_matrix(-angle), a=a, amax=a * 2, up=1)
    out = filter2d(x, f)
    mask = torch.zeros_like(out)
    c = f.shape[0] // 2
    mask[:, :, c:-c, c:-c] = 1
    return out, mask
