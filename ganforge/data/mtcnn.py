"""MTCNN face detector with 5 landmarks (Zhang et al. 2016, "Joint Face Detection and Alignment using
Multi-task Cascaded Convolutional Networks"), in plain PyTorch.

Three small networks run as a cascade: P-Net scans an image pyramid for 12x12 face windows, R-Net re-scores
and refines the survivors at 24x24, O-Net re-scores them at 48x48 and places 5 landmarks. Each stage keeps
boxes above its threshold (0.6, 0.7, 0.7), merges overlaps by non-maximum suppression and squares the boxes.

Weights: the `pnet.pt`, `rnet.pt` and `onet.pt` state dicts shipped in the facenet-pytorch wheel
(`facenet_pytorch/data/`), a port of the original Caffe models. The modules here use that port's parameter
names and shapes, and the files are read with `torch.load(weights_only=True)`: plain tensors, never pickled
objects. The facenet-pytorch package itself is never imported (it pins an old torch).
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ganforge.data.faces import Face
from ganforge.errors import GanforgeError

WEIGHT_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
THRESHOLDS = (0.6, 0.7, 0.7)  # Face probability each stage keeps (P-, R-, O-Net).
SCALE_FACTOR = 0.709  # Pyramid step: about 1/sqrt(2) in area.
MIN_FACE = 20  # Smallest face searched for, pixels.


class WeightsMissing(GanforgeError, FileNotFoundError):
    """The MTCNN weight files are not where they were looked for; the message says where to get them."""


class WeightsInvalid(GanforgeError, ValueError):
    """An MTCNN weight file that is not the facenet-pytorch state dict it should be."""


# ----------------------------------------------------------------------------------------------------------------
# Networks (parameter names and shapes of the facenet-pytorch port).


def _caffe_flatten(x: Tensor) -> Tensor:
    """[N, C, H, W] -> [N, W*H*C]: the dense layers were trained on maps stored width-major (Caffe/MATLAB)."""
    return x.permute(0, 3, 2, 1).flatten(1)


class PNet(nn.Module):
    """Proposal net, fully convolutional: a 12x12 window every 2 pixels.
    [N, 3, H, W] in [-1, 1] -> face probability [N, H', W'], box offsets [N, 4, H', W']."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # Face / not-face logits.
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # Box offsets (dx0, dy0, dx1, dy1) in window sizes.

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x).softmax(1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """Refine net: [N, 3, 24, 24] in [-1, 1] -> face probability [N], box offsets [N, 4]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(64 * 3 * 3, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))  # [N, 28, 11, 11]
        x = self.pool2(self.prelu2(self.conv2(x)))  # [N, 48, 4, 4]
        x = self.prelu3(self.conv3(x))  # [N, 64, 3, 3]
        x = self.prelu4(self.dense4(_caffe_flatten(x)))
        return self.dense5_1(x).softmax(1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output net: [N, 3, 48, 48] in [-1, 1] -> face probability [N], box offsets [N, 4],
    landmarks [N, 10] (x of the 5 points, then y, as fractions of the box)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(128 * 3 * 3, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))  # [N, 32, 23, 23]
        x = self.pool2(self.prelu2(self.conv2(x)))  # [N, 64, 10, 10]
        x = self.pool3(self.prelu3(self.conv3(x)))  # [N, 64, 4, 4]
        x = self.prelu4(self.conv4(x))  # [N, 128, 3, 3]
        x = self.prelu5(self.dense5(_caffe_flatten(x)))
        return self.dense6_1(x).softmax(1)[:, 1], self.dense6_2(x), self.dense6_3(x)


# ----------------------------------------------------------------------------------------------------------------
# Box arithmetic. Boxes are [K, 4] (x0, y0, x1, y1) in continuous pixel coordinates.


def nms(boxes: Tensor, scores: Tensor, threshold: float, mode: str = "union") -> Tensor:
    """Greedy non-maximum suppression: indices kept, best first. Overlap is intersection over union, or over
    the smaller box (`mode="min"`, which also removes a small box nested in a large one)."""
    x0, y0, x1, y1 = boxes.unbind(1)
    areas = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
    order, keep = scores.argsort(descending=True), []
    while order.numel() > 0:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = (torch.minimum(x1[i], x1[rest]) - torch.maximum(x0[i], x0[rest])).clamp(min=0)
        ih = (torch.minimum(y1[i], y1[rest]) - torch.maximum(y0[i], y0[rest])).clamp(min=0)
        inter = iw * ih
        denom = torch.minimum(areas[i], areas[rest]) if mode == "min" else areas[i] + areas[rest] - inter
        order = rest[inter <= threshold * denom.clamp(min=1e-12)]
    return torch.stack(keep) if keep else torch.zeros(0, dtype=torch.long)


def regress(boxes: Tensor, offsets: Tensor) -> Tensor:
    """Move each side by its offset, in box widths / heights: [K, 4], [K, 4] -> [K, 4]."""
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * wh


def square(boxes: Tensor) -> Tensor:
    """The square with the same centre and the longer side."""
    centre = (boxes[:, :2] + boxes[:, 2:]) * 0.5
    half = (boxes[:, 2:] - boxes[:, :2]).max(1, keepdim=True).values * 0.5
    return torch.cat([centre - half, centre + half], dim=1)


def pyramid_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """Scales at which P-Net's 12-px window covers faces of min_face, min_face/factor, ... up to the short side."""
    scale, side, out = 12.0 / min_face, min(height, width) * 12.0 / min_face, []
    while side >= 12:
        out.append(scale)
        scale, side = scale * factor, side * factor
    return out


def crop_boxes(img: Tensor, boxes: Tensor, size: int) -> Tensor:
    """[1, 3, H, W], [K, 4] -> [K, 3, size, size]: each box (rounded to pixels) resampled, zeros outside the
    image. Only the part inside the image is resized (into its place in the output), so a huge box costs nothing."""
    _, _, h, w = img.shape
    out = img.new_zeros(len(boxes), 3, size, size)
    for k, (x0, y0, x1, y1) in enumerate(boxes.round().tolist()):
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        cx0, cy0, cx1, cy1 = int(max(x0, 0)), int(max(y0, 0)), int(min(x1, w)), int(min(y1, h))
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        ox0, ox1 = round((cx0 - x0) * size / (x1 - x0)), round((cx1 - x0) * size / (x1 - x0))
        oy0, oy1 = round((cy0 - y0) * size / (y1 - y0)), round((cy1 - y0) * size / (y1 - y0))
        ox1, oy1 = max(ox1, ox0 + 1), max(oy1, oy0 + 1)
        out[k, :, oy0:oy1, ox0:ox1] = F.interpolate(
            img[:, :, cy0:cy1, cx0:cx1],
            size=(oy1 - oy0, ox1 - ox0),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )[0]
    return out


def _normalize(x: Tensor) -> Tensor:
    return (x - 127.5) * 0.0078125  # 0..255 -> about [-1, 1], the range the networks were trained on.


# ----------------------------------------------------------------------------------------------------------------
# The cascade.


class MTCNN(nn.Module):
    """`MTCNN().detect(image) -> list[Face]`, best first. Build with `load_mtcnn()` for the real weights."""

    def __init__(
        self,
        min_face: float = MIN_FACE,  # Smallest face searched for, pixels.
        thresholds: tuple[float, float, float] = THRESHOLDS,  # Probability each stage keeps.
        factor: float = SCALE_FACTOR,  # Pyramid step (< 1).
        max_proposals: int = 2000,  # Most P-Net boxes passed on (the most likely); bounds the work per image.
    ) -> None:
        super().__init__()
        self.min_face, self.thresholds, self.factor, self.max_proposals = min_face, thresholds, factor, max_proposals
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.eval()

    def extra_repr(self) -> str:
        return f"min_face={self.min_face}, thresholds={self.thresholds}, factor={self.factor}"

    def _propose(self, img: Tensor) -> tuple[Tensor, Tensor]:
        """Stage 1: P-Net over the pyramid -> boxes [K, 4], scores [K]."""
        _, _, h, w = img.shape
        boxes, scores = [], []
        for scale in pyramid_scales(h, w, self.min_face, self.factor):
            sh, sw = math.ceil(h * scale), math.ceil(w * scale)
            prob, offsets = self.pnet(_normalize(F.interpolate(img, size=(sh, sw), mode="area")))
            ys, xs = torch.nonzero(prob[0] >= self.thresholds[0], as_tuple=True)
            if ys.numel() == 0:
                continue
            windows = torch.stack(
                [xs * 2 / (sw / w), ys * 2 / (sh / h), (xs * 2 + 12) / (sw / w), (ys * 2 + 12) / (sh / h)], dim=1
            ).float()
            found = torch.cat([windows, offsets[0][:, ys, xs].T], dim=1)  # [k, 8]: window, offsets.
            keep = nms(found[:, :4], prob[0, ys, xs], 0.5)
            boxes.append(found[keep])
            scores.append(prob[0, ys, xs][keep])
        if not boxes:
            return img.new_zeros(0, 4), img.new_zeros(0)
        found, score = torch.cat(boxes), torch.cat(scores)
        keep = nms(found[:, :4], score, 0.7)[: self.max_proposals]
        return square(regress(found[keep, :4], found[keep, 4:])), score[keep]

    def _refine(self, img: Tensor, boxes: Tensor) -> Tensor:
        """Stage 2: R-Net re-scores and adjusts -> squared boxes [K, 4]."""
        prob, offsets = self.rnet(_normalize(crop_boxes(img, boxes, 24)))
        ok = prob > self.thresholds[1]
        boxes, prob, offsets = boxes[ok], prob[ok], offsets[ok]
        keep = nms(boxes, prob, 0.7)
        return square(regress(boxes[keep], offsets[keep]))

    def _output(self, img: Tensor, boxes: Tensor) -> list[Face]:
        """Stage 3: O-Net re-scores, adjusts and places landmarks."""
        prob, offsets, marks = self.onet(_normalize(crop_boxes(img, boxes, 48)))
        ok = prob > self.thresholds[2]
        boxes, prob, offsets, marks = boxes[ok], prob[ok], offsets[ok], marks[ok]
        wh = boxes[:, 2:] - boxes[:, :2]
        points_x = boxes[:, :1] + wh[:, :1] * marks[:, :5]  # Continuous coordinates.
        points_y = boxes[:, 1:2] + wh[:, 1:] * marks[:, 5:]
        points = torch.stack([points_x, points_y], dim=2) - 0.5  # [K, 5, 2], pixel-index coordinates.
        boxes = regress(boxes, offsets)
        keep = nms(boxes, prob, 0.7, mode="min")
        return [Face(tuple(boxes[i].tolist()), float(prob[i]), points[i].double().numpy()) for i in keep.tolist()]

    @torch.no_grad()
    def detect(self, image: Image.Image | np.ndarray) -> list[Face]:
        """Faces in an RGB image (PIL, or uint8 [H, W, 3]), most confident first."""
        arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        img = torch.from_numpy(np.array(arr, dtype=np.float32)).permute(2, 0, 1)[None]  # [1, 3, H, W] 0..255
        boxes, _ = self._propose(img)
        if len(boxes):
            boxes = self._refine(img, boxes)
        return self._output(img, boxes) if len(boxes) else []


# ----------------------------------------------------------------------------------------------------------------
# Weights.


def cache_dir() -> Path:
    """Where the MTCNN files are looked for last: $GANFORGE_CACHE/mtcnn, else $XDG_CACHE_HOME/ganforge/mtcnn,
    else ~/.cache/ganforge/mtcnn."""
    if os.environ.get("GANFORGE_CACHE"):
        return Path(os.environ["GANFORGE_CACHE"]).expanduser() / "mtcnn"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ganforge" / "mtcnn"


def package_dir() -> Path | None:
    """`facenet_pytorch/data` of an installed facenet-pytorch, found without importing the package."""
    try:
        spec = importlib.util.find_spec("facenet_pytorch")
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        return Path(root) / "data"
    return None


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in WEIGHT_FILES)


def find_weights(mtcnn_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding pnet.pt, rnet.pt and onet.pt: `mtcnn_dir`, else an installed facenet-pytorch's
    data folder, else `cache_dir()`. Raises WeightsMissing, naming the files and where to get them."""
    if mtcnn_dir is not None:
        folder = Path(mtcnn_dir).expanduser()
        if _complete(folder):
            return folder
        missing = ", ".join(n for n in WEIGHT_FILES if not (folder / n).is_file())
        raise WeightsMissing(
            f"--mtcnn-dir {folder} lacks {missing}: unzip facenet_pytorch/data/pnet.pt, rnet.pt "
            f"and onet.pt from the wheel that `pip download facenet-pytorch --no-deps` saves into it"
        )
    looked = [d for d in (package_dir(), cache_dir()) if d is not None]
    for folder in looked:
        if _complete(folder):
            return folder
    raise WeightsMissing(
        f"the MTCNN weights ({', '.join(WEIGHT_FILES)}) were not found in {' or '.join(map(str, looked))}: run "
        f"`pip download facenet-pytorch --no-deps`, unzip facenet_pytorch/data/*.pt from the wheel into "
        f"{cache_dir()} (or any folder passed as --mtcnn-dir), and run again"
    )


def _load_state(path: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # Tensors only: no code is unpickled.
    except Exception as e:
        reason = (str(e).splitlines() or [""])[0][:120]
        raise WeightsInvalid(
            f"{path} is not a plain state dict ({type(e).__name__}: {reason}): re-extract it from the "
            f"facenet-pytorch wheel"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsInvalid(
            f"{path} holds {type(state).__name__}, not a state dict of tensors: re-extract it "
            f"from the facenet-pytorch wheel"
        )
    return state


def load_networks(model: MTCNN, folder: str | os.PathLike) -> MTCNN:
    """Fill model's P-, R- and O-Net from folder/{pnet,rnet,onet}.pt, checking every key and shape."""
    for name, net in zip(WEIGHT_FILES, (model.pnet, model.rnet, model.onet)):
        path = Path(folder) / name
        state, expected = _load_state(path), net.state_dict()
        wrong = sorted(set(state) ^ set(expected)) or [k for k in state if state[k].shape != expected[k].shape]
        if wrong:
            raise WeightsInvalid(
                f"{path} does not fit {type(net).__name__} (keys or shapes differ: "
                f"{', '.join(wrong[:5])}): use the files of the facenet-pytorch wheel"
            )
        net.load_state_dict(state)
    return model.eval()


def load_mtcnn(mtcnn_dir: str | os.PathLike | None = None, **kwargs) -> MTCNN:
    """An MTCNN with the real weights (see `find_weights`); kwargs go to MTCNN (min_face, thresholds, ...)."""
    return load_networks(MTCNN(**kwargs), find_weights(mtcnn_dir))
