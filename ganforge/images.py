"""Image helpers: float [-1, 1] -> uint8 (official quantization), grids, PNG files, and the checks that an output
path can be written and that a canvas is not too large, made before any work or any folder is created."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganforge.errors import GanforgeError

MAX_CANVAS_PIXELS = 8192 * 8192  # One grid/canvas image: Pillow opens it without a decompression-bomb warning.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")  # Output images Pillow writes itself.


class OutputError(GanforgeError, ValueError):
    """An output path that cannot be written, or an output image too large to write."""


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


def grid_shape(n: int) -> tuple[int, int]:
    """(cols, rows) for a grid of n images with no empty cell: the most square cols x rows == n (cols >= rows),
    so 8 -> 4x2, 12 -> 4x3, 7 -> 7x1. When that shape would be a long strip (more than 8 columns and over 3x
    wider than tall, as for a large prime such as 11 or 97), it is the near-square ceil(sqrt(n)) columns instead,
    with the empty cells at the end of the last row (11 -> 4x3)."""
    if n < 1:
        return 1, 1
    rows = max(r for r in range(1, math.isqrt(n) + 1) if n % r == 0)
    cols = n // rows
    if cols > 8 and cols > 3 * rows:
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
    return cols, rows


def save_png(array: np.ndarray, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def save_png_atomic(array: np.ndarray, path: str | Path) -> None:
    """save_png through a temporary file in the same folder and a rename: a reader (or a kill) never sees half
    a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            Image.fromarray(array).save(f, format="PNG")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _first_existing(path: Path) -> Path:
    """The path itself or its nearest ancestor that exists (the folder a mkdir would start in)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_can_create(folder: Path, path: Path, flag: str) -> None:
    """The folders up to `folder` (that of `path`) can be made: the nearest existing one is a folder we may write in."""
    base = _first_existing(folder)
    if not base.is_dir():
        raise OutputError(f"{flag} {path}: {base} is a file, so no folder can be made under it; choose another path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(
            f"{flag} {path}: the folder {base} is not writable; check its permissions or choose another path"
        )


def check_output_dir(path: str | os.PathLike, flag: str = "--outdir") -> Path:
    """An output folder that exists (and is writable) or can be made; nothing is created here."""
    if not str(path).strip():
        raise OutputError(f"{flag} is empty: give the name of an output folder")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is a file, not a folder: choose a folder path (it is made if missing)")
    _check_can_create(path, path, flag)
    return path


def check_output_file(path: str | os.PathLike, flag: str = "--out", suffixes: tuple[str, ...] = ()) -> Path:
    """An output file whose folder exists or can be made; with `suffixes`, its name must end in one of them."""
    if not str(path).strip():
        raise OutputError(f"{flag} is empty: give the name of the output file")
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder: give a file name (inside it, if you like)")
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputError(f"{flag} {path}: the name must end in {' or '.join(suffixes)}")
    _check_can_create(path.parent, path, flag)
    return path


def check_canvas(count: int, height: int, width: int, what: str) -> None:
    """Refuse one output image of `count` tiles of height x width beyond MAX_CANVAS_PIXELS."""
    pixels = count * height * width
    if pixels > MAX_CANVAS_PIXELS:
        most = max(1, MAX_CANVAS_PIXELS // (height * width))
        raise OutputError(
            f"{what} would be {count} images of {width}x{height}, {pixels / 1e6:.0f} megapixels, over "
            f"the {MAX_CANVAS_PIXELS / 1e6:.0f}-megapixel limit of one image: use at most {most} images"
        )
