"""Face geometry from 5 landmarks: pose checks (tilt, yaw proxy) and FFHQ-style alignment.

Landmarks are `[5, 2]` arrays of (x, y) in pixel-index coordinates (pixel (i, j) has its centre at (i, j), as
MTCNN and dlib report them), in the order eye left, eye right, nose, mouth left, mouth right, where left and
right are the image's (the subject's right eye is the image-left eye). Internally the alignment works in
continuous coordinates (centre of pixel i at i + 0.5, the convention of PIL's transforms).

The alignment is the FFHQ recipe (Karras et al. 2019, `ffhq-dataset/download_ffhq.py`, `recreate_aligned_images`)
driven by eye centres and mouth corners: an oriented square around the eyes and mouth, shrunk, cropped, padded by
reflection with a blur towards the edges, then resampled to the output size. The map from the photo to the crop
is a similarity, `alignment_transform`, so a landmark's place in the output can be computed without an image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

LANDMARKS = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")  # Image left/right.


@dataclass(frozen=True)
class Face:
    """One detection: box, confidence and 5 landmarks, in pixels of the image it was found in."""

    box: tuple[float, float, float, float]  # (x0, y0, x1, y1), continuous pixel coordinates.
    score: float  # Face probability of the last detector stage (0..1).
    landmarks: np.ndarray  # [5, 2] (x, y), pixel-index coordinates, in LANDMARKS order.

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)

    def scaled(self, factor: float) -> Face:
        """The same face in an image `factor` times larger (pixel-index landmarks scale about -0.5)."""
        x0, y0, x1, y1 = (float(v * factor) for v in self.box)
        return Face((x0, y0, x1, y1), self.score, (self.landmarks + 0.5) * factor - 0.5)


# ----------------------------------------------------------------------------------------------------------------
# Pose.


def _parts(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """eye_avg, eye_to_eye, nose, mouth_avg."""
    lm = np.asarray(lm, dtype=np.float64).reshape(5, 2)
    eye_avg = (lm[0] + lm[1]) * 0.5
    return eye_avg, lm[1] - lm[0], lm[2], (lm[3] + lm[4]) * 0.5


def tilt_degrees(lm: np.ndarray) -> float:
    """In-plane rotation: angle of the eye line from horizontal, degrees, positive when the image-right eye is lower.

    angle = atan2(eye_right.y - eye_left.y, eye_right.x - eye_left.x)  (y points down)
    """
    _, e, _, _ = _parts(lm)
    return math.degrees(math.atan2(e[1], e[0]))


def eye_offset(lm: np.ndarray) -> float:
    """Yaw proxy: signed offset of the eyes' midpoint from the face's centre line, in eye distances.

    The centre line runs through the midpoint of nose and mouth centre, perpendicular to the eye line:
        offset = ((eye_avg - (nose + mouth_avg) / 2) · ê) / |eye_to_eye|,   ê = eye_to_eye / |eye_to_eye|.
    0 for a frontal face; it grows as the head turns (the eyes shift against nose and mouth), about 0.1-0.2 at
    moderate turns and beyond 0.3 near profile. Positive when the eyes sit right of the centre line in the image.
    """
    eye_avg, e, nose, mouth_avg = _parts(lm)
    dist = float(np.hypot(*e))
    if dist == 0:
        return math.inf
    centre = (nose + mouth_avg) * 0.5
    return float(np.dot(eye_avg - centre, e / dist) / dist)


# ----------------------------------------------------------------------------------------------------------------
# FFHQ alignment.


def ffhq_quad(lm: np.ndarray) -> np.ndarray:
    """The FFHQ crop square from eye centres and mouth corners: `[4, 2]` corners (top-left, bottom-left,
    bottom-right, top-right), in the coordinates of `lm`.

        x = eye_to_eye - flipud(eye_to_mouth) * [-1, 1];  x *= max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|) / |x|
        y = flipud(x) * [-1, 1];  c = eye_avg + 0.1 eye_to_mouth;  quad = [c-x-y, c-x+y, c+x+y, c+x-y]
    """
    eye_avg, eye_to_eye, _, mouth_avg = _parts(lm)
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def alignment_transform(lm: np.ndarray, size: int) -> np.ndarray:
    """The similarity `[2, 3]` that takes pixel-index points of the photo to pixel-index points of the aligned
    `size` x `size` crop: `out = A[:, :2] @ p + A[:, 2]`. The quad's top-left corner goes to the crop's top-left
    edge, its sides to the crop's sides."""
    quad = ffhq_quad(lm) + 0.5  # Continuous coordinates.
    side = np.hypot(*(quad[3] - quad[0]))
    ex, ey = (quad[3] - quad[0]) / side, (quad[1] - quad[0]) / side
    rot = np.stack([ex, ey]) * (size / side)  # [2, 2]: rows project on the crop's axes, then scale.
    shift = rot @ (0.5 - quad[0]) - 0.5  # Index -> continuous (+0.5), relative to the corner, back to index.
    return np.concatenate([rot, shift[:, None]], axis=1)


def _crop(img: Image.Image, quad: np.ndarray, border: int) -> tuple[Image.Image, np.ndarray]:
    """Cut the photo down to the quad's bounding box plus a border (the pixels resampling can reach)."""
    lo, hi = np.floor(quad.min(0)).astype(int) - border, np.ceil(quad.max(0)).astype(int) + border
    box = (max(lo[0], 0), max(lo[1], 0), min(hi[0], img.width), min(hi[1], img.height))
    if box[2] - box[0] < img.width or box[3] - box[1] < img.height:
        img = img.crop(box)
        quad = quad - box[:2]
    return img, quad


def _reflect_pad(img: Image.Image, quad: np.ndarray, qsize: float, border: int) -> tuple[Image.Image, np.ndarray]:
    """Where the quad leaves the photo, extend it by reflection, blurred and faded towards the median colour
    further out (the FFHQ padding), so no hard black edge enters the crop."""
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    need = np.array([-lo[0], -lo[1], hi[0] - img.width, hi[1] - img.height]) + border
    if need.max() <= border - 4:
        return img, quad
    pad = np.maximum(need, max(int(round(qsize * 0.3)), 1))  # [left, top, right, bottom], all > 0.
    a = np.pad(np.asarray(img, dtype=np.float32), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), mode="reflect")
    h, w = a.shape[:2]
    yy, xx = np.ogrid[:h, :w]
    inside_x = np.minimum(xx / pad[0], (w - 1 - xx) / pad[2])  # 1 at the photo's edge, 0 at the outer edge.
    inside_y = np.minimum(yy / pad[1], (h - 1 - yy) / pad[3])
    mask = np.maximum(1.0 - inside_x, 1.0 - inside_y)[..., None].astype(np.float32)  # > 0 in the padding.
    radius = max(qsize * 0.02, 0.5)
    blurred = np.asarray(Image.fromarray(_to_uint8(a)).filter(ImageFilter.GaussianBlur(radius)), np.float32)
    a += (blurred - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    a += (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(_to_uint8(a)), quad + pad[:2]


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def align_face(
    img: Image.Image,  # RGB photo.
    lm: np.ndarray,  # [5, 2] landmarks in `img`, pixel-index coordinates.
    size: int,  # Output side in pixels.
    pad: bool = True,  # Fill outside the photo by blurred reflection (FFHQ); False = black.
    supersample: int = 4,  # Resample the quad at up to this many times `size`, then reduce with LANCZOS.
) -> Image.Image:
    """The FFHQ-aligned `size` x `size` crop of the face with landmarks `lm`."""
    quad = ffhq_quad(lm) + 0.5  # Continuous coordinates from here on.
    qsize = float(np.hypot(*(quad[3] - quad[0])))

    # Shrink: big faces are first reduced by an integer factor, as FFHQ does, so resampling never skips pixels.
    shrink = int(math.floor(qsize / size * 0.5))
    if shrink > 1:
        img = img.reduce(shrink)
        quad, qsize = quad / shrink, qsize / shrink

    # Crop, then pad where the quad leaves the photo.
    border = max(int(round(qsize * 0.1)), 3)
    img, quad = _crop(img, quad, border)
    if pad:
        img, quad = _reflect_pad(img, quad, qsize, border)

    # Transform: the quad (corners top-left, bottom-left, bottom-right, top-right) onto a square.
    work = int(min(max(size, round(qsize)), size * supersample))
    out = img.transform((work, work), Image.Transform.QUAD, tuple(quad.flatten()), Image.Resampling.BILINEAR)
    if work != size:
        out = out.resize((size, size), Image.Resampling.LANCZOS)
    return out


def main_face(faces: list[Face]) -> Face | None:
    """The face curation is about: the largest one (ties: the most confident)."""
    return max(faces, key=lambda f: (f.area, f.score), default=None)
