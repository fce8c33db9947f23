"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"),
with the ranges and the random draws (order, shapes) of the authors' published PyTorch ops, so that a seeded
run gives their images (tests/test_parity_augment.py checks it against those formulas).

Every op is applied to every sample with fresh random parameters on each call, to reals and fakes alike
(in both the D and the G step), and is differentiable w.r.t. the images. Images are assumed in [-1, 1].

  color        brightness + U(−0.5, 0.5); saturation ×U(0, 2) about the per-pixel channel mean;
               contrast ×U(0.5, 1.5) about the per-image mean
  translation  integer shift by up to 1/8 of the image size per axis (rows drawn first), zero padding
  cutout       a zeroed rectangle of half the image size, at a random position (clipped at the border)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

POLICY_OPS = ("color", "translation", "cutout")


def _per_sample(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """U(low, high) per sample, shaped [N, 1, 1, 1]."""
    return low + (high - low) * torch.rand([x.shape[0], 1, 1, 1], dtype=x.dtype, device=x.device)


def rand_brightness(x: torch.Tensor) -> torch.Tensor:
    """y = x + b, b ~ U(−0.5, 0.5)."""
    return x + _per_sample(x, -0.5, 0.5)


def rand_saturation(x: torch.Tensor) -> torch.Tensor:
    """y = m + s·(x − m), m = channel mean per pixel, s ~ U(0, 2). A no-op on 1-channel images."""
    m = x.mean(dim=1, keepdim=True)
    return m + _per_sample(x, 0.0, 2.0) * (x - m)


def rand_contrast(x: torch.Tensor) -> torch.Tensor:
    """y = m + c·(x − m), m = mean over C, H, W, c ~ U(0.5, 1.5)."""
    m = x.mean(dim=[1, 2, 3], keepdim=True)
    return m + _per_sample(x, 0.5, 1.5) * (x - m)


def shift_zero_pad(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """y[n, :, i, j] = x[n, :, i + dy[n], j + dx[n]], 0 where that falls outside; dy, dx int [N].

    A gather from the image padded by one row and column of zeros, the indices clamped onto that border.
    """
    n, _, h, w = x.shape
    rows = (torch.arange(h, device=x.device)[None, :] + dy.reshape(n, 1) + 1).clamp(0, h + 1)  # [N, H]
    cols = (torch.arange(w, device=x.device)[None, :] + dx.reshape(n, 1) + 1).clamp(0, w + 1)  # [N, W]
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # [N, H + 2, W + 2, C]
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def rand_translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift by integers in [−round(ratio·H), round(ratio·H)] (rows, drawn first) and [−round(ratio·W), ...]
    (columns), zero padding. As published: a positive draw moves the content up / left."""
    n, _, h, w = x.shape
    max_y, max_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-max_y, max_y + 1, size=[n, 1, 1], device=x.device)
    dx = torch.randint(-max_x, max_x + 1, size=[n, 1, 1], device=x.device)
    return shift_zero_pad(x, dy, dx)


def rand_cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a round(ratio·H) x round(ratio·W) rectangle (clipped to the image).

    As published: its first row is o − size//2 with o uniform in {0, ..., H − 1} for an odd size and in
    {0, ..., H} for an even one (so the rectangle is centred on the image on average); rows drawn first.
    """
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - ch % 2), size=[n, 1, 1], device=x.device).reshape(n, 1) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), size=[n, 1, 1], device=x.device).reshape(n, 1) - cw // 2
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top) & (rows < top + ch)  # [N, H]
    in_cols = (cols >= left) & (cols < left + cw)  # [N, W]
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # [N, H, W]
    return x * keep[:, None].to(x.dtype)


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation,cutout' -> ('color', 'translation', 'cutout'); '' = no augmentation."""
    ops = tuple(op.strip() for op in policy.split(",") if op.strip())
    unknown = [op for op in ops if op not in POLICY_OPS]
    if unknown:
        raise ValueError(
            f"unknown DiffAugment op(s) {unknown} in policy {policy!r}; "
            f"use a comma-separated subset of {', '.join(POLICY_OPS)}"
        )
    return ops


class DiffAugment(nn.Module):
    def __init__(
        self,
        policy: str = "color,translation,cutout",  # Comma-separated ops, applied in this order; '' = identity.
        translation_ratio: float = 0.125,  # Largest shift, fraction of the image size.
        cutout_ratio: float = 0.5,  # Cutout side, fraction of the image size.
    ):
        super().__init__()
        self.policy = parse_policy(policy)
        self.translation_ratio, self.cutout_ratio = translation_ratio, cutout_ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [N, C, H, W] float in ~[-1, 1] -> [N, C, H, W].
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"DiffAugment expects float images [N, C, H, W], got {x.dtype} {list(x.shape)}")
        for op in self.policy:
            if op == "color":
                x = rand_contrast(rand_saturation(rand_brightness(x)))
            elif op == "translation":
                x = rand_translation(x, self.translation_ratio)
            elif op == "cutout":
                x = rand_cutout(x, self.cutout_ratio)
        return x

    def extra_repr(self) -> str:
        return f"policy={','.join(self.policy)!r}, translation={self.translation_ratio}, cutout={self.cutout_ratio}"
