"""`ganforge dataset ...`: a Typer sub-app, mounted by ganforge.cli with `app.add_typer(dataset_app, name="dataset")`.

Examples:
    ganforge dataset prepare photos/ faces-256.zip --resolution 256
    ganforge dataset prepare scans.zip scans-512x256/ --resolution 512x256 --fit pad --channels 1
    ganforge dataset check faces-256.zip --resolution 256 --preset paper256
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path

import typer
from rich.table import Table

from ganforge.console import console, fail, styled, warn
from ganforge.errors import GanforgeError

dataset_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Prepare image datasets in the StyleGAN2-ADA layout and check them against a model.",
)


class Fit(str, Enum):
    crop = "crop"
    pad = "pad"
    stretch = "stretch"


class Family(str, Enum):
    stylegan2 = "stylegan2"
    dcgan = "dcgan"


class Small(str, Enum):
    upscale = "upscale"
    skip = "skip"


@dataset_app.command()
def prepare(
    src: Path = typer.Argument(..., help="Folder (searched recursively), zip, or StyleGAN2-ADA dataset."),
    dest: Path = typer.Argument(..., help="Output folder, or a .zip (uncompressed, written atomically)."),
    resolution: str = typer.Option(..., metavar="WxH", help="Output size: 256 or WxH such as 512x256."),
    fit: Fit = typer.Option(Fit.crop, help="crop: cover then center crop; pad: fit then pad; stretch: ignore aspect."),
    channels: int = typer.Option(3, help="3 = RGB, 1 = grayscale."),
    labels: Path = typer.Option(None, help="JSON or CSV file: relative file name -> integer class."),
    background: str = typer.Option("white", help="Fill for transparency and padding: white, black or #rrggbb."),
    small: Small = typer.Option(Small.upscale, help="Images smaller than the target: upscale (reported) or skip."),
    max_aspect: float = typer.Option(4.0, help="Skip images whose aspect ratio is this factor from the target's."),
    workers: int = typer.Option(2, min=0, help="Conversion processes (0 or 1 = none)."),
    compress: int = typer.Option(1, min=0, max=9, help="PNG zlib level (0 = stored, as the official tool)."),
    force: bool = typer.Option(False, "--force", help="Replace DEST if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary table."),
) -> None:
    """Convert every image in SRC to one size and mode and write DEST in the StyleGAN2-ADA layout."""
    from ganforge.data.prepare import NothingUsable, PrepareOptions, prepare_dataset, report_path

    if channels not in (1, 3):
        fail(f"--channels {channels} is not supported: use 3 (RGB) or 1 (grayscale)")
    opts = PrepareOptions(
        resolution=resolution,
        fit=fit.value,
        channels=channels,
        labels=labels,
        background=background,
        small=small.value,
        max_aspect=max_aspect,
        workers=workers,
        compress_level=compress,
        force=force,
    )
    try:
        report = prepare_dataset(src, dest, opts, progress=not quiet, on_warning=warn)
    except NothingUsable as e:
        fail(str(e), 1)
    except GanforgeError as e:  # PrepareError, SourceError, PlanError: bad arguments.
        fail(str(e))
    c = report["counts"]
    console.print(
        f"wrote {c['written']} images ({report['settings']['resolution']}, "
        f"{'RGB' if channels == 3 else 'grayscale'}) to {dest} in {report['seconds']:.1f} s "
        f"({report['images_per_second']} images/s); skipped {c['skipped']}, duplicates {c['duplicates']}, "
        f"adjusted {c['adjusted']}; report: {report_path(dest)}",
        highlight=False,
        soft_wrap=True,
    )
    if report["reasons"] and not quiet:
        print_counts("files skipped or adjusted", "reason", "files", report["reasons"])


def print_counts(title: str, key: str, unit: str, counts: dict) -> None:
    """A two-column table: each key and its count."""
    table = Table(title=title)
    table.add_column(key)
    table.add_column(unit, justify="right")
    for name, n in counts.items():
        table.add_row(str(name), str(n))
    console.print(table)


def _print_summary(s) -> None:
    console.print(
        f"{s.path}: {s.images} images, layout {s.layout}, {s.channels} channel(s) for the loader", highlight=False
    )
    print_counts("sizes (WxH)", "size", "images", s.sizes)
    console.print("modes: " + ", ".join(f"{m} {n}" for m, n in s.modes.items()), highlight=False)
    if s.classes:
        counts = ", ".join(f"{k}: {n}" for k, n in s.label_counts.items())
        console.print(f"labels: {s.classes} classes ({counts})", highlight=False)
    else:
        console.print("labels: none")
    for sentence in s.mismatches:
        console.print(styled("mismatch:", "bold red", sentence), soft_wrap=True)
    if s.ok:
        console.print(styled("ok:", "bold green", f"no mismatches with a {s.family} model"))


@dataset_app.command()
def check(
    path: Path = typer.Argument(..., help="Dataset folder or zip (prepared or plain images)."),
    resolution: str = typer.Option(None, metavar="WxH", help="Model output size; default: the data's size."),
    preset: str = typer.Option("auto", help="Preset of the model (as `ganforge train --preset`)."),
    cond: bool = typer.Option(False, "--cond/--no-cond", help="The model is conditional on the labels."),
    family: Family = typer.Option(Family.stylegan2, help="Model family whose size rules the data must meet."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Counts, sizes, modes and labels, and every mismatch with the model (exit 1 when there is one)."""
    from ganforge.data.check import check_dataset

    try:
        summary = check_dataset(path, resolution, preset, cond, family.value)
    except GanforgeError as e:  # SourceError, PlanError.
        fail(str(e))
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict()) + "\n")
    else:
        _print_summary(summary)
    if not summary.ok:
        raise typer.Exit(1)


@dataset_app.command()
def curate(
    src: Path = typer.Argument(..., help="Folder (searched recursively), zip, or StyleGAN2-ADA dataset."),
    dest: Path = typer.Argument(
        None, help="Output folder, or a .zip; DEST.curate.csv and DEST.rejected.png go beside (not with --dry-run)."
    ),
    resolution: str = typer.Option("256", metavar="WxH", help="Output size: 256 or WxH (square with --faces align)."),
    fit: Fit = typer.Option(Fit.crop, help="Images that are not aligned: crop, pad or stretch, as in prepare."),
    blur: float = typer.Option(
        None,
        metavar="T",
        help="Reject sharpness (Laplacian variance of the output at 256 "
        "px) below T: sharp photos score hundreds; enlarged small images far less.",
    ),
    faces: str = typer.Option(
        None,
        metavar="align|filter",
        help="align: write FFHQ-aligned face crops; filter: keep whole images that hold a face (MTCNN).",
    ),
    face_count: str = typer.Option("one", metavar="one|any", help="Faces an image may hold: exactly one, or any."),
    confidence: float = typer.Option(0.9, help="MTCNN probability (0..1) at which a detection is a face."),
    max_tilt: float = typer.Option(None, metavar="DEG", help="Reject faces whose eye line is rotated more than DEG."),
    max_eye_offset: float = typer.Option(
        None,
        metavar="X",
        help="Reject turned faces: eye midpoint off the "
        "nose/mouth line by more than X eye distances (0.25 keeps near-frontal).",
    ),
    symmetry: float = typer.Option(
        None,
        metavar="T",
        help="Reject left/right symmetry (0..1) below T; of the aligned "
        "inner face when there is one (CelebA median 0.47).",
    ),
    mtcnn_dir: Path = typer.Option(
        None,
        help="Folder with pnet.pt, rnet.pt, onet.pt (default: an installed facenet-pytorch, then the ganforge cache).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace DEST if it exists."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Score every image and print the percentiles of each score; write nothing."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary table."),
) -> None:
    """Score every image (blur, faces, pose, symmetry), keep those that pass in the StyleGAN2-ADA layout, and
    write a CSV of every score and decision plus a contact sheet of the rejected images.

    ganforge dataset curate photos/ --dry-run          # the percentiles of every score: choose thresholds

    ganforge dataset curate photos/ sharp-256.zip --blur 10

    ganforge dataset curate photos/ faces-256.zip --faces align --max-tilt 20 --max-eye-offset 0.25
    """
    from ganforge.data.curate import CurateOptions, NothingKept, curate_dataset

    if dest is None and not dry_run:
        fail("DEST is missing: name the output folder or .zip, or pass --dry-run to only score the images")

    opts = CurateOptions(
        resolution=resolution,
        fit=fit.value,
        blur=blur,
        faces=faces,
        face_count=face_count,
        min_confidence=confidence,
        max_tilt=max_tilt,
        max_eye_offset=max_eye_offset,
        symmetry=symmetry,
        mtcnn_dir=mtcnn_dir,
        force=force,
        dry_run=dry_run,
    )
    try:
        summary = curate_dataset(src, dest, opts, progress=not quiet)
    except NothingKept as e:
        fail(str(e), 1)
    except GanforgeError as e:  # CurateError (bad options, MTCNN weights), PrepareError, SourceError, PlanError.
        fail(str(e))
    if dry_run:
        console.print(
            f"dry run, nothing written: these options would keep {summary['kept']} of {summary['read']} images "
            f"({summary['seconds']:.1f} s)",
            highlight=False,
            soft_wrap=True,
        )
    else:
        sheet = f", contact sheet of the rejected: {summary['sheet']}" if summary["sheet"] else ""
        console.print(
            f"kept {summary['kept']} of {summary['read']} images in {dest} ({summary['seconds']:.1f} s); "
            f"scores: {summary['csv']}{sheet}",
            highlight=False,
            soft_wrap=True,
        )
    if summary["reasons"] and not quiet:
        print_counts("rejections", "reason", "files", summary["reasons"])
    if summary["scores"] and (dry_run or not quiet):
        print_percentiles(summary["scores"])


def print_percentiles(scores: dict) -> None:
    """Each score's percentiles, with the option that thresholds it: `--blur T` keeps the images scoring T or more."""
    from ganforge.data.curate import PERCENTILES, SCORES

    table = Table(
        title="score percentiles: a minimum (--blur, --symmetry, --confidence) at the 10% value rejects about a "
        "tenth of the images, a maximum (--max-tilt, --max-eye-offset) at the 90% value likewise"
    )
    table.add_column("score (option)")
    for p in PERCENTILES:
        table.add_column(f"{p}%", justify="right")
    for name, values in scores.items():
        table.add_row(f"{name} ({SCORES[name]})", *(f"{values[f'p{p}']:.4g}" for p in PERCENTILES))
    console.print(table)
