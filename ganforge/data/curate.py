"""`ganforge dataset curate`: score every image, keep the good ones in the official layout, explain the rest.

For each image in SRC (a folder or zip, as for `prepare`), in this order:

1. Faces (`faces="filter"` or `"align"`): MTCNN finds faces with 5 landmarks (`ganforge.data.mtcnn`); a face
   counts when its probability is at least `min_confidence`. Rejected: no face, or more than one when
   `face_count="one"`; the largest face's eye line tilted beyond `max_tilt` degrees; its eyes' midpoint off the
   nose/mouth centre line by more than `max_eye_offset` eye distances (a yaw proxy, `faces.eye_offset`).
   `"align"` writes the FFHQ-aligned crop of that face; `"filter"` writes the whole image.
2. The output image: the aligned crop, or the image fitted to `resolution` as `prepare` does (`fit`).
3. Blur: variance of the Laplacian at 256 px (`quality.blur_score`), rejected below `blur`.
4. Symmetry: left/right mirror symmetry at 64 px (`quality.symmetry_score`), rejected below `symmetry`; of the
   inner face in the aligned crop when a face was found, else of the whole output image.

Kept images are written as `prepare` writes them (`00000/img00000000.png`, ..., `dataset.json`, atomically;
labels of SRC's `dataset.json` are carried over). Beside DEST go `DEST.curate.csv`, one row per source file with
every score, the decision and its reasons, and `DEST.rejected.png`, a contact sheet of the rejected images
with their reasons for review. Both sit outside DEST so that no tool reads them as part of the dataset.

Thresholds depend on the data (CelebA's 128-px faces score blur 5/13/33 at the 5th/50th/95th percentiles, sharp
256-px photos hundreds), so the summary holds the percentiles of every score; `dry_run` scores and decides
without writing anything, to choose the thresholds before a real run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from ganforge.data.convert import Target, fit_image, load_oriented, oriented_size, parse_background, to_mode
from ganforge.data.faces import Face, align_face, eye_offset, main_face, tilt_degrees
from ganforge.data.prepare import _check_paths
from ganforge.data.quality import FACE_REGION, blur_score, symmetry_score
from ganforge.data.source import LABELS_NAME, LabelLookup, Source
from ganforge.data.writer import Writer, output_name, remove, write_atomic
from ganforge.errors import GanforgeError
from ganforge.plan import parse_resolution

__all__ = ["CurateError", "CurateOptions", "NothingKept", "Row", "curate_dataset", "curate_paths", "contact_sheet"]

FACE_MODES = ("filter", "align")
FACE_COUNTS = ("one", "any")
THUMB = 128  # Contact sheet thumbnail side, pixels.
THRESHOLD_RANGES = {  # flag -> (option, lowest, highest); NaN or inf would silently keep or drop every image.
    "--blur": ("blur", 0.0, 1e7),  # Laplacian variance of 8-bit pixels stays below ~4e6.
    "--confidence": ("min_confidence", 0.0, 1.0),  # A probability.
    "--max-tilt": ("max_tilt", 0.0, 180.0),  # Degrees.
    "--max-eye-offset": ("max_eye_offset", 0.0, 10.0),  # Eye distances; 0.25 keeps near-frontal faces.
    "--symmetry": ("symmetry", 0.0, 1.0),  # The score is 0..1.
}
SHEET_COLUMNS = 8


class CurateError(GanforgeError, ValueError):
    """The job cannot run as asked; the message says what to change."""


class NothingKept(CurateError):
    """Every image was rejected; the CSV and contact sheet were still written."""


@dataclass(frozen=True)
class CurateOptions:
    """Settings of `curate_dataset` (the CLI flags of `ganforge dataset curate`)."""

    resolution: str | int = 256  # Output size: 256 or WxH (faces="align" needs a square size).
    fit: str = "crop"  # Images that are not aligned: crop | pad | stretch, as in `prepare`.
    background: str = "white"  # Fill for transparent pixels and padding: white | black | #rrggbb.
    blur: float | None = None  # Reject a blur score (Laplacian variance at 256 px) below this; None = off.
    faces: str | None = None  # None = no face step | "filter" = keep images with faces | "align" = aligned crops.
    face_count: str = "one"  # "one" = exactly one face | "any" = at least one (the largest is used).
    min_confidence: float = 0.9  # A detection counts as a face at this MTCNN probability or above.
    max_tilt: float | None = None  # Reject an eye line rotated more than this, degrees; None = off.
    max_eye_offset: float | None = None  # Reject eyes this far off the nose/mouth line, in eye distances; None = off.
    symmetry: float | None = None  # Reject a symmetry score (0..1) below this; None = off.
    mtcnn_dir: str | os.PathLike | None = None  # Folder with pnet.pt, rnet.pt, onet.pt; None = package, then cache.
    min_face: int = 20  # Smallest face MTCNN looks for, pixels of the detection image.
    detect_side: int = 1024  # Larger images are shrunk to this long side for detection (landmarks scaled back).
    pad: bool = True  # faces="align": fill outside the photo by blurred reflection (FFHQ); False = black.
    sheet_max: int = 512  # Most thumbnails on the contact sheet (the first rejected files); 0 = no sheet.
    compress_level: int = 1  # PNG zlib level 0..9.
    force: bool = False  # Replace DEST if it already exists.
    dry_run: bool = False  # Score and decide only: nothing is written (DEST may be None).


@dataclass
class Row:
    """One source file's scores and decision: a row of the CSV (empty cells = not measured)."""

    file: str  # Relative POSIX name in SRC.
    blur: float | None = None  # Laplacian variance at 256 px.
    faces: int | None = None  # Faces at or above min_confidence.
    confidence: float | None = None  # Probability of the face used (or the best detection when none counts).
    tilt_deg: float | None = None  # Eye-line angle, degrees.
    eye_offset: float | None = None  # Signed yaw proxy, eye distances.
    symmetry: float | None = None  # Mirror symmetry, 0..1.
    kept: bool = False
    reason: str = ""  # Why it was rejected, "; "-separated.
    output: str = ""  # Its name in DEST when kept.
    kinds: list[str] = field(default_factory=list, repr=False)  # Rejection kinds (not in the CSV).


CSV_COLUMNS = [f.name for f in fields(Row) if f.name != "kinds"]


def curate_paths(dest: str | os.PathLike) -> tuple[Path, Path]:
    """(CSV, contact sheet) beside DEST: DEST.curate.csv and DEST.rejected.png."""
    dest = Path(dest)
    return Path(f"{dest}.curate.csv"), Path(f"{dest}.rejected.png")


# ----------------------------------------------------------------------------------------------------------------
# One image.


@dataclass(frozen=True)
class _Job:
    opts: CurateOptions
    target: Target  # Output size and fit; RGB.
    detect: Callable[[Image.Image], list[Face]] | None  # None = no face step.
    labels: LabelLookup | None  # SRC's dataset.json labels, or None.


def _reject(row: Row, kind: str, text: str) -> None:
    row.kinds.append(kind)
    row.reason = f"{row.reason}; {text}" if row.reason else text


def _open(source: Source, name: str, job: _Job) -> Image.Image:
    """Decoded, upright RGB. Full resolution when aligning (the face is a part of the photo); else JPEGs may be
    decoded at a reduced size that still covers twice the output."""
    data = source.read(name)
    if not data:
        raise ValueError("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img: Image.Image = Image.open(io.BytesIO(data))
        w, h = oriented_size(img)
        img, _ = load_oriented(img, Target(h, w) if job.opts.faces == "align" else job.target)
        img, _ = to_mode(img, job.target)
    return img


def _detect(img: Image.Image, job: _Job) -> list[Face]:
    """Faces, detected on a copy whose long side is at most detect_side, in img's pixels."""
    detect = job.detect
    assert detect is not None  # The face step runs only with a detector.
    scale = min(1.0, job.opts.detect_side / max(img.size))
    if scale >= 1.0:
        return detect(img)
    small = img.resize(
        (max(1, round(img.width * scale)), max(1, round(img.height * scale))),
        Image.Resampling.BILINEAR,
        reducing_gap=2.0,
    )
    return [f.scaled(img.width / small.width) for f in detect(small)]


def _face_step(img: Image.Image, row: Row, job: _Job) -> Face | None:
    """Count faces and check the main one's pose; returns the face to align (None when there is none)."""
    o = job.opts
    found = _detect(img, job)
    faces = [f for f in found if f.score >= o.min_confidence]
    row.faces = len(faces)
    face = main_face(faces)
    row.confidence = round(face.score if face else max((f.score for f in found), default=math.nan), 4)
    if face is None:
        _reject(row, "no-face", f"no face >= {o.min_confidence:g}")
        return None
    if len(faces) > 1 and o.face_count == "one":
        _reject(row, "faces", f"{len(faces)} faces")
    row.tilt_deg = round(tilt_degrees(face.landmarks), 2)
    row.eye_offset = round(eye_offset(face.landmarks), 4)
    if o.max_tilt is not None and abs(row.tilt_deg) > o.max_tilt:
        _reject(row, "tilt", f"tilt {row.tilt_deg:.1f} deg > {o.max_tilt:g}")
    if o.max_eye_offset is not None and abs(row.eye_offset) > o.max_eye_offset:
        _reject(row, "eye-offset", f"eye offset {abs(row.eye_offset):.3f} > {o.max_eye_offset:g}")
    return face


def _score(img: Image.Image, out: Image.Image, face: Face | None, row: Row, job: _Job) -> None:
    """Blur of the output image; symmetry of the aligned inner face (else of the whole output)."""
    o = job.opts
    row.blur = round(blur_score(out), 2)
    if face is None:
        row.symmetry = round(symmetry_score(out), 4)
    else:
        aligned = out if o.faces == "align" else align_face(img, face.landmarks, 128, o.pad)
        row.symmetry = round(symmetry_score(aligned, region=FACE_REGION), 4)
    if o.blur is not None and row.blur < o.blur:
        _reject(row, "blur", f"blur {row.blur:.1f} < {o.blur:g}")
    if o.symmetry is not None and row.symmetry < o.symmetry:
        _reject(row, "symmetry", f"symmetry {row.symmetry:.3f} < {o.symmetry:g}")


def curate_one(source: Source, name: str, job: _Job) -> tuple[Row, Image.Image | None]:
    """Scores and decision for one file, with the image to write (kept) or show (rejected); never raises for
    a bad file."""
    row = Row(name)
    if job.labels is not None and job.labels.get(name) is None:
        _reject(row, "no-label", "no label in SRC's dataset.json")
        return row, None
    try:
        img = _open(source, name, job)
    except UnidentifiedImageError:
        _reject(row, "unreadable", "unreadable: not an image Pillow can read")
        return row, None
    except Exception as e:  # Corrupt, truncated or exotic files must not stop the job.
        _reject(row, "unreadable", f"unreadable: {type(e).__name__}: {e}")
        return row, None
    face = _face_step(img, row, job) if job.detect is not None else None
    size = job.target.width
    out = align_face(img, face.landmarks, size, job.opts.pad) if job.opts.faces == "align" and face else None
    out = out if out is not None else fit_image(img, job.target)
    _score(img, out, face, row, job)
    row.kept = not row.kinds
    return row, out


# ----------------------------------------------------------------------------------------------------------------
# Report: CSV and contact sheet.


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(int(value)) if isinstance(value, bool) else str(value)


def write_csv(rows: list[Row], path: Path) -> None:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(CSV_COLUMNS)
    for row in rows:
        out.writerow([_cell(v) for v in astuple(row)[: len(CSV_COLUMNS)]])
    write_atomic(path, buf.getvalue().encode("utf-8"))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int, lines: int) -> list[str]:
    """Greedy word wrap to `width` pixels, at most `lines` lines (the last one cut with '...')."""
    out, line = [], ""
    for word in text.replace(";", "; ").split():
        trial = f"{line} {word}" if line else word
        if draw.textlength(trial, font=font) <= width or not line:
            line = trial
        else:
            out.append(line)
            line = word
    out.append(line)
    if len(out) > lines:
        out = out[: lines - 1] + [out[lines - 1] + " ..."]
    return out


def _thumbnail(img: Image.Image) -> Image.Image:
    """At most THUMB x THUMB, aspect kept (a copy: the sheet holds only these small images)."""
    thumb = img.copy()
    thumb.thumbnail((THUMB, THUMB))
    return thumb


def _tile(thumb: Image.Image | None, caption: str, font, line_h: int) -> Image.Image:
    """A THUMB-wide tile: the thumbnail (grey when unreadable) over the caption."""
    lines = 4
    tile = Image.new("RGB", (THUMB, THUMB + lines * line_h + 4), "white")
    if thumb is None:
        tile.paste((160, 160, 160), (0, 0, THUMB, THUMB))
    else:
        thumb = _thumbnail(thumb)
        tile.paste(thumb, ((THUMB - thumb.width) // 2, (THUMB - thumb.height) // 2))
    draw = ImageDraw.Draw(tile)
    for i, text in enumerate(_wrap(draw, caption, font, THUMB - 4, lines)):
        draw.text((2, THUMB + 2 + i * line_h), text, fill="black", font=font)
    return tile


def contact_sheet(items: list[tuple[str, Image.Image | None, str]], columns: int = SHEET_COLUMNS) -> Image.Image:
    """Thumbnails of (file, image or None, reason) with the file name and reason under each."""
    font = ImageFont.load_default()
    line_h = int(font.getbbox("Ag")[3]) + 2
    tiles = [_tile(img, f"{name}: {reason}", font, line_h) for name, img, reason in items]
    cols = max(1, min(columns, len(tiles)))
    w, h = tiles[0].size if tiles else (THUMB, THUMB)
    sheet = Image.new("RGB", (cols * (w + 4) + 4, math.ceil(len(tiles) / cols) * (h + 4) + 4), (224, 224, 224))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (4 + (i % cols) * (w + 4), 4 + (i // cols) * (h + 4)))
    return sheet


# ----------------------------------------------------------------------------------------------------------------
# The job.


def _check_thresholds(o: CurateOptions) -> None:
    for flag, (name, lo, hi) in THRESHOLD_RANGES.items():
        value = getattr(o, name)
        if value is not None and not (math.isfinite(value) and lo <= value <= hi):
            raise CurateError(f"{flag} {value:g}: pass a number in {lo:.10g}..{hi:.10g}, or leave it out")


def _make_job(o: CurateOptions, labels: dict[str, int] | None) -> _Job:
    h, w = parse_resolution(o.resolution)
    _check_thresholds(o)
    if o.faces not in (None, *FACE_MODES):
        raise CurateError(f"faces={o.faces!r} is not a mode: use align, filter, or leave it out")
    if o.face_count not in FACE_COUNTS:
        raise CurateError(f"face_count={o.face_count!r} is not known: use one (exactly one face) or any")
    if o.faces == "align" and h != w:
        raise CurateError(f"--faces align writes square crops, but the resolution is {w}x{h}: give a square size")
    if not 0 <= o.compress_level <= 9:
        raise CurateError(f"compress_level={o.compress_level} must be 0..9 (PNG zlib level)")
    try:
        target = Target(h, w, 3, o.fit, parse_background(o.background))
    except ValueError as e:
        raise CurateError(str(e)) from None
    detect = None
    if o.faces is not None:
        from ganforge.data.mtcnn import WeightsMissing, load_mtcnn  # torch is only needed with faces.

        try:
            detect = load_mtcnn(o.mtcnn_dir, min_face=o.min_face).detect
        except WeightsMissing as e:
            raise CurateError(str(e)) from None
    return _Job(o, target, detect, LabelLookup(labels) if labels is not None else None)


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("curating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def _write_reports(rows: list[Row], rejected: list, dest: Path, sheet_max: int) -> tuple[Path, Path | None]:
    csv_path, sheet_path = curate_paths(dest)
    write_csv(rows, csv_path)
    if not rejected or sheet_max <= 0:
        remove(sheet_path)  # A sheet left by an earlier run would describe other rejections.
        return csv_path, None
    buf = io.BytesIO()
    contact_sheet(rejected).save(buf, "PNG")
    write_atomic(sheet_path, buf.getvalue())
    return csv_path, sheet_path


# Percentiles of each score printed by the CLI and returned in the summary: what a threshold would keep.
PERCENTILES = (5, 10, 25, 50, 75, 90, 95)
SCORES = {  # Row field -> the option that thresholds it (tilt and eye offset are compared by size).
    "blur": "--blur",
    "symmetry": "--symmetry",
    "confidence": "--confidence",
    "tilt_deg": "--max-tilt",
    "eye_offset": "--max-eye-offset",
}


def score_percentiles(rows: list[Row]) -> dict[str, dict[str, float]]:
    """{score: {"p5": …, "p50": …, "p95": …}} over the files where the score was measured (tilt and eye offset
    by their size, as the thresholds compare them); scores measured on no file are left out."""
    out = {}
    for name in SCORES:
        values = [v for r in rows if (v := getattr(r, name)) is not None and math.isfinite(v)]
        if name in ("tilt_deg", "eye_offset"):
            values = [abs(v) for v in values]
        if values:
            qs = np.percentile(np.asarray(values, dtype=np.float64), PERCENTILES)
            out[name] = {f"p{p}": round(float(q), 4) for p, q in zip(PERCENTILES, qs)}
    return out


def _dry_run(src: Path, source: Source, job: _Job, progress: bool) -> dict:
    """Every file scored and decided as `curate_dataset` would; nothing written."""
    start = time.perf_counter()
    rows: list[Row] = []
    with _progress(progress) as bar:
        task = bar.add_task("curate", total=len(source.names))
        for name in source.names:
            rows.append(curate_one(source, name, job)[0])
            bar.advance(task)
    reasons = Counter(kind for row in rows for kind in row.kinds)
    kept = sum(row.kept for row in rows)
    return {
        "source": str(src),
        "dest": None,
        "dry_run": True,
        "read": len(rows),
        "kept": kept,
        "rejected": len(rows) - kept,
        "reasons": dict(reasons.most_common()),
        "scores": score_percentiles(rows),
        "csv": None,
        "sheet": None,
        "seconds": round(time.perf_counter() - start, 3),
    }


def curate_dataset(
    src: str | os.PathLike,
    dest: str | os.PathLike | None,
    options: CurateOptions | None = None,
    *,
    progress: bool = False,
) -> dict:
    """Score and filter SRC into DEST; returns a summary (counts, reasons, percentiles of every score, paths of the
    CSV and sheet). With `options.dry_run`, only scores and decides: nothing is written and DEST may be None."""
    opts = options or CurateOptions()
    src = Path(src)
    source = Source(src)
    if opts.dry_run:
        job = _make_job(opts, source.labels())
        if not source.names:
            raise NothingKept(f"nothing to curate in {src}: it holds no image files; give a folder or zip of images")
        return _dry_run(src, source, job, progress)
    if dest is None:
        raise CurateError("no DEST was given: name the output folder or .zip, or pass --dry-run to only score")
    dest = Path(dest)
    _check_paths(src, dest, opts.force)
    job = _make_job(opts, source.labels())
    if not source.names:  # Refused before the CSV or DEST is written.
        raise _nothing_kept(src, source, Counter(), curate_paths(dest)[0])
    start = time.perf_counter()
    rows: list[Row] = []
    rejected: list[tuple[str, Image.Image | None, str]] = []  # (name, thumbnail or None when unreadable, reason)
    written: list[list] = []  # dataset.json's labels: [output name, label or None]
    reasons: Counter[str] = Counter()
    with Writer(dest) as writer:
        with _progress(progress) as bar:
            task = bar.add_task("curate", total=len(source.names))
            for name in source.names:
                row, img = curate_one(source, name, job)
                rows.append(row)
                reasons.update(row.kinds)
                if row.kept:
                    assert img is not None  # A kept file always has its output image.
                    row.output = output_name(len(written))
                    buf = io.BytesIO()
                    img.save(buf, "PNG", compress_level=opts.compress_level)
                    writer.add(row.output, buf.getvalue())
                    written.append([row.output, job.labels.get(name) if job.labels else None])
                elif len(rejected) < opts.sheet_max:
                    rejected.append((name, None if img is None else _thumbnail(img), row.reason))
                bar.advance(task)
        csv_path, sheet_path = _write_reports(rows, rejected, dest, opts.sheet_max)
        if not written:
            raise _nothing_kept(src, source, reasons, csv_path)
        writer.add(LABELS_NAME, _labels_json(written, job.labels is not None))
    return {
        "source": str(src),
        "dest": str(dest),
        "read": len(rows),
        "kept": len(written),
        "rejected": len(rows) - len(written),
        "reasons": dict(reasons.most_common()),
        "scores": score_percentiles(rows),
        "csv": str(csv_path),
        "sheet": str(sheet_path) if sheet_path else None,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _labels_json(written: list[list], labelled: bool) -> bytes:
    return json.dumps({"labels": written if labelled else None}).encode()


def _nothing_kept(src: Path, source: Source, reasons: Counter, csv_path: Path) -> NothingKept:
    if not source.names:
        return NothingKept(f"nothing to curate in {src}: it holds no image files; give a folder or zip of images")
    parts = ", ".join(f"{n} {k}" for k, n in reasons.most_common())
    return NothingKept(
        f"all {len(source.names)} images in {src} were rejected ({parts}): see {csv_path} for the "
        f"scores and loosen the thresholds that rejected them"
    )
