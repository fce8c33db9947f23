"""Batched homogeneous matrices for ADA: 3x3 for geometry, 4x4 for color.

Geometry matrices act on pixel coordinates [x, y, 1] with the origin at the image centre (x right,
y down); color matrices act on [r, g, b, 1]. Every constructor takes per-sample parameters of shape
[N] and returns [N, k, k], so a pipeline composes one matrix per sample and applies it once.
"""

from __future__ import annotations

import math

import torch

Entry = torch.Tensor | float


def _matrix(rows: list[list[Entry]], like: torch.Tensor) -> torch.Tensor:
    """[[a, b], [c, d]] with [N] tensors or numbers as entries -> [N, 2, 2] (dtype and device of `like`)."""
    flat = [torch.as_tensor(e, dtype=like.dtype, device=like.device).expand(like.shape) for row in rows for e in row]
    return torch.stack(flat, dim=-1).reshape(*like.shape, len(rows), len(rows[0]))


def identity(n: int, k: int, device: torch.device | str | None = None) -> torch.Tensor:
    """I_k repeated: [N, k, k] float32."""
    return torch.eye(k, device=device).expand(n, k, k).clone()


# ----------------------------------------------------------------------------
# Geometry (3x3, pixel units).


def translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """T = [[1, 0, tx], [0, 1, ty], [0, 0, 1]]."""
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """S = diag(sx, sy, 1)."""
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def rotate2d(theta: torch.Tensor) -> torch.Tensor:
    """R(θ) = [[cos θ, −sin θ, 0], [sin θ, cos θ, 0], [0, 0, 1]]."""
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


# ----------------------------------------------------------------------------
# Color (4x4 on [r, g, b, 1]).

# Unit vector of the luma (gray) axis; its projector P = v vᵀ keeps the gray part of a color.
LUMA_AXIS = (1 / math.sqrt(3),) * 3


def _embed3(m: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] -> [N, 4, 4] acting on RGB and leaving the homogeneous coordinate alone."""
    out = identity(m.shape[0], 4, m.device).to(m.dtype)
    out[:, :3, :3] = m
    return out


def _luma_projector(like: torch.Tensor) -> torch.Tensor:
    v = torch.tensor(LUMA_AXIS, dtype=like.dtype, device=like.device)
    return torch.outer(v, v).expand(like.shape[0], 3, 3)


def translate3d(t: torch.Tensor) -> torch.Tensor:
    """Brightness: adds t to r, g and b. [N] -> [N, 4, 4]."""
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], t)


def scale3d(s: torch.Tensor) -> torch.Tensor:
    """Contrast: diag(s, s, s, 1)."""
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], s)


def luma_flip(i: torch.Tensor) -> torch.Tensor:
    """C = I − 2·P·i with P = v vᵀ: i = 1 mirrors the luma, keeping the chroma."""
    p = _luma_projector(i)
    return _embed3(torch.eye(3, dtype=i.dtype, device=i.device) - 2 * p * i[:, None, None])


def rotate_hue(theta: torch.Tensor) -> torch.Tensor:
    """Rodrigues about the luma axis v: R = I + sin θ·K + (1 − cos θ)·K², K = [v]ₓ."""
    a = LUMA_AXIS[0]
    k = torch.tensor([[0, -a, a], [a, 0, -a], [-a, a, 0]], dtype=theta.dtype, device=theta.device)
    s, c = torch.sin(theta)[:, None, None], torch.cos(theta)[:, None, None]
    return _embed3(torch.eye(3, dtype=theta.dtype, device=theta.device) + s * k + (1 - c) * (k @ k))


def saturate(s: torch.Tensor) -> torch.Tensor:
    """C = P + (I − P)·s with P = v vᵀ: scales the chroma by s, keeps the luma."""
    p = _luma_projector(s)
    eye = torch.eye(3, dtype=s.dtype, device=s.device)
    return _embed3(p + (eye - p) * s[:, None, None])
