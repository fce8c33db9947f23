"""Command functions for the tools on trained models: style-mix, video, export, project.

Registered on the main app in ganforge.cli (`app.command("style-mix")(style_mix)` …). Examples:
    ganforge style-mix --checkpoint ckpt.safetensors --rows 0-3 --cols 4-7 --styles 0-6 --out mix.png
    ganforge video --checkpoint ckpt.safetensors --seeds 0-3 --frames 60 --space w --trunc 0.7 --out walk.mp4
    ganforge video --checkpoint ckpt.safetensors --seeds 0-11 --grid 3x2 --out walks.mp4
    ganforge video --checkpoint ckpt.safetensors --seeds 0-3 --direction sefa.safetensors:0 --strength 5 --out d0.mp4
    ganforge video --checkpoint sg3.pkl --seeds 0 --walk translate --frames 120 --out sticking.mp4
    ganforge export ckpt.safetensors --format onnx --out G.onnx
    ganforge project --checkpoint ckpt.safetensors --target face.png --vgg vgg16.pt --outdir proj
    ganforge project --checkpoint ckpt.safetensors --target face.png --loss mse --steps 500 --w-plus

Option values are checked as they are parsed (`usage` callbacks: one line, exit 2, before any file is read); what
depends on the model (--class, --styles, grid sizes) is checked by the tools right after loading it, before anything
is written (a GanforgeError: one line, exit 1).
"""

from __future__ import annotations

from enum import Enum
from functools import partial
from pathlib import Path
from typing import cast

import typer

from ganforge.console import UsageError, console, err, usage
from ganforge.latents import SEED_MAX, check_psi, parse_seeds
from ganforge.tools.directions import check_strength, parse_direction
from ganforge.tools.directions import parse_layers as parse_ws
from ganforge.tools.mix import parse_layers
from ganforge.tools.project import MAX_STEPS
from ganforge.tools.sweeps import check_shift
from ganforge.tools.video import MAX_FRAMES, check_fps, parse_grid


class NoiseMode(str, Enum):
    const = "const"
    random = "random"
    none = "none"


class Space(str, Enum):
    w = "w"
    z = "z"


class Walk(str, Enum):
    seeds = "seeds"
    translate_ = "translate"  # (str.translate is taken.)


class ExportFormat(str, Enum):
    torchscript = "torchscript"
    onnx = "onnx"


class Loss(str, Enum):
    lpips = "lpips"
    mse = "mse"


CHECKPOINT_HELP = "ganforge checkpoint (.safetensors) or official StyleGAN2-ADA .pkl."
TRUNC_HELP = "Truncation psi, -10..10 (1 = off, 0.7 typical)."
DEVICE_HELP = "cpu, cuda, cuda:N or auto."


def style_mix(
    checkpoint: str = typer.Option(..., help=CHECKPOINT_HELP),
    rows: str = typer.Option(
        "0-3",
        callback=usage(partial(parse_seeds, flag="--rows")),
        help="Row seeds (their coarse structure is kept): 0-3 or 1,5,9.",
    ),
    cols: str = typer.Option(
        "4-7", callback=usage(partial(parse_seeds, flag="--cols")), help="Column seeds (their styles are copied in)."
    ),
    styles: str = typer.Option(
        "0-6", callback=usage(parse_layers), help="w indices taken from the column seeds: 0-3 coarse, higher = finer."
    ),
    trunc: float = typer.Option(1.0, callback=usage(check_psi), help=TRUNC_HELP),
    noise_mode: NoiseMode = typer.Option(NoiseMode.const, help="Per-pixel noise."),
    class_idx: int = typer.Option(None, "--class", min=0, help="Class label for conditional models."),
    out: str = typer.Option("mix.png", help="Output image (.png, .jpg, .webp, ...)."),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
) -> None:
    """Style-mixing grid: column seeds on top, row seeds on the left, mixes inside (official style_mixing.py)."""
    from ganforge.tools.mix import style_mix_file

    # The options' callbacks parsed the texts into seeds and w indices.
    rows_, cols_, styles_ = cast(list[int], rows), cast(list[int], cols), cast(list[int], styles)
    path = style_mix_file(checkpoint, rows_, cols_, styles_, out, trunc, noise_mode.value, class_idx, device)
    console.print(f"Wrote {path}")


def video(
    checkpoint: str = typer.Option(..., help=CHECKPOINT_HELP),
    seeds: str = typer.Option(
        "0-3", callback=usage(parse_seeds), help="Key seeds, visited in order and looping back to the first."
    ),
    frames: int = typer.Option(30, min=1, max=MAX_FRAMES, help="Frames per transition between two seeds."),
    space: Space = typer.Option(Space.w, help="Interpolate in w (lerp of mapped ws) or z (slerp)."),
    trunc: float = typer.Option(1.0, callback=usage(check_psi), help=TRUNC_HELP),
    out: str = typer.Option("walk.mp4", help="Output .mp4 (a .gif is written instead without imageio-ffmpeg)."),
    fps: float = typer.Option(30, callback=usage(check_fps), help="Frames per second, 0.1..240."),
    grid: str = typer.Option(
        "1x1", metavar="COLSxROWS", callback=usage(parse_grid), help="Several walks side by side; seeds split evenly."
    ),
    noise_mode: NoiseMode = typer.Option(NoiseMode.const, help="Per-pixel noise."),
    class_idx: int = typer.Option(None, "--class", min=0, help="Class label for conditional models."),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
    walk: Walk = typer.Option(
        Walk.seeds, help="seeds: walk through the seeds; translate: the texture-sticking walk (each seed held)."
    ),
    shift: float = typer.Option(
        None,
        callback=usage(check_shift),
        help="--walk translate: StyleGAN3 image widths moved (1/16), StyleGAN2 part of the way to seed+1's w.",
    ),
    direction: str = typer.Option(
        None, metavar="FILE:K", callback=usage(parse_direction), help="Sweep direction K of a directions file."
    ),
    strength: float = typer.Option(
        None, callback=usage(check_strength), help="--direction: sweep from -S to +S and back (default 3)."
    ),
    layers: str = typer.Option(None, metavar="A-B", callback=usage(parse_ws), help="--direction: ws moved."),
) -> None:
    """Latent walk video through seeds (looping): mp4 via imageio-ffmpeg, else an animated GIF. With --direction
    or --walk translate every seed is one cell and the video sweeps a direction or moves the image."""
    from ganforge.tools.sweeps import sweep_mode, sweep_video
    from ganforge.tools.video import walk_video

    # The options' callbacks parsed the texts into seeds, (cols, rows), (FILE, K) and ws indices.
    seed_list, grid_size = cast(list[int], seeds), cast(tuple[int, int], grid)
    edit = cast("tuple[str, int] | None", direction), strength, cast("list[int] | None", layers)
    if sweep_mode(walk.value, edit[0], shift, strength, layers, grid_size, space.value):
        path, count, what = sweep_video(
            checkpoint, seed_list, out, frames, trunc, fps, noise_mode.value, class_idx, device, *edit, shift
        )
    else:
        path, count = walk_video(
            checkpoint, seed_list, out, frames, space.value, trunc, fps, noise_mode.value, class_idx, grid_size, device
        )
        what = "a walk through the seeds"
    kind = "animated GIF (install imageio-ffmpeg for mp4)" if path.suffix.lower() == ".gif" else "mp4"
    console.print(f"Wrote {path}: {count} frames as {kind}, {what}")


def default_export_path(checkpoint: str, fmt: ExportFormat) -> str:
    """The checkpoint's file name with .pt or .onnx, in the current folder."""
    name = Path(checkpoint).name
    if not name:
        raise UsageError(f"CHECKPOINT {checkpoint!r} names no file: give the checkpoint to export")
    return str(Path(name).with_suffix(".pt" if fmt is ExportFormat.torchscript else ".onnx"))


def export(
    checkpoint: str = typer.Argument(..., help=CHECKPOINT_HELP),
    fmt: ExportFormat = typer.Option(ExportFormat.torchscript, "--format", help="torchscript (.pt) or onnx."),
    out: str = typer.Option(None, help="Output file; default: the checkpoint's name with .pt or .onnx."),
) -> None:
    """Export G_ema (z, psi[, c] -> image, noise const) and check it against the eager network at two batch sizes."""
    from ganforge.modelio.export import export_checkpoint

    report = export_checkpoint(checkpoint, fmt.value, default_export_path(checkpoint, fmt) if out is None else out)
    sizes = ", ".join(str(n) for n in report.batch_sizes)
    console.print(
        f"Wrote {', '.join(str(p) for p in report.files)} ({report.format}); checked with "
        f"{report.checked_with} at batch sizes {sizes}: max |exported - eager| = {report.max_abs_diff:.3g}"
    )


def project(
    checkpoint: str = typer.Option(..., help=CHECKPOINT_HELP),
    target: str = typer.Option(..., help="Image to reproduce (cropped to the model's aspect, then resized)."),
    outdir: str = typer.Option("proj", help="Output folder."),
    steps: int = typer.Option(1000, min=1, max=MAX_STEPS, help="Optimisation steps."),
    w_plus: bool = typer.Option(False, "--w-plus", help="Optimise one w per layer (w+) instead of one w."),
    vgg: str = typer.Option(None, help="VGG16 detector vgg16.pt (TorchScript); default: the ganforge cache folder."),
    loss: Loss = typer.Option(Loss.lpips, help="lpips (VGG16 features, official) or mse (pixels, no detector)."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Seed of the initial noise maps and the w noise."),
    save_video: bool = typer.Option(True, "--save-video/--no-save-video", help="Write target|projection video."),
    class_idx: int = typer.Option(None, "--class", min=0, help="Class label for conditional models."),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
) -> None:
    """Find the w (or w+) that reproduces an image (official projector.py recipe)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ganforge.tools.project import project_file

    columns = (
        TextColumn("project"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("dist {task.fields[dist]:.4g}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("project", total=steps, dist=float("nan"))
        on_step = lambda step, dist: bar.update(task, completed=step + 1, dist=dist)
        result, paths = project_file(
            checkpoint, target, outdir, steps, w_plus, vgg, loss.value, seed, save_video, class_idx, device, on_step
        )
    console.print(f"{loss.value} distance {result.start_dist:.4g} at w_avg -> {result.final_dist:.4g}")
    for role, path in paths.items():
        console.print(f"  {role}: {path}")
