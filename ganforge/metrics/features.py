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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ganforge.images import to_uint8
from ganforge.metrics.detectors import Detector, cache_dir, load_detector

CACHE_VERSION = 1  # Bump when the cached content or its key changes.


@dataclass
class MetricOptions:
    G: torch.nn.Module | None = None  # Generator (G_ema) called G(z, c, noise_mode='const'); None = no fakes.
    dataset_path: str | Path | None = None  # Real data (zip or folder, as `ganforge.data.ImageDataset` reads it).
    detector_paths: dict[str, str | None] = field(default_factory=dict)  # 'inception'/'vgg16' -> file; None = find.
    num_gen: int | None = None  # Generated images per metric; None = the metric's own count (50,000).
    device: str | torch.device = "cpu"  # Where G and the detectors run.
    batch: int = 32  # Images per generator/detector call, per rank.
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
            raise ValueError("this metric needs real images: pass dataset_path (--data) with the training data")
        if "dataset" not in self.memo:
            from ganforge.data import ImageDataset

            self.memo["dataset"] = ImageDataset(self.dataset_path, xflip=False)
        return self.memo["dataset"]

    def generator(self) -> torch.nn.Module:
        if self.G is None:
            raise ValueError("this metric needs a generator: pass G (or --checkpoint)")
        return self.G


# ----------------------------------------------------------------------------------------------------------------
# Ranks.


def rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def rank_share(n: int, rank: int, world: int) -> range:
    """The contiguous items of `rank`: shares differ by at most one item."""
    return range(rank * n // world, (rank + 1) * n // world)


def gather_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """Concatenate every rank's [n_r, F] share in rank order (padded to equal size for all_gather)."""
    rank, world = rank_world()
    if world == 1:
        return x
    most = max(len(rank_share(n, r, world)) for r in range(world))
    padded = torch.zeros([most, x.shape[1]], dtype=x.dtype, device=x.device)
    padded[: len(x)] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    torch.distributed.all_gather(parts, padded)
    return torch.cat([p[: len(rank_share(n, r, world))] for r, p in enumerate(parts)])


def on_every_rank(flag: bool, device: str | torch.device) -> bool:
    """True only if every rank says so (a cache file seen by rank 0 alone must not skip a collective)."""
    if rank_world()[1] == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
    return bool(t.item())


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


@torch.no_grad()
def extract(embed: Callable[[torch.Tensor], torch.Tensor], batches: Iterator[torch.Tensor], n: int, label: str,
            opts: MetricOptions) -> np.ndarray:
    """Features of this rank's uint8 batches, gathered over ranks => float32 [n, F] on every rank."""
    advance, close = progress_bar(n, label, opts.progress)
    parts = []
    try:
        for images in batches:
            parts.append(embed(images.to(opts.device)).float())
            advance(len(images) * rank_world()[1])
    finally:
        close()
    local = torch.cat(parts) if parts else torch.zeros([0, 0], device=opts.device)
    return gather_rows(local, n).cpu().numpy()


def real_batches(opts: MetricOptions, n: int) -> Iterator[torch.Tensor]:
    """This rank's share of the first n reals, as uint8 [B, C, H, W] batches."""
    share = rank_share(n, *rank_world())
    subset = torch.utils.data.Subset(opts.dataset(), list(share))
    loader = torch.utils.data.DataLoader(subset, batch_size=opts.batch, num_workers=opts.workers)
    return (images for images, _labels in loader)


def fake_labels(opts: MetricOptions, n: int, c_dim: int) -> torch.Tensor | None:
    """One-hot [n, c_dim] labels drawn from the dataset's label distribution (None when unconditional)."""
    if c_dim == 0:
        return None
    counts = np.asarray(opts.dataset().label_counts, dtype=np.float64) if opts.dataset_path else np.ones(c_dim)
    if len(counts) != c_dim:
        raise ValueError(f"the generator has c_dim={c_dim} but the dataset has {len(counts)} label classes: "
                         f"evaluate it on the data it was trained on")
    classes = np.random.RandomState(opts.seed).choice(c_dim, size=n, p=counts / counts.sum())
    return torch.nn.functional.one_hot(torch.from_numpy(classes), c_dim).float()


def fake_latents(seed: int, items: range, z_dim: int) -> torch.Tensor:
    """[len(items), z_dim]: latent k = RandomState(seed·2^20 + k).randn(z_dim), independent of batching."""
    z = [np.random.RandomState((seed << 20) + k).randn(z_dim) for k in items]
    return torch.from_numpy(np.stack(z)).to(torch.float32) if z else torch.zeros([0, z_dim])


def fake_batches(opts: MetricOptions, n: int) -> Iterator[torch.Tensor]:
    """This rank's share of n generated images, as uint8 [B, C, H, W] batches."""
    G = opts.generator().to(opts.device)
    share = rank_share(n, *rank_world())
    labels = fake_labels(opts, n, getattr(G, "c_dim", 0))
    for start in range(share.start, share.stop, opts.batch):
        items = range(start, min(start + opts.batch, share.stop))
        z = fake_latents(opts.seed, items, G.z_dim).to(opts.device)
        c = None if labels is None else labels[items.start : items.stop].to(opts.device)
        img = G(z, c, noise_mode="const") if hasattr(G, "mapping") else G(z, c)
        yield to_uint8(img)


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
    memo_key = ("digest", str(opts.dataset_path))
    if memo_key not in opts.memo:
        opts.memo[memo_key] = content_digest(opts.dataset_path)
    key = dict(version=CACHE_VERSION, data=opts.memo[memo_key], detector=detector.sha256, what=what, **options)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    stem = Path(str(opts.dataset_path).rstrip("/\\")).stem
    return cache_dir() / "metrics" / f"{stem}-{detector.name}-{what}-{digest}.npz"


def cached(opts: MetricOptions, file: Path, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Load `file` if cached, else compute and save it (rank 0, atomic rename)."""
    if opts.cache and on_every_rank(file.is_file(), opts.device):
        with np.load(file) as data:
            return dict(data)
    arrays = compute()
    if opts.cache and rank_world()[0] == 0:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f"{file.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, file)
    return arrays


# ----------------------------------------------------------------------------------------------------------------
# What the metrics call.


def call_name(detector: Detector, call_kwargs: dict) -> str:
    return f"{detector.name}:{detector.sha256}:{json.dumps(call_kwargs, sort_keys=True)}"


def real_features(opts: MetricOptions, detector_name: str, max_items: int | None = None, call_kwargs=None,
                  save: bool = True) -> np.ndarray:
    """[N, F] features of the first min(len, max_items) reals; cached on disk when `save`."""
    detector = opts.detector(detector_name)
    call_kwargs = dict(call_kwargs or detector.call_kwargs)
    n = min(len(opts.dataset()), max_items or len(opts.dataset()))
    memo_key = ("real", call_name(detector, call_kwargs), n)
    if memo_key in opts.memo:
        return opts.memo[memo_key]

    def compute() -> dict[str, np.ndarray]:
        embed = lambda x: detector.embed(x, **call_kwargs)
        return {"features": extract(embed, real_batches(opts, n), n, f"{detector.name} features of reals", opts)}

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
        opts.memo[memo_key] = extract(embed, fake_batches(opts, num_gen), num_gen, label, opts)
    return opts.memo[memo_key]
