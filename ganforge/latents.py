"""Seeds -> latents, reproducible across runs, batch sizes and devices (one RandomState per seed), and the checks
of the latent options the tools share (seed lists, truncation ψ and cutoff, class labels).

Bounds (each refusal names the flag and the range):
    seeds       0..2**32-1 (what np.random.RandomState takes), at most MAX_SEEDS per call
    ψ           finite, in -PSI_LIMIT..PSI_LIMIT (1 = off, 0.7 typical, 0 = w_avg, < 0 = the "anti" image)
    cutoff      0..num_ws (checked once the model is loaded)
    class       0..c_dim-1 (checked once the model is loaded)
    translate   X,Y: numbers in -TRANSLATE_LIMIT..TRANSLATE_LIMIT image sizes (StyleGAN3 generators only, checked
                once the model is loaded)
    rotate      DEG: a number in -ROTATE_LIMIT..ROTATE_LIMIT degrees (StyleGAN3 only)
    strength    of a latent direction: -STRENGTH_LIMIT..STRENGTH_LIMIT (`ganforge.tools.directions`)
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from ganforge.errors import GanforgeError

SEED_MAX = 2**32 - 1  # np.random.RandomState seeds are 32-bit.
MAX_SEEDS = 1_000_000  # Seeds per call: a day of 1024 px images on one GPU; a typo such as 0-4294967295 is refused.
PSI_LIMIT = 10.0  # |ψ| beyond a few already saturates every image; beyond 10 it is a typo.
# A shift in image sizes: 100 keeps the Fourier input's phases (frequency × shift) exact to 1e-4 cycle in float32;
# 1e308 would make the inverted transform infinite and every image NaN.
TRANSLATE_LIMIT = 100.0
ROTATE_LIMIT = 360.0  # Degrees: one full turn either way; anything beyond is the same picture or a typo.
STRENGTH_LIMIT = 100.0  # |S| of a latent direction: 100 standard deviations (or units of w) is past any image.


class LatentError(GanforgeError, ValueError):
    """A seed list, truncation, cutoff or class label that cannot be used; the message names the flag."""


def shown(text: object, limit: int = 40) -> str:
    """repr(text), cut to `limit` characters: a pasted megabyte must not become the error message."""
    text = str(text)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """z for one seed: np.random.RandomState(seed).randn(z_dim), as the official generate.py. [z_dim]"""
    return torch.from_numpy(np.random.RandomState(seed).randn(z_dim)).to(torch.float32)


def z_from_seeds(seeds: list[int], z_dim: int) -> torch.Tensor:
    """[len(seeds), z_dim]"""
    return torch.stack([z_from_seed(s, z_dim) for s in seeds])


def _ranges(text: str, flag: str, top: int, what: str) -> list[tuple[int, int]]:
    """'0-3,7' -> [(0, 3), (7, 7)], every bound checked against 0..top, nothing expanded yet."""
    ranges = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if m is None:
            raise LatentError(
                f"{flag} {shown(text)}: {shown(part)} is not a number or a range; write e.g. 0-7 or "
                f"1,5,9 (whole numbers 0..{top})"
            )
        digits = max(len(m.group(1)), len(m.group(2) or ""))
        lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if digits <= 10 else (0, top + 1)
        if max(lo, hi) > top:
            raise LatentError(f"{flag} {shown(part)}: pass {what} in 0..{top}")
        if hi < lo:
            raise LatentError(f"{flag} {part}: the range is reversed; write {hi}-{lo}")
        ranges.append((lo, hi))
    return ranges


def parse_ranges(text: str, flag: str, limit: int, top: int = SEED_MAX, what: str = "numbers") -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]: numbers in 0..top, at most `limit` of them (counted before
    anything is expanded, so 0-4294967295 costs nothing)."""
    ranges = _ranges(text, flag, top, what)
    if not ranges:
        raise LatentError(f"{flag} {shown(text)} is empty: write e.g. 0-7 or 1,5,9")
    count = sum(hi - lo + 1 for lo, hi in ranges)
    if count > limit:
        raise LatentError(
            f"{flag} {shown(text)}: {count:,} {what} are more than the {limit:,} allowed at once; "
            f"pass a shorter range, or split the work over several calls"
        )
    return [s for lo, hi in ranges for s in range(lo, hi + 1)]


def parse_seeds(text: str, flag: str = "--seeds", limit: int = MAX_SEEDS) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]; seeds in 0..2**32-1, at most MAX_SEEDS of them."""
    return parse_ranges(text, flag, limit, what="seeds")


def check_psi(psi: float, flag: str = "--trunc") -> float:
    """Truncation ψ, finite and in -PSI_LIMIT..PSI_LIMIT (NaN or inf would make every image black)."""
    psi = float(psi)
    if not math.isfinite(psi) or abs(psi) > PSI_LIMIT:
        raise LatentError(
            f"{flag} {psi:g}: pass a truncation psi in {-PSI_LIMIT:g}..{PSI_LIMIT:g} (1 = off, 0.7 typical)"
        )
    return psi


def parse_translate(text: str, flag: str = "--translate") -> tuple[float, float]:
    """'X,Y' -> (x, y), two numbers in -TRANSLATE_LIMIT..TRANSLATE_LIMIT (image sizes; --translate)."""
    try:
        values = tuple(float(p) for p in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 2 or not all(math.isfinite(v) for v in values):
        raise LatentError(f"{flag} {shown(text)}: write X,Y with two numbers, e.g. 0.1,-0.25")
    if any(abs(v) > TRANSLATE_LIMIT for v in values):
        raise LatentError(
            f"{flag} {shown(text)}: pass X and Y in {-TRANSLATE_LIMIT:g}..{TRANSLATE_LIMIT:g} "
            "(units of the image size; 0.1 moves the image by a tenth of its width)"
        )
    return values[0], values[1]


def check_rotate(degrees: float, flag: str = "--rotate") -> float:
    """An angle in degrees, finite and in -ROTATE_LIMIT..ROTATE_LIMIT (--rotate)."""
    degrees = float(degrees)
    if not math.isfinite(degrees) or abs(degrees) > ROTATE_LIMIT:
        raise LatentError(f"{flag} {degrees:g}: give an angle in {-ROTATE_LIMIT:g}..{ROTATE_LIMIT:g} degrees")
    return degrees


def check_cutoff(cutoff: int | None, num_ws: int | None = None, flag: str = "--trunc-cutoff") -> int | None:
    """None (truncate every w) or 0..num_ws (the first `cutoff` ws); num_ws=None checks only the sign."""
    if cutoff is None:
        return None
    top = "num_ws" if num_ws is None else str(num_ws)
    if cutoff < 0 or (num_ws is not None and cutoff > num_ws):
        raise LatentError(
            f"{flag} {cutoff}: pass 0..{top} (the number of ws truncated, from the coarsest), "
            f"or leave it out to truncate all {top}"
        )
    return cutoff


def class_labels(c_dim: int, n: int, class_idx: int | None) -> torch.Tensor | None:
    """One-hot [n, c_dim] labels of class `class_idx` (None for an unconditional model), or a LatentError."""
    if c_dim == 0:
        if class_idx is not None:
            raise LatentError(f"--class {class_idx}: this model is unconditional (c_dim=0); drop --class")
        return None
    if class_idx is None:
        raise LatentError(f"this model is conditional with {c_dim} classes: pass --class 0..{c_dim - 1}")
    if not 0 <= class_idx < c_dim:
        raise LatentError(f"--class {class_idx} is out of range: this model has classes 0..{c_dim - 1}")
    return torch.nn.functional.one_hot(torch.full([n], class_idx), c_dim).float()
