"""Image quality scores for curation: sharpness (variance of the Laplacian) and left/right symmetry.

Both are measured on gray levels (0..255, ITU-R 601 luma) at a fixed working size, so a score means the same
whatever the image's resolution:

- `blur_score`: the image is resized to BLUR_SIDE (256) pixels on its short side, keeping the aspect ratio, and
  the score is the variance of the 4-neighbour Laplacian `g[y-1,x] + g[y+1,x] + g[y,x-1] + g[y,x+1] - 4 g[y,x]`
  (OpenCV's `Laplacian(ksize=1).var()`, the usual ad-hoc recipe, at 256 px). Higher is sharper: a flat image
  scores 0, sharp photos typically a few hundred to a few thousand, visibly soft ones below about 100. Images
  smaller than 256 px are enlarged first, so a small image scores as soft as it will look when enlarged
  (CelebA's 128-px faces: 5th/50th/95th percentiles about 5/13/33).
- `symmetry_score`: the image (or a `region` of it) is resized to SYMMETRY_SIDE x SYMMETRY_SIDE (64; the aspect
  ratio does not matter for a mirror), its mean removed (d = g - mean g), and
      symmetry = 1 - mean|d - mirror(d)| / (2 mean|d|)
  which lies in [0, 1]: 1 for a mirror-symmetric image, about 0.3 for unrelated halves (noise), 0 when the mirror
  is the negative; it equals 1 - sqrt((1 - r) / 2) for Gaussian-like images whose mirror correlates by r.
  Independent of brightness and contrast; a flat image counts as symmetric (1). For faces it is measured on
  FACE_REGION of the FFHQ-aligned crop, whose vertical centre line is the face's axis, so it scores the subject
  and not the background: turned heads, one-sided lighting and occlusions lower it (CelebA faces: 5th/50th/95th
  percentiles about 0.21/0.47/0.78; frontal, evenly lit faces score 0.6-0.8, turned or side-lit ones about 0.3).

BRISQUE is not offered: the packages that provide it need OpenCV, libsvm or model files downloaded at run time.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BLUR_SIDE = 256  # Short side (pixels) at which the Laplacian variance is measured.
SYMMETRY_SIDE = 64  # Side (pixels) of the square gray image the symmetry is measured on.
FACE_REGION = (0.25, 0.3, 0.75, 0.8)  # Inner face (eyes, nose, mouth, cheeks) of an FFHQ-aligned crop: x0 y0 x1 y1.


def gray(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Gray levels 0..255 as float64 [H, W] at size (W, H): LANCZOS when shrinking, BICUBIC when enlarging,
    resampled in floating point (rounding to 8 bits would add its own Laplacian noise)."""
    g = img.convert("L").convert("F")
    if g.size != size:
        shrink = size[0] < g.width or size[1] < g.height
        g = g.resize(size, Image.Resampling.LANCZOS if shrink else Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(g, dtype=np.float64)


def laplacian_variance(g: np.ndarray) -> float:
    """Var of the 4-neighbour Laplacian over the interior of a gray image [H, W] (H, W >= 3)."""
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def blur_score(img: Image.Image, side: int = BLUR_SIDE) -> float:
    """Sharpness: variance of the Laplacian of the gray image with its short side resized to `side`."""
    scale = side / min(img.size)
    size = (max(3, round(img.width * scale)), max(3, round(img.height * scale)))
    return laplacian_variance(gray(img, size))


def mirror_symmetry(g: np.ndarray, eps: float = 1e-6) -> float:
    """1 - mean|d - mirror(d)| / (2 mean|d|), d = g - mean(g): 1 = symmetric about the vertical centre line."""
    d = g - g.mean()
    spread = np.abs(d).mean()
    if spread < eps:
        return 1.0
    return float(1.0 - np.abs(d - d[:, ::-1]).mean() / (2.0 * spread))


def symmetry_score(
    img: Image.Image,
    side: int = SYMMETRY_SIDE,  # Working size, pixels.
    region: tuple[float, float, float, float] | None = None,  # Part measured (x0, y0, x1, y1 fractions); None = all.
) -> float:
    """Left/right symmetry about the vertical centre line (of the region), on a side x side gray version."""
    if region is not None:
        x0, y0, x1, y1 = region
        img = img.crop((round(x0 * img.width), round(y0 * img.height), round(x1 * img.width), round(y1 * img.height)))
    return mirror_symmetry(gray(img, (side, side)))
