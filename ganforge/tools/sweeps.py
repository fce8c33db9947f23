"""Videos that hold the seeds and move something else: a latent direction swept from −S to +S, or the texture-
sticking walk (`video --walk translate`).

Every seed is one cell of each frame, laid out as `generate --grid` does. Both videos go out and come back, so
they loop: --frames frames from one end to the other, then the same way back (2·frames frames in all).

The texture-sticking walk (Karras et al. 2021, "Alias-Free Generative Adversarial Networks", Fig. 1): the image
content should move while its fine detail moves with it. A StyleGAN3 generator is translated exactly through its
Fourier input (`synthesis.input.transform`, as `generate --translate`), `shift` image widths to the right in
sub-pixel steps (shift·width/frames pixels per frame). A StyleGAN2 generator has no input to move, so its content
is moved the way the paper's latent-interpolation videos move it: w goes a fraction `shift` of the straight line
toward the w of the next seed number (seed + 1). In StyleGAN2 videos hair, skin and background textures stay
glued to the pixel grid while the face moves under them; in StyleGAN3 they travel with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganforge.devices import parse_device
from ganforge.images import check_canvas, check_output_file, grid_shape, make_grid
from ganforge.latents import SEED_MAX, check_psi
from ganforge.modelio.load import load_generator
from ganforge.tools.directions import DirectionEdit, direction_edit
from ganforge.tools.generate import ToolError, class_labels, move_input
from ganforge.tools.mix import require_stylegan, seeds_to_ws, synthesize
from ganforge.tools.video import (
    MAX_GIF_PIXELS,
    MAX_VIDEO_IMAGES,
    VIDEO_SUFFIXES,
    check_fps,
    check_frames,
    video_path,
    with_progress,
    write_video,
)

WALKS = ("seeds", "translate")
DEFAULT_STRENGTH = 3.0  # video --direction: −3..+3 (GANSpace: three standard deviations either way).
DEFAULT_SHIFT = {"stylegan3": 1 / 16, "stylegan2": 0.25}  # --walk translate: a 16th of the width; a quarter of a w.


def pingpong(frames: int) -> torch.Tensor:
    """[2·frames] positions in [0, 1]: 0 → 1 in `frames` steps, then back (the last frame is next to the first)."""
    up = torch.arange(frames + 1, dtype=torch.float64) / frames
    return torch.cat([up, up[1:-1].flip(0)])


def check_shift(shift: float, flag: str = "--shift") -> float:
    shift = float(shift)
    if not (math.isfinite(shift) and 0 < shift <= 1):
        raise ToolError(
            f"{flag} {shift:g}: pass a number in 0..1 (StyleGAN3: image widths moved; StyleGAN2: the part of the "
            "way to the next seed's w)"
        )
    return shift


def sweep_mode(
    walk: str,
    direction: tuple[str, int] | None,
    shift: float | None,
    strength: float | None,
    layers: object,
    grid: tuple[int, int],
    space: str,
) -> bool:
    """True when `video` makes a sweep (--direction or --walk translate) rather than a walk through the seeds; the
    options that belong to the other kind are refused by name."""
    if walk not in WALKS:
        raise ToolError(f"--walk {walk!r}: choose seeds or translate")
    if walk == "translate" and direction is not None:
        raise ToolError("--walk translate and --direction make two different videos: pass one of them")
    if direction is None:
        given = [f for f, v in (("--strength", strength), ("--layers", layers)) if v is not None]
        given += ["--shift"] if shift is not None and walk != "translate" else []
        if given:
            flags = " and ".join(given)
            needs = "--walk translate" if given == ["--shift"] else "--direction FILE:K"
            verb = "apply" if len(given) > 1 else "applies"
            raise ToolError(f"{flags} only {verb} with {needs}: add it or drop {flags}")
        if walk == "seeds":
            return False
    if grid != (1, 1):
        raise ToolError("--grid lays out walks between seeds; here every seed is one cell of each frame: drop --grid")
    if space != "w":
        raise ToolError(
            f"--space {space} sets how a walk between seeds interpolates; a sweep holds the seeds: drop --space"
        )
    return True


def _frame(images: torch.Tensor, cols: int) -> np.ndarray:
    arr = make_grid(images, cols=cols)
    return arr if arr.ndim == 3 else arr[:, :, None]


# ----------------------------------------------------------------------------
# Frames.


@torch.no_grad()
def direction_frames(
    G: torch.nn.Module,
    ws: torch.Tensor,  # [cells, num_ws, w_dim]: the seeds' ws.
    edit: DirectionEdit,  # Its strength S is the sweep's end: −S … +S.
    frames: int,
    noise_mode: str = "const",
) -> Iterator[np.ndarray]:
    """uint8 [H', W', C] frames with the direction's strength going −S → +S → −S."""
    stylegan = require_stylegan(G, "a direction sweep")
    cols = grid_shape(len(ws))[0]
    for t in pingpong(frames).tolist():
        step = replace(edit, strength=edit.strength * (2 * t - 1))
        yield _frame(synthesize(stylegan, step.apply(ws), noise_mode), cols)


@torch.no_grad()
def translate_frames(
    G: torch.nn.Module,
    ws: torch.Tensor,  # [cells, num_ws, w_dim]: the seeds' ws.
    partner_ws: torch.Tensor | None,  # StyleGAN2: the ws of seed + 1 (None for StyleGAN3).
    shift: float,
    frames: int,
    noise_mode: str = "const",
) -> Iterator[np.ndarray]:
    """uint8 frames of the texture-sticking walk (see the module docstring); the input transform is reset after."""
    stylegan = require_stylegan(G, "a translate walk")
    cols = grid_shape(len(ws))[0]
    for t in pingpong(frames).tolist():
        if partner_ws is None:
            move_input(stylegan, (shift * t, 0.0), None)
            step = ws
        else:
            step = torch.lerp(ws, partner_ws, shift * t)
        yield _frame(synthesize(stylegan, step, noise_mode), cols)
    if partner_ws is None:
        move_input(stylegan, (0.0, 0.0), 0.0)


# ----------------------------------------------------------------------------
# Videos.


def check_sweep(G: Any, seeds: list[int], frames: int, path: Path) -> int:
    """The limits that depend on the model, before rendering; returns the number of frames (2·frames)."""
    total = 2 * check_frames(frames)
    if len(seeds) * total > MAX_VIDEO_IMAGES:
        raise ToolError(
            f"{len(seeds)} seeds x {total} frames is {len(seeds) * total:,} images, more than the "
            f"{MAX_VIDEO_IMAGES:,} of one video: pass fewer seeds or frames"
        )
    (cols, rows), (_, h, w) = grid_shape(len(seeds)), G.img_shape
    check_canvas(cols * rows, h, w, f"one frame of {len(seeds)} seeds")
    if path.suffix.lower() == ".gif" and total * cols * rows * h * w > MAX_GIF_PIXELS:
        raise ToolError(
            f"a GIF of {total:,} frames of {cols * w}x{rows * h} is held in memory while it is written, over "
            f"{MAX_GIF_PIXELS / 1e9:.1f} gigapixels: pass fewer seeds or frames, or install imageio-ffmpeg and "
            "write an .mp4"
        )
    return total


def sweep_video(
    checkpoint: str | Path,
    seeds: list[int],
    out: str | Path = "sweep.mp4",
    frames: int = 30,  # Frames from one end to the other; the video has twice as many (there and back).
    truncation_psi: float = 1.0,
    fps: float = 30,
    noise_mode: str = "const",
    class_idx: int | None = None,
    device: str | torch.device = "cpu",
    direction: tuple[str, int] | None = None,  # (FILE, K): sweep direction K; None = the translate walk.
    strength: float | None = None,  # --direction: the sweep's end S (default DEFAULT_STRENGTH).
    layers: list[int] | None = None,  # --direction: ws moved; None = the file's layers.
    shift: float | None = None,  # --walk translate: how far (default DEFAULT_SHIFT of the model's kind).
    progress: bool = True,
) -> tuple[Path, int, str]:
    """A direction sweep (`direction` given) or the texture-sticking walk. Returns (file, frames, what moved).

    Every option is checked, against the model too, before the output file is opened.
    """
    device = parse_device(device)
    truncation_psi, fps = check_psi(truncation_psi), check_fps(fps)
    path = video_path(check_output_file(out, "--out", VIDEO_SUFFIXES))
    if direction is not None and shift is not None:
        raise ToolError(
            "--shift sets how far --walk translate goes; a --direction sweep goes to ±--strength: drop --shift"
        )
    G = load_generator(checkpoint)
    stylegan = require_stylegan(G, "a direction sweep" if direction is not None else "a translate walk")
    total = check_sweep(G, seeds, frames, path)
    class_labels(G, 0, class_idx)
    edit = None
    if direction is not None:
        edit = direction_edit(G, direction, DEFAULT_STRENGTH if strength is None else strength, layers)
    elif strength is not None or layers is not None:
        direction_edit(G, None, strength, layers)  # Refuses them without --direction.
    sg3 = bool(getattr(stylegan.plan, "is_sg3", False))
    shift = check_shift(DEFAULT_SHIFT["stylegan3" if sg3 else "stylegan2"] if shift is None else shift)
    stylegan = stylegan.to(device)
    ws = seeds_to_ws(stylegan, seeds, truncation_psi, class_idx, device)
    if edit is not None:
        stream = direction_frames(stylegan, ws, edit, frames, noise_mode)
        what = f"direction {edit.index} from {-edit.strength:g} to {edit.strength:g} and back"
    elif sg3:
        stream = translate_frames(stylegan, ws, None, shift, frames, noise_mode)
        px = shift * stylegan.img_shape[2] / frames
        what = f"the image moved {shift:g} of its width and back, {px:.3g} px per frame"
    else:
        partners = seeds_to_ws(stylegan, [(s + 1) % (SEED_MAX + 1) for s in seeds], truncation_psi, class_idx, device)
        stream = translate_frames(stylegan, ws, partners, shift, frames, noise_mode)
        what = f"w moved {shift:g} of the way toward seed + 1 and back (StyleGAN2 has no input to translate)"
    if progress:
        stream = with_progress(stream, total, "sweep")
    written, count = write_video(stream, path, fps)
    return written, count, what
