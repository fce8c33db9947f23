"""The loop's helpers: run directory, data feed, seeds, snapshots and the progress line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ganforge.errors import GanforgeError
from ganforge.images import make_grid, save_png, to_uint8
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
    grid = make_grid(sample_grid(state.G_ema, state.plan, cfg, device), cols=cfg.grid_size[0])
    save_png(grid, run_dir / f"fakes-{state.cur_nimg:012d}.png")  # Number = images shown to D.
    save_png(grid, run_dir / "fakes_latest.png")
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


def format_time(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def progress_line(state: TrainState, means: dict, total_nimg: int, elapsed: float, device: torch.device) -> str:
    kimg = state.cur_nimg / 1000
    spk = means.get("Timing/sec_per_kimg", 0.0)
    eta = spk * (total_nimg - state.cur_nimg) / 1000
    parts = [
        f"kimg {kimg:.2f}/{total_nimg / 1000:g}",
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
