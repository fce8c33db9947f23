"""Latent walks: loop through seeds in z (slerp) or w (lerp) and write the frames as a video.

A walk through K key seeds has K·frames frames and loops (the last transition returns to the first seed).
Several walks can play side by side as a grid, each through its own run of seeds. Videos are mp4 (H.264)
through imageio + imageio-ffmpeg when both are installed, else animated GIFs through Pillow.

Bounds: --fps in FPS_RANGE; --frames 1..MAX_FRAMES per transition; at most MAX_VIDEO_IMAGES rendered images in all
(frames x seeds); one frame (a grid of walks) at most MAX_CANVAS_PIXELS; a GIF, which Pillow assembles in memory,
at most MAX_GIF_PIXELS over all its frames. Everything is checked before the output file is opened.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ganforge.devices import parse_device
from ganforge.images import check_canvas, check_output_file, make_grid
from ganforge.latents import check_psi, z_from_seeds
from ganforge.tools.generate import ToolError, class_labels
from ganforge.tools.mix import require_stylegan, synthesize

if TYPE_CHECKING:
    from ganforge.models.generator import Generator

SPACES = ("w", "z")
VIDEO_SUFFIXES = (".mp4", ".gif")
FPS_RANGE = (0.1, 240.0)  # Frames per second: a slide show every 10 s up to a high-speed display.
MAX_FRAMES = 10_000  # Frames per transition between two seeds (5.5 minutes at 30 fps).
MAX_VIDEO_IMAGES = 100_000  # Images rendered for one video (frames x seeds, every walk of a grid counted).
MAX_GRID_SIDE = 16  # --grid COLSxROWS: at most 16 walks per side.
MAX_GIF_PIXELS = 2**30  # Pixels over all GIF frames (Pillow holds every frame in memory until it writes).


# ----------------------------------------------------------------------------
# Options.


def check_fps(fps: float, flag: str = "--fps") -> float:
    fps = float(fps)
    if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:  # Also refuses NaN.
        raise ToolError(f"{flag} {fps:g}: pass a frame rate in {FPS_RANGE[0]:g}..{FPS_RANGE[1]:g} (30 typical)")
    return fps


def check_frames(frames: int, flag: str = "--frames") -> int:
    if not 1 <= frames <= MAX_FRAMES:
        raise ToolError(f"{flag} {frames}: pass 1..{MAX_FRAMES:,} frames per transition between two seeds")
    return frames


def parse_grid(text: str) -> tuple[int, int]:
    """'3x2' -> (3 columns, 2 rows), each side 1..MAX_GRID_SIDE."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*[x×]\s*(\d{1,6})\s*", str(text))
    if not m or not all(1 <= int(g) <= MAX_GRID_SIDE for g in m.groups()):
        raise ToolError(f"--grid {str(text)[:40]!r}: write COLSxROWS such as 1x1 or 3x2, each side 1..{MAX_GRID_SIDE}")
    return int(m.group(1)), int(m.group(2))


# ----------------------------------------------------------------------------
# Interpolation.


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation along the last dim: sin((1-t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b, cos Ω = â·b̂.

    a, b: [..., D]; t: broadcastable to [..., 1]. Falls back to lerp where a and b are (anti)parallel.
    """
    cos = (a / a.norm(dim=-1, keepdim=True) * b / b.norm(dim=-1, keepdim=True)).sum(-1, keepdim=True)
    omega = cos.clamp(-1, 1).acos()
    so = omega.sin()
    safe = so.abs() > 1e-6
    so = torch.where(safe, so, torch.ones_like(so))
    out = ((1 - t) * omega).sin() / so * a + (t * omega).sin() / so * b
    return torch.where(safe, out, torch.lerp(a, b, t))


def loop_times(num_keys: int, frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(index a, index b, t) per frame for a looping walk: num_keys·frames frames, t in [0, 1)."""
    step = torch.arange(num_keys * frames)
    a = step // frames
    return a, (a + 1) % num_keys, ((step % frames).float() / frames)[:, None]


@torch.no_grad()
def walk_ws(
    G: Generator,
    seeds: list[int],
    frames: int,
    space: str = "w",
    truncation_psi: float = 1.0,
    class_idx: int | None = None,
) -> torch.Tensor:
    """[len(seeds)·frames, num_ws, w_dim]: one looping walk through the seeds (on G's device)."""
    if space not in SPACES:
        raise ToolError(f"--space {space!r}: choose w (lerp between mapped ws) or z (slerp between latents)")
    device = next(G.parameters()).device
    a, b, t = (x.to(device) for x in loop_times(len(seeds), frames))
    z = z_from_seeds(seeds, G.z_dim).to(device)
    c = class_labels(G, len(seeds), class_idx)
    c = None if c is None else c.to(device)
    if space == "w":
        keys = G.mapping(z, c, truncation_psi=truncation_psi)[:, 0]  # [K, w_dim]
        w = torch.lerp(keys[a], keys[b], t)
    else:
        zs = slerp(z[a], z[b], t)
        w = G.mapping(zs, None if c is None else c[a], truncation_psi=truncation_psi)[:, 0]
    return w[:, None].expand(-1, G.num_ws, -1)  # Every w of a frame is the same: a view, no copies.


def split_walks(seeds: list[int], grid: tuple[int, int]) -> list[list[int]]:
    """Seeds -> one run of consecutive seeds per grid cell (row-major); every walk needs ≥ 2 seeds."""
    cols, rows = grid
    cells = cols * rows
    if cols < 1 or rows < 1:
        raise ToolError(f"--grid {cols}x{rows}: both sides must be at least 1")
    if len(seeds) % cells or len(seeds) // cells < 2:
        raise ToolError(
            f"{len(seeds)} seeds cannot make {cells} walks of at least 2 seeds each: pass a multiple "
            f"of {cells} seeds, at least {2 * cells}"
        )
    per = len(seeds) // cells
    return [seeds[i * per : (i + 1) * per] for i in range(cells)]


def walk_frames(
    G: torch.nn.Module,
    seeds: list[int],
    frames: int = 30,
    space: str = "w",
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    class_idx: int | None = None,
    grid: tuple[int, int] = (1, 1),
    batch: int = 8,
    device: str | torch.device = "cpu",
) -> Iterator[np.ndarray]:
    """uint8 frames [H', W', C] of the walk(s), rendered lazily; a (cols, rows) grid plays several walks at once.

    Arguments are checked here, before the first frame is asked for.
    """
    G = require_stylegan(G, "a latent walk")
    check_frames(frames)
    G = G.to(device)
    walks = [walk_ws(G, s, frames, space, truncation_psi, class_idx)[:, 0] for s in split_walks(seeds, grid)]
    return _render(G, torch.stack(walks, dim=1), noise_mode, grid[0], batch)  # w: [T, cells, w_dim]


def _render(G: Generator, w: torch.Tensor, noise_mode: str, cols: int, batch: int) -> Iterator[np.ndarray]:
    """Frames of w [T, cells, w_dim]; each chunk is broadcast to num_ws only when it is rendered."""
    for i in range(0, len(w), batch):
        chunk = w[i : i + batch]
        ws = chunk.flatten(0, 1)[:, None].expand(-1, G.num_ws, -1)
        imgs = synthesize(G, ws, noise_mode, batch=len(ws))
        for frame in imgs.reshape(chunk.shape[0], chunk.shape[1], *imgs.shape[1:]):
            arr = make_grid(frame, cols=cols)
            yield arr if arr.ndim == 3 else arr[:, :, None]


# ----------------------------------------------------------------------------
# Writing frames.


def have_ffmpeg() -> bool:
    """True when imageio and imageio-ffmpeg (with its bundled ffmpeg binary) are installed."""
    if importlib.util.find_spec("imageio") is None or importlib.util.find_spec("imageio_ffmpeg") is None:
        return False
    import imageio_ffmpeg

    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return False
    return True


def video_path(out: str | Path) -> Path:
    """The file that will be written: `out`, or `out` with .gif when mp4 is asked for but ffmpeg is missing."""
    out = Path(out)
    if out.suffix.lower() == ".gif" or have_ffmpeg():
        return out
    return out.with_suffix(".gif")


def _rgb(frame: np.ndarray) -> np.ndarray:
    return np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame


def write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float) -> int:
    import imageio.v2 as imageio

    count = 0
    # macro_block_size=2: yuv420p needs even sides (every ganforge size is even), and no silent resizing.
    writer = imageio.get_writer(
        path,
        format="FFMPEG",
        mode="I",
        fps=fps,
        codec="libx264",
        quality=8,
        macro_block_size=2,
        ffmpeg_log_level="error",
    )
    with writer:
        for frame in frames:
            writer.append_data(_rgb(frame))
            count += 1
    return count


def write_gif(frames: Iterable[np.ndarray], path: Path, fps: float) -> int:
    """Animated GIF that loops; GIF stores delays in 10 ms units, and Pillow merges identical neighbours."""
    from PIL import Image

    images = [Image.fromarray(f[:, :, 0] if f.shape[2] == 1 else f) for f in frames]
    if not images:
        raise ToolError("no frames to write: pass at least one seed transition")
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0)
    return len(images)


def write_video(frames: Iterable[np.ndarray], out: str | Path, fps: float = 30) -> tuple[Path, int]:
    """Write uint8 [H, W, C] frames to `video_path(out)` (mp4 or GIF). Returns (path written, frame count)."""
    fps = check_fps(fps)
    path = video_path(check_output_file(out, "--out", VIDEO_SUFFIXES))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        return path, write_gif(frames, path, fps)
    return path, write_mp4(frames, path, fps)


def with_progress(frames: Iterable[np.ndarray], total: int, label: str) -> Iterator[np.ndarray]:
    """Pass frames through while a rich progress bar counts them."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(label, total=total)
        for frame in frames:
            yield frame
            progress.advance(task)


def check_walk(G: torch.nn.Module, seeds: list[int], frames: int, grid: tuple[int, int], path: Path) -> int:
    """Every limit that depends on the model, before rendering; returns the number of frames."""
    G = require_stylegan(G, "a latent walk")
    split_walks(seeds, grid)
    images = len(seeds) * check_frames(frames)
    if images > MAX_VIDEO_IMAGES:
        raise ToolError(
            f"{len(seeds)} seeds x --frames {frames} is {images:,} images, more than the "
            f"{MAX_VIDEO_IMAGES:,} of one video: pass fewer seeds or frames"
        )
    cells, (_, h, w) = math.prod(grid), G.img_shape
    check_canvas(cells, h, w, f"one frame of --grid {grid[0]}x{grid[1]}")
    total = images // cells
    if path.suffix.lower() == ".gif" and total * cells * h * w > MAX_GIF_PIXELS:
        raise ToolError(
            f"a GIF of {total:,} frames of {grid[0] * w}x{grid[1] * h} is held in memory while it is "
            f"written, over {MAX_GIF_PIXELS / 1e9:.1f} gigapixels: pass fewer seeds or frames, or "
            f"install imageio-ffmpeg and write an .mp4"
        )
    return total


def walk_video(
    checkpoint: str | Path,
    seeds: list[int],
    out: str | Path = "walk.mp4",
    frames: int = 30,
    space: str = "w",
    truncation_psi: float = 1.0,
    fps: float = 30,
    noise_mode: str = "const",
    class_idx: int | None = None,
    grid: tuple[int, int] = (1, 1),
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[Path, int]:
    """Render a looping latent walk from a checkpoint's G_ema. Returns (file written, number of frames).

    Every option is checked, against the model too, before the output file is opened.
    """
    from ganforge.modelio.load import load_generator

    device = parse_device(device)
    truncation_psi, fps = check_psi(truncation_psi), check_fps(fps)
    path = video_path(check_output_file(out, "--out", VIDEO_SUFFIXES))
    if space not in SPACES:
        raise ToolError(f"--space {space!r}: choose w (lerp between mapped ws) or z (slerp between latents)")
    G = load_generator(checkpoint)
    total = check_walk(G, seeds, frames, grid, path)
    class_labels(G, 0, class_idx)
    stream = walk_frames(G, seeds, frames, space, truncation_psi, noise_mode, class_idx, grid, device=device)
    if progress:
        stream = with_progress(stream, total, "walk")
    return write_video(stream, path, fps)
