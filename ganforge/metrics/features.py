"""Detector features of real and generated images: options, extraction across ranks, and the real-data cache.

Images reach the detector as NCHW uint8 (reals as stored, xflip off; fakes quantized with
`ganforge.images.to_uint8`), so real and generated images are treated alike. Generated image k depends only on
(seed, k): latent k is `RandomState(seed·2^20 + k).randn(z_dim)` and its label is drawn from the dataset's label
distribution, whatever the batch size or the number of ranks. Under torch.distributed each rank extracts a
contiguous share of the items and the features are all-gathered in item order.

Real-data features are cached in `<cache>/metrics/` under a key made of the dataset's content digest, the
detector file's digest and the options (count, detector arguments), as `.npz`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ganforge.distributed import every_rank, gather_rows, rank_share, rank_world
from ganforge.errors import GanforgeError
from ganforge.images import to_uint8
from ganforge.metrics.detectors import Detector, cache_dir, load_detector
from ganforge.models import is_stylegan
from ganforge.resources import available_ram_bytes

CACHE_VERSION = 1  # Bump when the cached content or its key changes.


class MetricError(GanforgeError, ValueError):
    """A metric cannot run as asked (unknown name, missing input, data that does not fit the generator)."""


@dataclass
class MetricOptions:
    G: torch.nn.Module | None = None  # Generator (G_ema) called G(z, c, noise_mode='const'); None = no fakes.
    dataset_path: str | Path | None = None  # Real data (zip or folder, as `ganforge.data.ImageDataset` reads it).
    detector_paths: dict[str, str | None] = field(default_factory=dict)  # 'inception'/'vgg16' -> file; None = find.
    num_gen: int | None = None  # Generated images per metric; None = the metric's own count (50,000).
    device: str | torch.device = "cpu"  # Where G and the detectors run.
    batch: int | None = None  # Images per generator/detector call, per rank; None = fitted to memory (fit_batch).
    progress: bool = True  # Show progress bars (rank 0 only).
    allow_download: bool = False  # Fetch missing detector files into the cache folder.
    cache: bool = True  # Read and write real-data features in the cache folder.
    seed: int = 0  # Latents and labels of the fakes; random subsets (KID).
    workers: int = 0  # DataLoader processes decoding the reals; 0 = in this process.
    memo: dict = field(default_factory=dict, repr=False)  # Within one run: detectors, dataset, features.

    def detector(self, name: str) -> Detector:
        key = ("detector", name)
        if key not in self.memo:
            self.memo[key] = load_detector(name, self.detector_paths.get(name), self.allow_download, self.device)
        return self.memo[key]

    def dataset(self):
        if self.dataset_path is None:
            raise MetricError("this metric needs real images: pass dataset_path (--data) with the training data")
        if "dataset" not in self.memo:
            from ganforge.data import ImageDataset

            self.memo["dataset"] = ImageDataset(self.dataset_path, xflip=False)
        return self.memo["dataset"]

    def generator(self) -> torch.nn.Module:
        if self.G is None:
            raise MetricError("this metric needs a generator: pass G (or --checkpoint)")
        return self.G


# ----------------------------------------------------------------------------------------------------------------
# Extraction.


def progress_bar(total: int, label: str, show: bool):
    """(advance(k), close()) for a rich progress bar, or no-ops."""
    if not show or rank_world()[0] != 0:
        return (lambda k: None), (lambda: None)
    from rich.progress import MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(*Progress.get_default_columns()[:-1], MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
    bar.start()
    task = bar.add_task(label, total=total)
    return (lambda k: bar.advance(task, k)), bar.stop


# Peak memory per image of a no-grad detector call, fp32, with headroom: the real Inception network (299x299 after
# the resize) measured ~15 MiB per image on a CPU (batch 8 -> 32); VGG16 at 224x224 from its layer sizes (~40 MiB).
DETECTOR_BYTES_PER_IMAGE = {"inception": 32 << 20, "vgg16": 80 << 20}
MAX_AUTO_BATCH = {"cpu": 64, "cuda": 256}


def is_out_of_memory(e: BaseException) -> bool:
    """A GPU (or CPU allocator) out-of-memory error, as opposed to any other failure."""
    text = str(e).lower()
    return isinstance(e, torch.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
    )


def available_memory(device: torch.device) -> int:
    """Free bytes on the device: the GPU's free memory, or MemAvailable on a CPU (8 GiB where unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    free = available_ram_bytes()
    return free if free is not None else 8 << 30


def generator_bytes_per_image(G: torch.nn.Module | None) -> int:
    """No-grad peak per generated image, fp32: about four live tensors of the largest block output."""
    plan = getattr(G, "plan", None)
    if plan is None or not getattr(plan, "channels", None):
        return 0
    largest = max(c * h * w for c, (h, w) in zip(plan.channels, plan.block_sizes))
    return 4 * 4 * largest


def fit_batch(opts: MetricOptions, per_image_bytes: int) -> int:
    """opts.batch, or the largest power of two whose estimated peak fits half the free GPU memory (a quarter of
    the available RAM on CPUs), at most 256 (64 on CPUs). BatchFitter halves it further on out-of-memory errors."""
    if opts.batch:
        return opts.batch
    device = torch.device(opts.device)
    share = 0.5 if device.type == "cuda" else 0.25
    n = int(available_memory(device) * share // max(per_image_bytes, 1))
    cap = MAX_AUTO_BATCH.get(device.type, 64)
    return max(1, min(cap, 1 << max(n, 1).bit_length() - 1))


class BatchFitter:
    """Runs items in batches of `size`; an out-of-memory error halves the size and retries the same items.

    Results do not depend on the batch size: fakes are a function of their item index, reals of their position.
    """

    def __init__(self, size: int, device: str | torch.device):
        self.size, self.device = max(1, size), torch.device(device)

    def run(self, fn: Callable[[int, int], torch.Tensor], n: int, advance: Callable[[int], None]) -> list[torch.Tensor]:
        out, start = [], 0
        while start < n:
            stop = min(start + self.size, n)
            try:
                out.append(fn(start, stop))
            except Exception as e:
                if not is_out_of_memory(e):
                    raise
                if stop - start == 1:
                    raise MemoryError(
                        f"out of memory on {self.device} with a single image per batch: free memory "
                        f"or run the metrics on another device (--device)"
                    ) from e
                self.size = (stop - start) // 2
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            advance(stop - start)
            start = stop
        return out


@torch.no_grad()
def extract(
    fn: Callable[[int, int], torch.Tensor], n_local: int, n: int, label: str, opts: MetricOptions, fitter: BatchFitter
) -> np.ndarray:
    """Features of this rank's items [0, n_local) in fitted batches, gathered over ranks => float32 [n, F]."""
    world = rank_world()[1]
    advance, close = progress_bar(n, label, opts.progress)
    try:
        parts = [f.float() for f in fitter.run(fn, n_local, lambda k: advance(k * world))]
    finally:
        close()
    local = torch.cat(parts) if parts else torch.zeros([0, 0], device=opts.device)
    return gather_rows(local, n).cpu().numpy()


class SequentialReader:
    """Items [start, stop) of a DataLoader's image stream, asked for in order (a retry may ask for less again)."""

    def __init__(self, loader: torch.utils.data.DataLoader):
        self.batches, self.held, self.offset = iter(loader), None, 0  # self.held[0] is item self.offset.

    def take(self, start: int, stop: int) -> torch.Tensor:
        if self.held is not None:
            self.held, self.offset = self.held[start - self.offset :], start
        while self.held is None or len(self.held) < stop - start:
            images, _labels = next(self.batches)
            self.held = images if self.held is None else torch.cat([self.held, images])
        return self.held[: stop - start]


def real_feature_rows(
    opts: MetricOptions, embed: Callable[[torch.Tensor], torch.Tensor], n: int, label: str, per_image_bytes: int
) -> np.ndarray:
    """Features of the first n reals: this rank's share decoded in chunks, embedded in fitted batches."""
    share = rank_share(n, *rank_world())
    fitter = BatchFitter(fit_batch(opts, per_image_bytes), opts.device)
    subset = torch.utils.data.Subset(opts.dataset(), list(share))
    loader = torch.utils.data.DataLoader(subset, batch_size=max(fitter.size, 64), num_workers=opts.workers)
    images = SequentialReader(loader)
    return extract(lambda a, b: embed(images.take(a, b).to(opts.device)), len(share), n, label, opts, fitter)


def fake_labels(opts: MetricOptions, n: int, c_dim: int) -> torch.Tensor | None:
    """One-hot [n, c_dim] labels drawn from the dataset's label distribution (None when unconditional)."""
    if c_dim == 0:
        return None
    counts = np.asarray(opts.dataset().label_counts, dtype=np.float64) if opts.dataset_path else np.ones(c_dim)
    if len(counts) != c_dim:
        raise MetricError(
            f"the generator has c_dim={c_dim} but the dataset has {len(counts)} label classes: "
            f"evaluate it on the data it was trained on"
        )
    classes = np.random.RandomState(opts.seed).choice(c_dim, size=n, p=counts / counts.sum())
    return torch.nn.functional.one_hot(torch.from_numpy(classes), c_dim).float()


def fake_latents(seed: int, items: range, z_dim: int) -> torch.Tensor:
    """[len(items), z_dim]: latent k = RandomState(seed·2^20 + k).randn(z_dim), independent of batching."""
    z = [np.random.RandomState((seed << 20) + k).randn(z_dim) for k in items]
    return torch.from_numpy(np.stack(z)).to(torch.float32) if z else torch.zeros([0, z_dim])


def fake_feature_rows(
    opts: MetricOptions, embed: Callable[[torch.Tensor], torch.Tensor], n: int, label: str, per_image_bytes: int
) -> np.ndarray:
    """Features of n generated images (item k from latent k), this rank's share in fitted batches."""
    G = opts.generator().to(opts.device)
    share = rank_share(n, *rank_world())
    labels = fake_labels(opts, n, getattr(G, "c_dim", 0))
    fitter = BatchFitter(fit_batch(opts, per_image_bytes + generator_bytes_per_image(G)), opts.device)

    def features(start: int, stop: int) -> torch.Tensor:
        items = range(share.start + start, share.start + stop)
        z = fake_latents(opts.seed, items, cast(int, G.z_dim)).to(opts.device)  # z_dim: an attribute of G's own.
        c = None if labels is None else labels[items.start : items.stop].to(opts.device)
        img = G(z, c, noise_mode="const") if is_stylegan(G) else G(z, c)
        return embed(to_uint8(img))

    return extract(features, len(share), n, label, opts, fitter)


# ----------------------------------------------------------------------------------------------------------------
# Real-data cache.


def content_digest(path: str | Path) -> str:
    """sha256 of a dataset's bytes: the zip file, or every file of a folder (relative names included)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def cache_file(opts: MetricOptions, detector: Detector, what: str, options: dict) -> Path:
    """<cache>/metrics/<dataset>-<detector>-<what>-<key>.npz, the key hashing content, detector and options."""
    assert opts.dataset_path is not None  # The callers read the dataset first (opts.dataset() raises without one).
    memo_key = ("digest", str(opts.dataset_path))
    if memo_key not in opts.memo:
        opts.memo[memo_key] = content_digest(opts.dataset_path)
    key = dict(version=CACHE_VERSION, data=opts.memo[memo_key], detector=detector.sha256, what=what, **options)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    stem = Path(str(opts.dataset_path).rstrip("/\\")).stem
    return cache_dir() / "metrics" / f"{stem}-{detector.name}-{what}-{digest}.npz"


def cached(opts: MetricOptions, file: Path, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Load `file` if cached, else compute and save it (rank 0, atomic rename)."""
    if opts.cache and every_rank(file.is_file(), opts.device):
        with np.load(file) as data:
            return dict(data)
    arrays: dict[str, Any] = compute()  # Any: np.savez's stubs match **arrays to allow_pickle.
    if opts.cache and rank_world()[0] == 0:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f"{file.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, file)
    return arrays


# ----------------------------------------------------------------------------------------------------------------
# What the metrics call.


def detector_bytes_per_image(detector: Detector) -> int:
    return DETECTOR_BYTES_PER_IMAGE.get(detector.name, 64 << 20)


def call_name(detector: Detector, call_kwargs: dict) -> str:
    return f"{detector.name}:{detector.sha256}:{json.dumps(call_kwargs, sort_keys=True)}"


def real_features(
    opts: MetricOptions, detector_name: str, max_items: int | None = None, call_kwargs=None, save: bool = True
) -> np.ndarray:
    """[N, F] features of the first min(len, max_items) reals; cached on disk when `save`."""
    detector = opts.detector(detector_name)
    call_kwargs = dict(call_kwargs or detector.call_kwargs)
    n = min(len(opts.dataset()), max_items or len(opts.dataset()))
    memo_key = ("real", call_name(detector, call_kwargs), n)
    if memo_key in opts.memo:
        return opts.memo[memo_key]

    def compute() -> dict[str, np.ndarray]:
        embed = lambda x: detector.embed(x, **call_kwargs)
        label = f"{detector.name} features of reals"
        return {"features": real_feature_rows(opts, embed, n, label, detector_bytes_per_image(detector))}

    if save:
        file = cache_file(opts, detector, "features", dict(n=n, call=call_kwargs))
        feats = cached(opts, file, compute)["features"]
    else:
        feats = compute()["features"]
    opts.memo[memo_key] = feats
    return feats


def real_mean_cov(opts: MetricOptions, detector_name: str, max_items: int | None = None) -> dict[str, np.ndarray]:
    """{'mu', 'sigma', 'n'} of the reals' features (float64; only these are cached, not the features)."""
    from ganforge.metrics.fid import mean_cov

    detector = opts.detector(detector_name)
    n = min(len(opts.dataset()), max_items or len(opts.dataset()))
    file = cache_file(opts, detector, "stats", dict(n=n, call=detector.call_kwargs))

    def compute() -> dict[str, np.ndarray]:
        mu, sigma = mean_cov(real_features(opts, detector_name, n, save=False))
        return {"mu": mu, "sigma": sigma, "n": np.asarray(n)}

    return cached(opts, file, compute)


def fake_features(opts: MetricOptions, detector_name: str, num_gen: int, call_kwargs=None) -> np.ndarray:
    """[num_gen, F] features of generated images (kept for the other metrics of this run, never on disk)."""
    detector = opts.detector(detector_name)
    call_kwargs = dict(call_kwargs or detector.call_kwargs)
    memo_key = ("fake", call_name(detector, call_kwargs), num_gen, opts.seed)
    if memo_key not in opts.memo:
        embed = lambda x: detector.embed(x, **call_kwargs)
        label = f"{detector.name} features of {num_gen} generated images"
        opts.memo[memo_key] = fake_feature_rows(opts, embed, num_gen, label, detector_bytes_per_image(detector))
    return opts.memo[memo_key]
