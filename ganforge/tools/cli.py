"""Command functions for the tools on trained models: style-mix, video, export, project.

Registered on the main app in ganforge.cli (`app.command("style-mix")(style_mix)` …). Examples:
    ganforge style-mix --checkpoint ckpt.safetensors --rows 0-3 --cols 4-7 --styles 0-6 --out mix.png
    ganforge video --checkpoint ckpt.safetensors --seeds 0-3 --frames 60 --space w --trunc 0.7 --out walk.mp4
    ganforge video --checkpoint ckpt.safetensors --seeds 0-11 --grid 3x2 --out walks.mp4
    ganforge export ckpt.safetensors --format onnx --out G.onnx
    ganforge project --checkpoint ckpt.safetensors --target face.png --vgg vgg16.pt --outdir proj
    ganforge project --checkpoint ckpt.safetensors --target face.png --loss mse --steps 500 --w-plus
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path

import typer

from ganforge.console import console, err, fail


class NoiseMode(str, Enum):
    const = "const"
    random = "random"
    none = "none"


class Space(str, Enum):
    w = "w"
    z = "z"


class ExportFormat(str, Enum):
    torchscript = "torchscript"
    onnx = "onnx"


class Loss(str, Enum):
    lpips = "lpips"
    mse = "mse"



def user_errors() -> tuple[type[Exception], ...]:
    """Exception types whose message is meant for the user (shown without a traceback)."""
    from ganforge.checkpoint import CheckpointError
    from ganforge.tools.export import ExportError
    from ganforge.tools.import_official import OfficialPickleError

    errors: tuple[type[Exception], ...] = (ValueError, CheckpointError, OfficialPickleError, ExportError,
                                           FileNotFoundError)
    try:
        from ganforge.metrics.detectors import DetectorError
    except ImportError:
        return errors
    return (*errors, DetectorError)


def parse_grid(text: str) -> tuple[int, int]:
    """'3x2' -> (3 columns, 2 rows)."""
    m = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"--grid {text!r}: write COLSxROWS such as 1x1 or 3x2")
    return int(m.group(1)), int(m.group(2))


CHECKPOINT_HELP = "ganforge checkpoint (.safetensors) or official StyleGAN2-ADA .pkl."


def style_mix(
    checkpoint: str = typer.Option(..., help=CHECKPOINT_HELP),
    rows: str = typer.Option("0-3", help="Row seeds (their coarse structure is kept): 0-3 or 1,5,9."),
    cols: str = typer.Option("4-7", help="Column seeds (their styles are copied in)."),
    styles: str = typer.Option("0-6", help="w indices taken from the column seeds: 0-3 coarse, higher = finer."),
    trunc: float = typer.Option(1.0, help="Truncation psi (1 = off, 0.7 typical)."),
    noise_mode: NoiseMode = typer.Option(NoiseMode.const, help="Per-pixel noise."),
    class_idx: int = typer.Option(None, "--class", help="Class label for conditional models."),
    out: str = typer.Option("mix.png", help="Output PNG."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
) -> None:
    """Style-mixing grid: column seeds on top, row seeds on the left, mixes inside (official style_mixing.py)."""
    from ganforge.latents import parse_seeds
    from ganforge.tools.mix import parse_layers, style_mix_file

    try:
        path = style_mix_file(checkpoint, parse_seeds(rows), parse_seeds(cols), parse_layers(styles), out, trunc,
                              noise_mode.value, class_idx, device)
    except user_errors() as e:
        fail(str(e))
    console.print(f"Wrote {path}")


def video(
    checkpoint: str = typer.Option(..., help=CHECKPOINT_HELP),
    seeds: str = typer.Option("0-3", help="Key seeds, visited in order and looping back to the first."),
    frames: int = typer.Option(30, min=1, help="Frames per transition between two seeds."),
    space: Space = typer.Option(Space.w, help="Interpolate in w (lerp of mapped ws) or z (slerp)."),
    trunc: float = typer.Option(1.0, help="Truncation psi (1 = off, 0.7 typical)."),
    out: str = typer.Option("walk.mp4", help="Output .mp4 (a .gif is written instead without imageio-ffmpeg)."),
    fps: float = typer.Option(30, min=0.1, help="Frames per second."),
    grid: str = typer.Option("1x1", metavar="COLSxROWS", help="Several walks side by side; seeds split evenly."),
    noise_mode: NoiseMode = typer.Option(NoiseMode.const, help="Per-pixel noise."),
    class_idx: int = typer.Option(None, "--class", help="Class label for conditional models."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
) -> None:
    """Latent walk video through seeds (looping): mp4 via imageio-ffmpeg, else an animated GIF."""
    from ganforge.latents import parse_seeds
    from ganforge.tools.video import walk_video

    try:
        path, count = walk_video(checkpoint, parse_seeds(seeds), out, frames, space.value, trunc, fps,
                                 noise_mode.value, class_idx, parse_grid(grid), device)
    except user_errors() as e:
        fail(str(e))
    kind = "animated GIF (install imageio-ffmpeg for mp4)" if path.suffix.lower() == ".gif" else "mp4"
    console.print(f"Wrote {path}: {count} frames as {kind}")


def export(
    checkpoint: str = typer.Argument(..., help=CHECKPOINT_HELP),
    fmt: ExportFormat = typer.Option(ExportFormat.torchscript, "--format", help="torchscript (.pt) or onnx."),
    out: str = typer.Option(None, help="Output file; default: the checkpoint's name with .pt or .onnx."),
) -> None:
    """Export G_ema (z, psi[, c] -> image, noise const) and check it against the eager network at two batch sizes."""
    from ganforge.tools.export import export_checkpoint

    dest = out or str(Path(checkpoint).with_suffix(".pt" if fmt is ExportFormat.torchscript else ".onnx").name)
    try:
        report = export_checkpoint(checkpoint, fmt.value, dest)
    except user_errors() as e:
        fail(str(e))
    sizes = ", ".join(str(n) for n in report.batch_sizes)
    console.print(f"Wrote {', '.join(str(p) for p in report.files)} ({report.format}); checked with "
                  f"{report.checked_with} at batch sizes {sizes}: max |exported - eager| = {report.max_abs_diff:.3g}")


def project(
    checkpoint: str = typer.Option(..., help=CHECKPOINT_HELP),
    target: str = typer.Option(..., help="Image to reproduce (cropped to the model's aspect, then resized)."),
    outdir: str = typer.Option("proj", help="Output folder."),
    steps: int = typer.Option(1000, min=1, help="Optimisation steps."),
    w_plus: bool = typer.Option(False, "--w-plus", help="Optimise one w per layer (w+) instead of one w."),
    vgg: str = typer.Option(None, help="VGG16 detector vgg16.pt (TorchScript); default: the ganforge cache folder."),
    loss: Loss = typer.Option(Loss.lpips, help="lpips (VGG16 features, official) or mse (pixels, no detector)."),
    seed: int = typer.Option(0, help="Seed of the initial noise maps and the w noise."),
    save_video: bool = typer.Option(True, "--save-video/--no-save-video", help="Write target|projection video."),
    class_idx: int = typer.Option(None, "--class", help="Class label for conditional models."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
) -> None:
    """Find the w (or w+) that reproduces an image (official projector.py recipe)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ganforge.tools.project import project_file

    columns = (TextColumn("project"), BarColumn(), MofNCompleteColumn(), TextColumn("dist {task.fields[dist]:.4g}"),
               TimeRemainingColumn())
    try:
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task("project", total=steps, dist=float("nan"))
            on_step = lambda step, dist: bar.update(task, completed=step + 1, dist=dist)
            result, paths = project_file(checkpoint, target, outdir, steps, w_plus, vgg, loss.value, seed,
                                         save_video, class_idx, device, on_step)
    except user_errors() as e:
        fail(str(e))
    console.print(f"{loss.value} distance {result.start_dist:.4g} at w_avg -> {result.final_dist:.4g}")
    for role, path in paths.items():
        console.print(f"  {role}: {path}")
