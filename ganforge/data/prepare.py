"""`ganforge dataset prepare`: any folder or zip of images -> one StyleGAN2-ADA dataset.

Output layout (as the official dataset_tool writes it): `00000/img00000000.png`, `00000/img00000001.png`,
... (1000 images per folder) plus `dataset.json` (`{"labels": [[name, class], ...]}` or `{"labels": null}`),
as a folder or as an uncompressed zip (ZIP_STORED) when DEST ends in `.zip`. The output is built under a
temporary name beside DEST and renamed into place at the end, so DEST is either complete or absent.

Bad input never stops the job: empty, corrupt, truncated or non-image files, images that are too small or
too far from the target's aspect ratio, and exact duplicates are skipped or adjusted, one entry each in
`report.json` (inside a DEST folder; `DEST.report.json` beside a zip). Duplicates are found by the SHA-1
of the decoded pixels after conversion (plus the label), so the same picture saved as PNG and as BMP
counts as a duplicate too. Nothing in SRC is ever written.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing
import os
import time
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ganforge.data.convert import (
    Note,
    Target,
    aspect_distortion,
    convert_image,
    hex_colour,
    oriented_size,
    parse_background,
    scale_needed,
)
from ganforge.data.source import IMAGE_EXTENSIONS, LABELS_NAME, LabelLookup, Source, load_labels_file
from ganforge.data.writer import Writer, output_name, report_path
from ganforge.errors import GanforgeError
from ganforge.plan import decompose, format_resolution, nearest_valid, parse_resolution

__all__ = ["NothingUsable", "PrepareError", "PrepareOptions", "convert_one", "prepare_dataset", "report_path"]

SMALL_POLICIES = ("upscale", "skip")
MAX_ASPECT = 1000.0  # --max-aspect: beyond this every image passes anyway; inf and NaN are refused.
MAX_WORKERS = 64  # --workers: conversion processes (each holds a decoded image); more only thrashes.
SKIP_PHRASES = {  # kind -> how the failure summary names it.
    "empty": "empty",
    "not-image": "not images",
    "corrupt": "corrupt or truncated",
    "too-large": "too large to decode",
    "small": "smaller than the target",
    "aspect": "beyond --max-aspect",
    "no-label": "without a label",
    "unreadable": "unreadable",
}
SKIP_HINTS = {
    "small": "use --small upscale to keep small images",
    "aspect": "raise --max-aspect to keep very wide or tall images",
    "no-label": "check that the names in the labels file match the files in SRC",
}


class PrepareError(GanforgeError, ValueError):
    """The job cannot run as asked; the message says what to change."""


class NothingUsable(PrepareError):
    """Every file was skipped (or there were none); nothing was written."""


@dataclass(frozen=True)
class PrepareOptions:
    """Settings of `prepare_dataset` (the CLI flags of `ganforge dataset prepare`)."""

    resolution: str | int = 256  # Output size: 256 (square) or WxH such as 512x256.
    fit: str = "crop"  # crop (cover, center crop) | pad (fit, pad with background) | stretch (ignore aspect).
    channels: int = 3  # 3 = RGB, 1 = grayscale.
    labels: str | os.PathLike | None = None  # JSON/CSV file: relative file name -> class; None = SRC's dataset.json.
    background: str = "white"  # white | black | #rrggbb: fill for transparent pixels and padding.
    small: str = "upscale"  # Images smaller than the target: upscale (with a report entry) | skip.
    max_aspect: float = 4.0  # Skip images whose aspect ratio is more than this factor from the target's.
    workers: int = 2  # Conversion processes; 0 or 1 = convert in this process.
    compress_level: int = 1  # PNG zlib level 0..9 (0 = stored, as the official dataset_tool writes).
    force: bool = False  # Replace DEST if it already exists.


@dataclass(frozen=True)
class _Job:
    target: Target  # Output mode, size, fit and background.
    small: str  # upscale | skip.
    max_aspect: float  # Aspect-ratio tolerance as a factor.
    compress_level: int  # PNG zlib level.


@dataclass
class Converted:
    name: str  # Source file (relative POSIX name).
    png: bytes | None = None  # Encoded output; None when skipped.
    digest: str = ""  # SHA-1 of the output pixels.
    notes: list[Note] = field(default_factory=list)  # Adjustments made (kind, text).
    skip: Note | None = None  # Why it was skipped (kind, text).


def _skip(name: str, kind: str, text: str) -> Converted:
    return Converted(name, skip=(kind, text))


def convert_one(source: Source, job: _Job, name: str) -> Converted:
    """Read, check, convert and encode one file; every failure becomes a skip with its reason."""
    t = job.target
    try:
        data = source.read(name)
        if not data:
            return _skip(name, "empty", "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img: Image.Image = Image.open(io.BytesIO(data))
            w, h = oriented_size(img)
            distortion = aspect_distortion(w, h, t)
            if distortion > job.max_aspect:
                return _skip(
                    name,
                    "aspect",
                    f"{w}x{h} is {distortion:.1f}x away from the target's aspect ratio "
                    f"({t.width}x{t.height}), above --max-aspect {job.max_aspect:g}",
                )
            notes: list[Note] = []
            scale = scale_needed(w, h, t)
            if scale > 1:
                if job.small == "skip":
                    return _skip(
                        name,
                        "small",
                        f"{w}x{h} is smaller than {t.width}x{t.height} "
                        f"(it would need {scale:.2f}x upscaling; --small upscale keeps it)",
                    )
                notes.append(("upscaled", f"{w}x{h} upscaled {scale:.2f}x (smaller than {t.width}x{t.height})"))
            img, more = convert_image(img, t)
    except UnidentifiedImageError:
        return _skip(name, "not-image", "not an image Pillow can read (wrong extension or unknown format)")
    except Image.DecompressionBombError as e:
        return _skip(name, "too-large", f"too many pixels to decode safely ({e})")
    except (OSError, SyntaxError, EOFError, ValueError, IndexError, TypeError) as e:
        return _skip(name, "corrupt", f"corrupt or truncated: {e}")
    except Exception as e:  # A decoder bug on one file must not stop the job.
        return _skip(name, "unreadable", f"unreadable: {type(e).__name__}: {e}")
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=job.compress_level)
    return Converted(name, buf.getvalue(), hashlib.sha1(img.tobytes()).hexdigest(), notes + more)


_WORKER: dict = {}


def _init_worker(source: Source, job: _Job) -> None:
    _WORKER["source"], _WORKER["job"] = source, job


def _worker_convert_many(names: list[str]) -> list[Converted]:
    return [convert_one(_WORKER["source"], _WORKER["job"], n) for n in names]


@contextmanager
def _converter(source: Source, job: _Job, workers: int) -> Iterator[Callable[[list[str]], Iterator[Converted]]]:
    """A function names -> results in order, backed by a process pool when workers > 1."""
    if workers <= 1:
        yield lambda names: (convert_one(source, job, n) for n in names)
        return
    with multiprocessing.get_context().Pool(workers, _init_worker, (source, job)) as pool:
        yield lambda names: _bounded_imap(pool, names, workers)


def _bounded_imap(pool, names: list[str], workers: int) -> Iterator[Converted]:
    """Results in order, with at most 3 chunks per worker in flight: a slow disk cannot make them pile up."""
    chunk = max(1, min(16, len(names) // (16 * workers)))
    pending: deque = deque()
    for i in range(0, len(names), chunk):
        pending.append(pool.apply_async(_worker_convert_many, (names[i : i + chunk],)))
        if len(pending) >= 3 * workers:
            yield from pending.popleft().get()
    while pending:
        yield from pending.popleft().get()


def _check_paths(src: Path, dest: Path, force: bool) -> None:
    if not str(dest).strip() or dest == Path("."):
        raise PrepareError(f"DEST {str(dest)!r} names no new dataset: give a folder or .zip name such as data-256.zip")
    folder = dest.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise PrepareError(f"DEST {dest}: {folder} is a file, so no folder can be made under it; choose another DEST")
    s, d = src.resolve(), dest.resolve()
    if s == d or d.is_relative_to(s):
        raise PrepareError(
            f"DEST {dest} is inside SRC {src}: write the dataset outside the source so SRC stays untouched"
        )
    if s.is_relative_to(d):
        raise PrepareError(f"SRC {src} is inside DEST {dest}: choose a DEST that does not contain the source")
    if dest.suffix.lower() == ".zip" and dest.is_dir():
        raise PrepareError(f"DEST {dest} is a folder named like a zip: choose another DEST")
    empty_dir = dest.is_dir() and not any(dest.iterdir())
    if dest.exists() and not empty_dir and not force:
        raise PrepareError(f"DEST {dest} already exists: choose another DEST or pass --force to replace it")


def _make_job(options: PrepareOptions) -> _Job:
    h, w = parse_resolution(options.resolution)
    if options.small not in SMALL_POLICIES:
        raise PrepareError(f"small={options.small!r} is not a policy: use upscale or skip")
    if not (math.isfinite(options.max_aspect) and 1 <= options.max_aspect <= MAX_ASPECT):
        raise PrepareError(
            f"--max-aspect {options.max_aspect:g}: pass a factor in 1..{MAX_ASPECT:g} (1 = only the "
            f"target's exact shape, 4 default)"
        )
    if not 0 <= options.workers <= MAX_WORKERS:
        raise PrepareError(f"--workers {options.workers}: pass 0..{MAX_WORKERS} conversion processes (0 or 1 = none)")
    if not 0 <= options.compress_level <= 9:
        raise PrepareError(f"compress_level={options.compress_level} must be 0..9 (PNG zlib level)")
    try:
        target = Target(h, w, options.channels, options.fit, parse_background(options.background))
    except ValueError as e:
        raise PrepareError(str(e)) from None
    return _Job(target, options.small, float(options.max_aspect), options.compress_level)


def _nothing_usable(src: Path, source: Source, reasons: Counter, target: Target) -> NothingUsable:
    if not source.names:
        other = f" (only {len(source.ignored)} other files)" if source.ignored else ""
        exts = ", ".join(sorted(IMAGE_EXTENSIONS)[:6])
        return NothingUsable(
            f"nothing usable was found in {src}: it holds no image files{other}; give a folder "
            f"or zip of images ({exts}, ...)"
        )
    parts = ", ".join(f"{n} {SKIP_PHRASES.get(k, k)}" for k, n in reasons.most_common())
    hints = [SKIP_HINTS[k] for k in reasons if k in SKIP_HINTS]
    hint = "; " + "; ".join(hints) if hints else "; see the reasons above"
    return NothingUsable(
        f"nothing usable was found in {src}: all {len(source.names)} image files were skipped "
        f"for {target.width}x{target.height} ({parts}){hint}."
    )


def _model_warning(target: Target) -> str | None:
    if decompose(target.height, target.width) is not None:
        return None
    near = [format_resolution(h, w) for h, w in nearest_valid(target.height, target.width)] or ["64x64"]
    size = f"{target.width}x{target.height}"
    choices = near[0] if len(near) == 1 else f"{', '.join(near[:-1])} or {near[-1]}"
    return (
        f"no model can be built at {size} (sizes must be base·2^k with a small base): the data is written at "
        f"{size} anyway, but to train on it prepare it at a nearest valid size, {choices} "
        f"(e.g. --resolution {near[0]})"
    )


def _label_source(source: Source, options: PrepareOptions, warn: list[str]) -> tuple[LabelLookup | None, str]:
    if options.labels is not None:
        if source.has(LABELS_NAME):
            warn.append(f"labels come from {options.labels}; the {LABELS_NAME} in SRC is ignored")
        return LabelLookup(load_labels_file(options.labels)), str(options.labels)
    labels = source.labels()
    return (LabelLookup(labels), f"{LABELS_NAME} in SRC") if labels is not None else (None, "")


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("converting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


@dataclass
class _Tally:
    """What happened to each file, in source order; it becomes the report."""

    written: list[list] = field(default_factory=list)  # [output name, label] per written image.
    entries: list[dict] = field(default_factory=list)  # {file, action, reason} per skipped/duplicate/adjusted file.
    reasons: Counter = field(default_factory=Counter)  # kind -> files.
    seen: dict = field(default_factory=dict)  # (pixel digest, label) -> first source file with them.
    duplicates: int = 0
    adjusted: int = 0

    def skip(self, name: str, kind: str, reason: str) -> None:
        self.reasons[kind] += 1
        self.entries.append({"file": name, "action": "skipped", "reason": reason})

    def take(self, res: Converted, label: int | None, writer: Writer) -> None:
        if res.skip is not None:
            self.skip(res.name, *res.skip)
            return
        assert res.png is not None  # Only a skipped file has no PNG.
        first = self.seen.setdefault((res.digest, label), res.name)
        if first != res.name:
            self.duplicates += 1
            self.entries.append({"file": res.name, "action": "duplicate", "reason": f"same pixels as {first}"})
            return
        out = output_name(len(self.written))
        writer.add(out, res.png)
        self.written.append([out, label])
        if res.notes:
            self.adjusted += 1
            self.reasons.update(kind for kind, _ in res.notes)
            self.entries.append(
                {
                    "file": res.name,
                    "action": "adjusted",
                    "output": out,
                    "reason": "; ".join(text for _, text in res.notes),
                }
            )


def prepare_dataset(
    src: str | os.PathLike,
    dest: str | os.PathLike,
    options: PrepareOptions | None = None,
    *,
    progress: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> dict:
    """Convert SRC (folder, zip or official dataset) into DEST; returns the report (also written as JSON)."""
    opts = options or PrepareOptions()
    src, dest = Path(src), Path(dest)
    job = _make_job(opts)
    source = Source(src)
    _check_paths(src, dest, opts.force)
    if not source.names:
        raise _nothing_usable(src, source, Counter(), job.target)
    start = time.perf_counter()
    warn = [w for w in [_model_warning(job.target)] if w]
    lookup, label_where = _label_source(source, opts, warn)
    if on_warning is not None:
        for message in warn:
            on_warning(message)
    tally, todo = _Tally(), []
    for name in source.names:
        if lookup is None or lookup.get(name) is not None:
            todo.append(name)
        else:
            tally.skip(name, "no-label", f"no label for this file in {label_where}")
    # The pool starts before the output is opened, so no worker inherits an open output file.
    with _converter(source, job, opts.workers) as convert, Writer(dest) as writer:
        with _progress(progress) as bar:
            task = bar.add_task("convert", total=len(todo))
            for res in convert(todo):
                bar.advance(task)
                tally.take(res, lookup.get(res.name) if lookup is not None else None, writer)
        if not tally.written:
            raise _nothing_usable(src, source, tally.reasons, job.target)
        writer.add(LABELS_NAME, json.dumps({"labels": tally.written if lookup is not None else None}).encode())
        report = _report(src, dest, opts, job, source, tally, warn, time.perf_counter() - start)
        writer.add_report(json.dumps(report, indent=1).encode())
    return report


def _report(
    src: Path,
    dest: Path,
    opts: PrepareOptions,
    job: _Job,
    source: Source,
    tally: _Tally,
    warn: list[str],
    seconds: float,
) -> dict:
    t = job.target
    classes = Counter(label for _, label in tally.written if label is not None)
    return {
        "source": str(src),
        "dest": str(dest),
        "settings": {
            "resolution": f"{t.width}x{t.height}",
            "channels": t.channels,
            "fit": t.fit,
            "background": hex_colour(t.background),
            "small": job.small,
            "max_aspect": job.max_aspect,
            "labels": str(opts.labels) if opts.labels is not None else None,
            "compress_level": job.compress_level,
            "workers": opts.workers,
        },
        "counts": {
            "read": len(source.names),
            "written": len(tally.written),
            "skipped": sum(e["action"] == "skipped" for e in tally.entries),
            "duplicates": tally.duplicates,
            "adjusted": tally.adjusted,
            "ignored": len(source.ignored),
        },
        "ignored_examples": source.ignored[:20],
        "reasons": dict(tally.reasons.most_common()),
        "duplicates_by": "SHA-1 of the decoded pixels after conversion, and the label",
        "labels": {"classes": max(classes) + 1, "counts": {str(k): classes[k] for k in sorted(classes)}}
        if classes
        else None,
        "warnings": warn,
        "seconds": round(seconds, 3),
        "images_per_second": round(len(source.names) / seconds, 1) if seconds > 0 else None,
        "files": sorted(tally.entries, key=lambda e: e["file"]),
    }
