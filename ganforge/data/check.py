"""`ganforge dataset check`: what a dataset holds and every mismatch with a model, one sentence each.

Only image headers are read (sizes and modes), so checking is fast; `ganforge dataset prepare` decodes
every pixel and also finds truncated files.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ganforge.data.convert import oriented_size
from ganforge.data.source import LABELS_NAME, LabelLookup, Source
from ganforge.plan import PlanError, decompose, format_resolution, make_plan, nearest_valid, parse_resolution
from ganforge.plan_compare import compare_data

GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


@dataclass
class DatasetSummary:
    """What `check` found; `mismatches` holds one sentence per problem, each with its fix."""

    path: str  # The dataset folder or zip.
    layout: str  # "stylegan2-ada" when a dataset.json is at the root, else "images".
    images: int = 0  # Image files found (by extension).
    sizes: dict[str, int] = field(default_factory=dict)  # "WxH" (as displayed) -> count, most common first.
    modes: dict[str, int] = field(default_factory=dict)  # Pillow mode -> count.
    channels: int = 3  # What the loader produces: 3 if any image has colour, else 1.
    classes: int = 0  # Label classes (largest class + 1); 0 = no labels.
    label_counts: dict[str, int] = field(default_factory=dict)  # Class -> images.
    unlabeled: int = 0  # Images with no entry in a dataset.json that has labels.
    unreadable: list[dict] = field(default_factory=list)  # {file, reason} for headers that cannot be read.
    ignored: int = 0  # Other files (no image extension, hidden files).
    family: str | None = None  # The model family checked against (None: only scanned).
    mismatches: list[str] = field(default_factory=list)  # One sentence each, with the command that fixes it.

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def scan_dataset(path: str | os.PathLike) -> DatasetSummary:
    """Counts, sizes, modes and labels of a folder or zip, from the image headers."""
    source = Source(path)
    has_json = source.has(LABELS_NAME)
    summary = DatasetSummary(
        str(path), "stylegan2-ada" if has_json else "images", images=len(source.names), ignored=len(source.ignored)
    )
    sizes: Counter = Counter()
    modes: Counter = Counter()
    for name in source.names:
        try:
            with source.open(name) as f, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = Image.open(f)
                w, h = oriented_size(img)
                modes[img.mode] += 1
                sizes[format_resolution(h, w)] += 1
        except UnidentifiedImageError:
            summary.unreadable.append({"file": name, "reason": "not an image Pillow can read (or an empty file)"})
        except Exception as e:  # Header checks only; any failure is reported, never raised.
            summary.unreadable.append({"file": name, "reason": f"{type(e).__name__}: {e}"})
    summary.sizes = dict(sizes.most_common())
    summary.modes = dict(modes.most_common())
    summary.channels = 1 if modes and all(m in GRAY_MODES for m in modes) else 3
    labels = source.labels()
    if labels:
        lookup = LabelLookup(labels)
        found = [lookup.get(n) for n in source.names]
        counts = Counter(c for c in found if c is not None)
        summary.unlabeled = sum(1 for c in found if c is None)
        summary.classes = max(counts) + 1 if counts else 0
        summary.label_counts = {str(k): counts[k] for k in sorted(counts)}
    source.close()
    return summary


def suggested_dest(path: str | os.PathLike, resolution: str) -> str:
    """data/faces or data/faces.zip -> data/faces-256x256.zip."""
    p = Path(path)
    stem = p.stem if p.suffix.lower() == ".zip" else p.name
    return str(p.with_name(f"{stem}-{resolution}.zip"))


def _prepare_cmd(path: str, resolution: str, extra: str = "") -> str:
    return f"`ganforge dataset prepare {path} {suggested_dest(path, resolution)} --resolution {resolution}{extra}`"


def _valid_near(h: int, w: int) -> str:
    if decompose(h, w) is not None:
        return format_resolution(h, w)
    return format_resolution(*nearest_valid(h, w, 1)[0])


FAMILIES = ("stylegan2", "dcgan")


def check_dataset(
    path: str | os.PathLike,
    resolution: str | int | None = None,
    preset: str = "auto",
    cond: bool = False,
    family: str = "stylegan2",
) -> DatasetSummary:
    """scan_dataset plus every mismatch with the model `make_plan(preset, resolution, family=family)` (PlanError if
    invalid). Both families take the sizes `base·2^k` (ganforge.plan.decompose); the model is built as `family`, so
    its own rules apply."""
    if family not in FAMILIES:
        raise PlanError(f"--family {str(family)[:40]!r} is not a model family: use stylegan2 or dcgan")
    s = scan_dataset(path)
    s.family = family
    where = str(path)
    want = parse_resolution(resolution) if resolution is not None else None
    readable = s.images - len(s.unreadable)
    if readable == 0:
        s.mismatches.append(
            f"{where} holds no readable images: give a folder or zip of images, or build one with "
            f"`ganforge dataset prepare`."
        )
        return s
    sizes = [parse_resolution(k) for k in s.sizes]  # (H, W), most common first.
    if len(sizes) > 1:
        top = ", ".join(f"{k}: {n}" for k, n in list(s.sizes.items())[:3]) + (", ..." if len(sizes) > 3 else "")
        res = format_resolution(*want) if want else _valid_near(*sizes[0])
        s.mismatches.append(
            f"the images have {len(sizes)} different sizes ({top}) but a model needs one: make them "
            f"one size with {_prepare_cmd(where, res)}."
        )
    elif want is None and decompose(*sizes[0]) is None:
        res = _valid_near(*sizes[0])
        s.mismatches.append(
            f"no {family} model can be built at {format_resolution(*sizes[0])} (WxH; sizes must be "
            f"base·2^k): resize the data with {_prepare_cmd(where, res)}."
        )
    model_hw = want or (sizes[0] if decompose(*sizes[0]) is not None else None)
    if model_hw is not None:
        plan = make_plan(preset, format_resolution(*model_hw), family=family, c_dim=s.classes if cond else 0)
        data_hw = sizes[0] if len(sizes) == 1 else model_hw
        report = compare_data(plan, [s.channels, *data_hw], s.classes if cond else 0)
        s.mismatches.extend(m.sentence for m in report.mismatches)
    if cond and s.classes == 0:
        res = format_resolution(*(model_hw or sizes[0]))
        s.mismatches.append(
            f"the model is conditional (--cond) but {where} has no labels: add them with "
            f"{_prepare_cmd(where, res, ' --labels FILE')}, or train without --cond."
        )
    if s.classes and s.unlabeled:
        s.mismatches.append(
            f"{s.unlabeled} images have no label in {LABELS_NAME}: give every image a class with "
            f"{_prepare_cmd(where, format_resolution(*(model_hw or sizes[0])), ' --labels FILE')}."
        )
    if s.unreadable:
        first = s.unreadable[0]["file"]
        s.mismatches.append(
            f"{len(s.unreadable)} files cannot be read (first: {first}): "
            f"`ganforge dataset prepare` skips them, or delete them."
        )
    return s
