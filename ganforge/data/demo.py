"""Built-in demo data: coloured shapes on gradient backgrounds, generated on the fly (no download).

Three classes (disc, square, cross) at any size, written in the official StyleGAN2-ADA layout
(`00000/img00000000.png` + `dataset.json` with labels), so `make demo` trains on real files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("disc", "square", "cross")


def demo_image(rng: np.random.RandomState, h: int, w: int, cls: int) -> np.ndarray:
    """One RGB uint8 image [H, W, 3]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    top, bottom = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    t = (yy / max(h - 1, 1))[..., None]
    img = top * (1 - t) + bottom * t  # vertical gradient background
    colour = rng.uniform(0, 1, 3)
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    r = rng.uniform(0.15, 0.3) * min(h, w)
    dy, dx = yy - cy, xx - cx
    if cls == 0:
        mask = dy**2 + dx**2 <= r**2
    elif cls == 1:
        mask = (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    else:
        arm = r * 0.35
        mask = ((np.abs(dy) <= arm) & (np.abs(dx) <= r)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= r))
    img[mask] = colour
    return (img * 255 + 0.5).clip(0, 255).astype(np.uint8)


def make_demo_dataset(
    dest: str | Path, count: int = 1000, resolution: tuple[int, int] = (32, 32), seed: int = 0
) -> Path:
    """Write `count` images of (H, W) to the folder `dest` (official layout, class labels). Returns dest."""
    dest = Path(dest)
    if (dest / "dataset.json").exists():
        return dest
    rng = np.random.RandomState(seed)
    h, w = resolution
    labels = []
    tmp = dest.with_name(dest.name + ".partial")
    for idx in range(count):
        cls = idx % len(CLASSES)
        name = f"{idx // 1000:05d}/img{idx:08d}.png"
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(demo_image(rng, h, w, cls)).save(tmp / name)
        labels.append([name, cls])
    (tmp / "dataset.json").write_text(json.dumps({"labels": labels}))
    tmp.rename(dest)  # A half-written demo folder is never mistaken for a complete one.
    return dest
