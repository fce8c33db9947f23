"""Image helpers: float [-1, 1] -> uint8 (official quantization), grids, PNG files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] float in [-1, 1] -> uint8 by clamp(x·127.5 + 128, 0, 255) (round to nearest)."""
    return (img.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def make_grid(images: torch.Tensor, cols: int | None = None) -> np.ndarray:
    """uint8 [N, C, H, W] -> [rows·H, cols·W, C] (C = 1 is squeezed to 2-D)."""
    n, c, h, w = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = torch.zeros([rows * cols, c, h, w], dtype=torch.uint8)
    grid[:n] = images.cpu()
    grid = grid.reshape(rows, cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c)
    arr = grid.numpy()
    return arr[:, :, 0] if c == 1 else arr


def save_png(array: np.ndarray, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
