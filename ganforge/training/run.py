"""The loop's helpers: run directory, data feed, seeds, snapshots and the progress line."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import torch

from ganforge.errors import GanforgeError
from ganforge.images import make_grid, save_png, save_png_atomic, to_uint8
from ganforge.latents import z_from_seeds
from ganforge.modelio import check
from ganforge.modelio import checkpoint as ck
from ganforge.plan import Plan
from ganforge.training.config import ConfigError, TrainConfig
from ganforge.training.state import TrainState, save_state


class TrainingDiverged(GanforgeError, RuntimeError):
    """Non-finite losses or weights more often than --max-failures allows."""


class CheckpointWriteError(GanforgeError, OSError):
    """A checkpoint that does not read back right after it was written."""


# ----------------------------------------------------------------------------
# Run directory.


def run_name(cfg: TrainConfig, plan: Plan) -> str:
    data = Path(cfg.data).name.removesuffix(".zip") if cfg.data else "data"
    return cfg.run_name or f"{cfg.family}-{cfg.preset}-{plan.resolution_text}-{data}"


def find_resume(cfg: TrainConfig, run_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(checkpoint to resume from or None, [(newer checkpoint skipped, why)]); nothing is written.

    Refuses to mix a new run into an old one, and never starts over silently: with --resume latest and
    checkpoints present but none usable, it lists them and stops.
    """
    if cfg.resume == "latest":
        good, skipped = check.newest_good(run_dir)
        if good is None and skipped:
            listing = "; ".join(f"{p.name}: {why}" for p, why in skipped[:5])
            raise ConfigError(
                f"--resume latest found no usable checkpoint in {run_dir} ({listing}); resume from a "
                f"good copy with --resume PATH, or start a new run with another --outdir or --run-name"
            )
        return good, skipped
    if cfg.resume:
        path = Path(cfg.resume)
        if not path.is_file():
            raise ConfigError(f"--resume {cfg.resume}: no such checkpoint file; use --resume latest or a file path")
        why = check.problem(path)
        if why is not None:
            raise ConfigError(f"--resume {cfg.resume} cannot be used: {why}")
        return path, []
    if ck.list_checkpoints(run_dir):
        raise ConfigError(
            f"{run_dir} already holds checkpoints: add --resume latest to continue that run, "
            f"or choose another --run-name / --outdir"
        )
    return None, []


def create_run_dir(
    cfg: TrainConfig, plan: Plan, run_dir: Path, resume: Path | None, skipped: list[tuple[Path, str]], log
) -> dict:
    """Make the run directory, write config.json (with what a resume changed, which it returns), and log
    (events.jsonl) what resume skipped."""
    from ganforge.training.record import write_config

    run_dir.mkdir(parents=True, exist_ok=True)
    changed = write_config(run_dir, cfg, plan, resume)
    for path, why in skipped:
        log(f"warning: skipped {path.name}: {why}")
        log_event(run_dir, {"event": "resume_skipped", "file": path.name, "reason": why})
    if resume is not None:
        log_event(run_dir, {"event": "resume", "file": resume.name, **({"changed": changed} if changed else {})})
    return changed


def log_event(run_dir: Path, event: dict) -> None:
    """One line of events.jsonl: resumes, skipped checkpoints, rollbacks."""
    with open(run_dir / "events.jsonl", "a") as f:
        f.write(json.dumps({"time": round(time.time(), 3), **event}) + "\n")


# ----------------------------------------------------------------------------
# Data.


def open_dataset(cfg: TrainConfig):
    """The training images as stored: the loop never resizes them (a size that does not fit is refused)."""
    from ganforge.data.dataset import ImageDataset

    if not cfg.data:
        raise ConfigError("--data is required: a folder or zip of images (see `ganforge dataset prepare`)")
    try:
        return ImageDataset(cfg.data, resolution=None, use_labels=cfg.cond, xflip=cfg.mirror)
    except GanforgeError:
        raise
    except (ValueError, OSError) as e:  # Empty folders, unreadable images, mixed sizes: the dataset's sentence.
        raise ConfigError(f"--data {cfg.data}: {e}") from None


def step_seed(seed: int, rank: int, step: int, failures: int = 0) -> int:
    """Seed of one training step on one rank."""
    return (seed * 1_000_003 + rank * 7_919 + step * 104_729 + failures * 15_485_863) % (2**63)


def build_loader(dataset, cfg: TrainConfig, batch_gpu: int, dist, start_step: int):
    """Infinite iterator of (uint8 images [batch_gpu, C, H, W], labels [batch_gpu, c_dim]) on the CPU from step
    `start_step` on (batch_gpu = this process's share of --batch): `ganforge.data.loader.make_loader`'s
    step-indexed batches, so a resumed run sees the same data."""
    from ganforge.data.loader import make_loader

    if cfg.batch is not None and batch_gpu * dist.world_size != cfg.batch:  # Else resumed runs would see other data.
        raise ValueError(f"batch_gpu={batch_gpu} is not --batch {cfg.batch} shared by {dist.world_size} process(es)")
    return make_loader(
        dataset,
        batch_size=batch_gpu,
        rank=dist.rank,
        world_size=dist.world_size,
        seed=cfg.seed,
        workers=cfg.workers if len(dataset) > 64 else 0,
        start_step=start_step,
        pin_memory=torch.cuda.is_available(),  # The loop copies the batches to the device.
    )


def fake_labels(dataset, n: int, c_dim: int, device: torch.device) -> torch.Tensor:
    """One-hot labels drawn with the dataset's class frequencies (official: labels of random reals)."""
    if c_dim == 0:
        return torch.zeros([n, 0], device=device)
    counts = torch.as_tensor(dataset.label_counts, dtype=torch.float32)
    idx = torch.multinomial(counts, n, replacement=True)
    return torch.nn.functional.one_hot(idx, c_dim).to(device=device, dtype=torch.float32)


# ----------------------------------------------------------------------------
# Snapshots and progress.


@torch.no_grad()
def sample_grid(G: torch.nn.Module, plan: Plan, cfg: TrainConfig, device: torch.device) -> torch.Tensor:
    """Fixed seeds 0..cols·rows-1 (and cycling labels): the same grid at every snapshot. uint8 NCHW."""
    cols, rows = cfg.grid_size
    n = cols * rows
    z = z_from_seeds(list(range(n)), plan.z_dim).to(device)
    c = None
    if plan.c_dim:
        c = torch.nn.functional.one_hot(torch.arange(n) % plan.c_dim, plan.c_dim).float().to(device)
    kwargs = {"noise_mode": "const"} if plan.family == "stylegan2" else {}
    was_training = G.training
    G.eval()
    imgs = torch.cat([G(z[i : i + 8], None if c is None else c[i : i + 8], **kwargs) for i in range(0, n, 8)])
    G.train(was_training)
    return to_uint8(imgs)


def save_snapshot(state: TrainState, run_dir: Path, dataset, sinks, cfg: TrainConfig) -> None:
    """Sample grid PNG (fixed seeds) + checkpoint; prune old checkpoints."""
    device = next(state.G_ema.parameters()).device
    kimg = state.cur_nimg / 1000
    images = sample_grid(state.G_ema, state.plan, cfg, device)
    grid = make_grid(images, cols=cfg.grid_size[0])
    save_png(grid, run_dir / f"fakes-{state.cur_nimg:012d}.png")  # Number = images shown to D.
    save_png(grid, run_dir / "fakes_latest.png")
    write_progress(run_dir, state.cur_nimg, images)
    if sinks is not None:
        sinks.image("fakes", grid if grid.ndim == 3 else grid[:, :, None], kimg)
    if state.cur_nimg == 0 and not (run_dir / "reals.png").exists():
        n = min(len(dataset), cfg.grid_size[0] * cfg.grid_size[1])
        reals = torch.stack([dataset[i][0] for i in range(n)])
        save_png(make_grid(reals, cols=cfg.grid_size[0]), run_dir / "reals.png")
    path = run_dir / ck.checkpoint_name(state.cur_nimg)
    save_state(state, path)
    why = check.problem(path)  # Read back what was written: a disk that corrupts writes is caught now.
    if why is not None:
        raise CheckpointWriteError(
            f"the checkpoint just written does not read back ({why}): check the disk "
            f"of {run_dir}, then continue with --resume latest"
        )
    check.prune(run_dir, cfg.keep)


# The progress image: the first PROGRESS_SEEDS grid seeds (one row each) at up to PROGRESS_SNAPSHOTS snapshots (one
# column each, oldest left, newest right), tiles shrunk to at most PROGRESS_TILE pixels on their long side.
PROGRESS_NAME = "progress.png"
PROGRESS_SEEDS = 8
PROGRESS_SNAPSHOTS = 16
PROGRESS_TILE = 256
FAKES_RE = re.compile(r"^fakes-(\d{12})\.png$")


def progress_picks(nimgs: list[int], most: int | None = None) -> list[int]:
    """At most `most` (PROGRESS_SNAPSHOTS) of the sorted snapshot counts, evenly spread: always the first and the
    newest."""
    most = most or PROGRESS_SNAPSHOTS
    if len(nimgs) <= most:
        return list(nimgs)
    return [nimgs[round(i * (len(nimgs) - 1) / (most - 1))] for i in range(most)]


def _shrink_tile(tile: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W] or [H, W, C] -> (h, w) = size by area averaging (PIL's BOX filter)."""
    from PIL import Image

    if tile.shape[:2] == size:
        return tile
    return np.asarray(Image.fromarray(tile).resize((size[1], size[0]), Image.Resampling.BOX))


def _column(tiles: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    return np.concatenate([_shrink_tile(t, size) for t in tiles], axis=0)


def _column_from_file(path: Path, count: int, tile_hw: tuple[int, int], channels: int, size: tuple[int, int]):
    """The first `count` tiles of an earlier fakes-*.png (its own number of columns), stacked; None when the file
    is unreadable or does not hold tiles of this run's size (the snapshot is then left out)."""
    from PIL import Image

    th, tw = tile_hw
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    h, w = arr.shape[:2]
    cols = w // tw
    if h % th or w % tw or cols * (h // th) < count:
        return None
    tiles = [arr[(i // cols) * th : (i // cols + 1) * th, (i % cols) * tw : (i % cols + 1) * tw] for i in range(count)]
    return _column(tiles, size)


def write_progress(run_dir: Path, cur_nimg: int, images: torch.Tensor) -> Path:
    """Write progress.png (atomically): the first grid seeds at this snapshot and at the earlier ones.

    Rebuilt from the run's fakes-<nimg>.png files at every snapshot (never from state kept in memory), so a resumed
    run, a rollback or a restart draws the same picture: snapshots newer than this one (left by a run that was
    rolled back) are left out. `images` is this snapshot's sample grid, uint8 [N, C, H, W], seeds 0..N-1.
    """
    n, c, h, w = images.shape
    count = min(PROGRESS_SEEDS, n)
    shrink = max(1, math.ceil(max(h, w) / PROGRESS_TILE))
    size = (max(1, h // shrink), max(1, w // shrink))
    found = (FAKES_RE.match(p.name) for p in run_dir.glob("fakes-*.png"))
    earlier = sorted(nimg for m in found if m and (nimg := int(m.group(1))) < cur_nimg)
    columns = []
    for nimg in progress_picks([*earlier, cur_nimg])[:-1]:
        column = _column_from_file(run_dir / f"fakes-{nimg:012d}.png", count, (h, w), c, size)
        if column is not None:
            columns.append(column)
    now = images[:count].permute(0, 2, 3, 1).cpu().numpy()
    columns.append(_column([t[:, :, 0] if c == 1 else t for t in now], size))
    path = run_dir / PROGRESS_NAME
    save_png_atomic(np.concatenate(columns, axis=1), path)
    return path


def format_time(seconds: float) -> str:
    """12s, 3m 05s, 2h 07m; never negative (a count past its total is 0s)."""
    s = max(0, int(seconds)) if math.isfinite(seconds) else 0
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def format_kimg(done_nimg: int, total_nimg: int) -> str:
    """'1.02/12.00' or '0.008/0.016': both with the decimals that show the total exactly (2 or 3)."""
    digits = 2 if total_nimg % 10 == 0 else 3
    return f"{done_nimg / 1000:.{digits}f}/{total_nimg / 1000:.{digits}f}"


def progress_line(state: TrainState, means: dict, total_nimg: int, elapsed: float, device: torch.device) -> str:
    # The last step may overshoot the total by part of a batch: the line shows the total reached, not beyond it.
    done = min(state.cur_nimg, total_nimg)
    spk = means.get("Timing/sec_per_kimg", 0.0)
    eta = spk * (total_nimg - done) / 1000
    parts = [
        f"kimg {format_kimg(done, total_nimg)}",
        f"{spk:.2f} s/kimg",
        f"ETA {format_time(eta)}",
        f"time {format_time(elapsed)}",
    ]
    for key, label in (
        ("Loss/G/loss", "G"),
        ("Loss/D/loss", "D"),
        ("Loss/r1_penalty", "R1"),
        ("Loss/pl_penalty", "PL"),
    ):
        if key in means:
            parts.append(f"{label} {means[key]:.3f}")
    if means.get("Augment/p", 0) > 0:
        parts.append(f"p {means['Augment/p']:.3f}")
    if "Resources/peak_gpu_mem_gb" in means:
        parts.append(f"mem {means['Resources/peak_gpu_mem_gb']:.2f} GB")
    return " | ".join(parts)
