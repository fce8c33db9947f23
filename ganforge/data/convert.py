"""Turning any decoded image into one target mode and size.

Handles EXIF orientation, palette images, alpha (RGBA / LA / PA / tRNS, composited on a background),
CMYK, 16-bit and 32-bit grayscale, float images and 1-bit images; fits by crop (scale to cover, then
center crop), pad (scale to fit, then pad) or stretch; LANCZOS when shrinking, BICUBIC when enlarging.
Every conversion beyond the routine (rotation, alpha, bit depth, CMYK, frames) is returned as a note
`(kind, text)` so the caller can report it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import cast

import numpy as np
from PIL import Image, ImageOps

EXIF_ORIENTATION = 0x0112
ROTATED_ORIENTATIONS = (5, 6, 7, 8)  # Orientations that swap width and height.
NAMED_COLOURS = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128)}
FITS = ("crop", "pad", "stretch")
REDUCING_GAP = 3.0  # Pillow's two-step resize for large reductions; visually identical at >= 3.
DRAFT_MARGIN = 2.0  # JPEG DCT-domain decoding may only shrink to twice the size LANCZOS then reduces.

Note = tuple[str, str]


def parse_background(text: str) -> tuple[int, int, int]:
    """white | black | gray | #rrggbb | #rgb -> (r, g, b)."""
    value = text.strip().lower()
    if value in NAMED_COLOURS:
        return NAMED_COLOURS[value]
    m = re.fullmatch(r"#?([0-9a-f]{6}|[0-9a-f]{3})", value)
    if not m:
        raise ValueError(f"background {text!r} is not a colour: write white, black or #rrggbb such as #808080")
    digits = m.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{v:02x}" for v in rgb)


@dataclass(frozen=True)
class Target:
    """What every output image becomes."""

    height: int  # Output height in pixels.
    width: int  # Output width in pixels.
    channels: int = 3  # 3 = RGB, 1 = grayscale (L).
    fit: str = "crop"  # crop (cover, center crop) | pad (fit, pad with background) | stretch (ignore aspect).
    background: tuple[int, int, int] = (255, 255, 255)  # Fill for transparent pixels and padding.

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels={self.channels} is not supported: use 3 (RGB) or 1 (grayscale)")
        if self.fit not in FITS:
            raise ValueError(f"fit={self.fit!r} is not known: use one of {', '.join(FITS)}")

    @property
    def mode(self) -> str:
        return "RGB" if self.channels == 3 else "L"

    @property
    def fill(self) -> tuple[int, int, int] | int:
        """The background in the output mode."""
        r, g, b = self.background
        return self.background if self.channels == 3 else round(0.299 * r + 0.587 * g + 0.114 * b)


def orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # Broken EXIF blocks are common; treat them as upright.
        return 1


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed, i.e. after the EXIF rotation, read from the header only."""
    w, h = img.size
    return (h, w) if orientation(img) in ROTATED_ORIENTATIONS else (w, h)


def scale_needed(w: int, h: int, t: Target) -> float:
    """How much the image must be enlarged (> 1) or shrunk (< 1) to fill the target under its fit."""
    sx, sy = t.width / w, t.height / h
    return min(sx, sy) if t.fit == "pad" else max(sx, sy)


def aspect_distortion(w: int, h: int, t: Target) -> float:
    """How far the image's aspect ratio is from the target's, as a factor >= 1 (1 = same shape)."""
    r = (w / h) / (t.width / t.height)
    return max(r, 1 / r)


def _alpha_used(img: Image.Image) -> bool:
    lo, _ = cast(tuple[int, int], img.getchannel("A").getextrema())  # One band: (min, max).
    return lo < 255


def _high_bit_to_l(img: Image.Image) -> Image.Image:
    """16-bit (I;16*), 32-bit (I) or float (F) grayscale -> 8-bit L, keeping the full range."""
    a = np.asarray(img)
    if img.mode == "F":
        a = np.nan_to_num(a.astype(np.float64))
        a = a * 255.0 if a.max(initial=0.0) <= 1.0 else a
    elif img.mode.startswith("I;16") or a.max(initial=0) > 255:
        top = 65535.0 if a.max(initial=0) <= 65535 else float(a.max())
        a = a.astype(np.float64) * (255.0 / top)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def to_mode(img: Image.Image, t: Target) -> tuple[Image.Image, list[Note]]:
    """Any Pillow mode -> t.mode ("RGB" or "L"), compositing transparency on the background."""
    notes: list[Note] = []
    mode = img.mode
    if mode == t.mode and "transparency" not in img.info:
        return img, notes
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        bits = {"F": "float"}.get(mode, "32-bit" if mode == "I" else "16-bit")
        notes.append(("bit-depth", f"{bits} grayscale reduced to 8-bit"))
        img, mode = _high_bit_to_l(img), "L"
    if mode == "CMYK":
        notes.append(("cmyk", "CMYK converted to RGB"))
        img, mode = img.convert("RGB"), "RGB"
    if (mode in ("P", "RGB", "L") and "transparency" in img.info) or mode in ("PA", "LA", "La", "RGBa"):
        img, mode = img.convert("RGBA"), "RGBA"
    if mode == "RGBA":
        if _alpha_used(img):
            notes.append(("alpha", f"transparency composited on {hex_colour(t.background)}"))
            canvas = Image.new("RGBA", img.size, (*t.background, 255))
            img = Image.alpha_composite(canvas, img)
        img, mode = img.convert("RGB"), "RGB"
    if mode != t.mode:
        img = img.convert(t.mode)  # P, 1, L <-> RGB, YCbCr, HSV ...
    return img, notes


def resample_for(scale_x: float, scale_y: float) -> Image.Resampling:
    """LANCZOS whenever a side shrinks, BICUBIC when the image only grows."""
    return Image.Resampling.LANCZOS if min(scale_x, scale_y) < 1 else Image.Resampling.BICUBIC


def fit_image(img: Image.Image, t: Target) -> Image.Image:
    """Resize to exactly (t.width, t.height) by t.fit; img must already be in t.mode."""
    w, h = img.size
    size = (t.width, t.height)
    if (w, h) == size:
        return img
    if t.fit == "stretch":
        return img.resize(size, resample_for(t.width / w, t.height / h), reducing_gap=REDUCING_GAP)
    if t.fit == "crop":
        s = max(t.width / w, t.height / h)
        bw, bh = t.width / s, t.height / s
        left, top = (w - bw) / 2, (h - bh) / 2
        return img.resize(size, resample_for(s, s), box=(left, top, left + bw, top + bh), reducing_gap=REDUCING_GAP)
    s = min(t.width / w, t.height / h)
    nw, nh = max(1, min(t.width, round(w * s))), max(1, min(t.height, round(h * s)))
    canvas = Image.new(t.mode, size, t.fill)
    canvas.paste(
        img.resize((nw, nh), resample_for(s, s), reducing_gap=REDUCING_GAP), ((t.width - nw) // 2, (t.height - nh) // 2)
    )
    return canvas


def load_oriented(img: Image.Image, t: Target) -> tuple[Image.Image, list[Note]]:
    """Decode (JPEGs at a reduced size when the target is much smaller), first frame, EXIF rotation."""
    notes: list[Note] = []
    turn = orientation(img)
    if img.format == "JPEG":
        w, h = oriented_size(img)
        s = scale_needed(w, h, t) * DRAFT_MARGIN
        if s < 1:
            img.draft(None, (math.ceil(img.size[0] * s), math.ceil(img.size[1] * s)))
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        img.seek(0)
        notes.append(("frames", f"first of {frames} frames used"))
    img.load()
    if turn != 1:
        img = ImageOps.exif_transpose(img)
        notes.append(("exif", f"rotated upright by its EXIF orientation {turn}"))
    return img, notes


def convert_image(img: Image.Image, t: Target) -> tuple[Image.Image, list[Note]]:
    """An opened (not yet decoded) image -> exactly t.mode at (t.width, t.height), with notes."""
    img, notes = load_oriented(img, t)
    img, more = to_mode(img, t)
    return fit_image(img, t), notes + more
