"""Latent walks: loop through seeds in z (slerp) or w (lerp) and write the frames as a video.

A walk through K key seeds has K·frames frames and loops (the last transition returns to the first seed).
Several walks can play side by side as a grid, each through its own run of seeds. Videos are mp4 (H.264)
through imageio + imageio-ffmpeg when both are installed, else animated GIFs through Pillow.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from ganforge.images import make_grid
from ganforge.latents import z_from_seeds
from ganforge.tools.generate import class_labels
from ganforge.tools.mix import require_stylegan, synthesize

SPACES = ("w", "z")


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
def walk_ws(G: torch.nn.Module, seeds: list[int], frames: int, space: str = "w", truncation_psi: float = 1.0,
            class_idx: int | None = None) -> torch.Tensor:
    """[len(seeds)·frames, num_ws, w_dim]: one looping walk through the seeds (on G's device)."""
    if space not in SPACES:
        raise ValueError(f"--space {space!r}: choose w (lerp between mapped ws) or z (slerp between latents)")
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
    return w[:, None].repeat(1, G.num_ws, 1)


def split_walks(seeds: list[int], grid: tuple[int, int]) -> list[list[int]]:
    """Seeds -> one run of consecutive seeds per grid cell (row-major); every walk needs ≥ 2 seeds."""
    cols, rows = grid
    cells = cols * rows
    if cols < 1 or rows < 1:
        raise ValueError(f"--grid {cols}x{rows}: both sides must be at least 1")
    if len(seeds) % cells or len(seeds) // cells < 2:
        raise ValueError(f"{len(seeds)} seeds cannot make {cells} walks of at least 2 seeds each: pass a multiple "
                         f"of {cells} seeds, at least {2 * cells}")
    per = len(seeds) // cells
    return [seeds[i * per : (i + 1) * per] for i in range(cells)]


def walk_frames(G: torch.nn.Module, seeds: list[int], frames: int = 30, space: str = "w",
                truncation_psi: float = 1.0, noise_mode: str = "const", class_idx: int | None = None,
                grid: tuple[int, int] = (1, 1), batch: int = 8,
                device: str | torch.device = "cpu") -> Iterator[np.ndarray]:
    """uint8 frames [H', W', C] of the walk(s), rendered lazily; a (cols, rows) grid plays several walks at once.

    Arguments are checked here, before the first frame is asked for.
    """
    require_stylegan(G, "a latent walk")
    if frames < 1:
        raise ValueError(f"--frames {frames}: pass at least 1 frame per transition")
    G = G.to(device)
    walks = [walk_ws(G, s, frames, space, truncation_psi, class_idx) for s in split_walks(seeds, grid)]
    return _render(G, torch.stack(walks, dim=1), noise_mode, grid[0], batch)  # ws: [T, cells, num_ws, w_dim]


def _render(G: torch.nn.Module, ws: torch.Tensor, noise_mode: str, cols: int, batch: int) -> Iterator[np.ndarray]:
    for i in range(0, len(ws), batch):
        chunk = ws[i : i + batch]
        imgs = synthesize(G, chunk.flatten(0, 1), noise_mode, batch=chunk.shape[0] * chunk.shape[1])
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
    with imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=8,
                            macro_block_size=2, ffmpeg_log_level="error") as writer:
        for frame in frames:
            writer.append_data(_rgb(frame))
            count += 1
    return count


def write_gif(frames: Iterable[np.ndarray], path: Path, fps: float) -> int:
    """Animated GIF that loops; GIF stores delays in 10 ms units, and Pillow merges identical neighbours."""
    from PIL import Image

    images = [Image.fromarray(f[:, :, 0] if f.shape[2] == 1 else f) for f in frames]
    if not images:
        raise ValueError("no frames to write")
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0)
    return len(images)


def write_video(frames: Iterable[np.ndarray], out: str | Path, fps: float = 30) -> tuple[Path, int]:
    """Write uint8 [H, W, C] frames to `video_path(out)` (mp4 or GIF). Returns (path written, frame count)."""
    if fps <= 0:
        raise ValueError(f"--fps {fps}: pass a positive frame rate")
    path = video_path(out)
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


def walk_video(checkpoint: str | Path, seeds: list[int], out: str | Path = "walk.mp4", frames: int = 30,
               space: str = "w", truncation_psi: float = 1.0, fps: float = 30, noise_mode: str = "const",
               class_idx: int | None = None, grid: tuple[int, int] = (1, 1), device: str = "cpu",
               progress: bool = True) -> tuple[Path, int]:
    """Render a looping latent walk from a checkpoint's G_ema. Returns (file written, number of frames)."""
    from ganforge.tools.generate import load_generator

    G = load_generator(checkpoint)
    split_walks(seeds, grid)  # Fail on a bad seed count before any work.
    total = len(seeds) // math.prod(grid) * frames
    stream = walk_frames(G, seeds, frames, space, truncation_psi, noise_mode, class_idx, grid, device=device)
    if progress:
        stream = with_progress(stream, total, "walk")
    return write_video(stream, out, fps)
