"""Run metrics: on demand (`compute_metrics`, the `ganforge metrics` command) and at training snapshots.

    from ganforge.metrics import compute_metrics
    compute_metrics(["fid50k_full"], G=G_ema, dataset_path="faces-256.zip")   # {'fid50k_full': 4.2}

Under torch.distributed every rank must call these together (features are all-gathered); rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ganforge.distributed import rank_world
from ganforge.metrics import equivariance, fid, inception_score, kid, ppl, pr  # noqa: F401  (they register the metrics)
from ganforge.metrics.features import MetricOptions
from ganforge.metrics.registry import METRICS, check_names, labelled

KEEP_ACROSS_SNAPSHOTS = ("detector", "dataset", "digest")  # Memo entries that do not depend on G.


@dataclass(frozen=True)
class MetricRecord:
    metric: str  # Registered name.
    results: dict[str, float]  # Result name -> value.
    total_time: float  # Seconds, generation and feature extraction included.
    num_gpus: int  # Ranks that shared the work.
    num_gen: int | None  # Generated images if overridden; None = the metric's default.

    @property
    def label(self) -> str:
        """The metric's name with its real generated-image count ('fid100_full' for fid50k_full on 100 images)."""
        return labelled(self.metric, self.num_gen)

    def labelled_results(self) -> dict[str, float]:
        """`results` under names that carry the real generated-image count."""
        return {labelled(key, self.num_gen): value for key, value in self.results.items()}

    def to_json(self, snapshot: str | None = None) -> str:
        record = dict(
            results=self.results,
            metric=self.metric,
            label=self.label,
            total_time=round(self.total_time, 3),
            total_time_str=format_seconds(self.total_time),
            num_gpus=self.num_gpus,
            num_gen=self.num_gen,
            snapshot=snapshot,
            timestamp=time.time(),
        )
        return json.dumps(record)


def format_seconds(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h {s // 60 % 60:02d}m {s % 60:02d}s" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def evaluate(names: list[str], opts: MetricOptions) -> list[MetricRecord]:
    """Run the named metrics in order; features are shared between them through opts.memo."""
    check_names(names)
    records = []
    for name in names:
        start = time.time()
        with torch.no_grad():
            results = METRICS[name](opts)
        records.append(MetricRecord(name, results, time.time() - start, rank_world()[1], opts.num_gen))
    return records


def compute_metrics(
    names: list[str],  # Registered metric names, e.g. ["fid50k_full", "kid50k_full"].
    G: torch.nn.Module | None = None,  # Generator (G_ema); called G(z, c, noise_mode='const').
    dataset_path: str | Path | None = None,  # The training data (zip or folder).
    detector_paths: dict[str, str | None] | None = None,  # {'inception': PATH, 'vgg16': PATH}; None = look them up.
    num_gen: int | None = None,  # Generated images per metric; None = each metric's own count (50,000).
    device: str | torch.device = "cpu",
    batch: int | None = None,  # Images per generator/detector call (per rank); None = fitted to memory.
    progress: bool = True,
    allow_download: bool = False,  # Fetch missing detector files into the cache folder.
    cache: bool = True,  # Cache real-data features/statistics in the cache folder.
    seed: int = 0,  # Latents and labels of the fakes, KID subsets.
) -> dict[str, float]:
    """All results of the named metrics merged into one dict ({'fid50k_full': 4.2, ...})."""
    opts = MetricOptions(
        G=G,
        dataset_path=dataset_path,
        detector_paths=dict(detector_paths or {}),
        num_gen=num_gen,
        device=device,
        batch=batch,
        progress=progress,
        allow_download=allow_download,
        cache=cache,
        seed=seed,
    )
    return merge(evaluate(names, opts))


def merge(records: list[MetricRecord]) -> dict[str, float]:
    return {key: value for record in records for key, value in record.results.items()}


def write_records(records: list[MetricRecord], folder: str | Path, snapshot: str | None = None) -> list[Path]:
    """Append one JSON line per metric to <folder>/metric-<name>.jsonl (rank 0 only). Returns the files."""
    if rank_world()[0] != 0:
        return []
    files = []
    for record in records:
        file = Path(folder) / f"metric-{record.metric}.jsonl"
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(file, "a") as f:
            f.write(record.to_json(snapshot) + "\n")
        files.append(file)
    return files


def for_snapshot(template: MetricOptions, G: torch.nn.Module) -> MetricOptions:
    """A copy of `template` for a new G: detectors and dataset are kept, features of an older G are not."""
    memo = template.memo
    for key in [k for k in memo if k[0] not in KEEP_ACROSS_SNAPSHOTS]:
        del memo[key]
    return dataclasses.replace(template, G=G, memo=memo)


def snapshot_metrics(
    G: torch.nn.Module, names: list[str], run_dir: str | Path, snapshot: str, template: MetricOptions
) -> dict[str, float]:
    """What the training loop calls at a snapshot (every rank): run, append metric-<name>.jsonl, return results.

    `template` is built once per run (dataset_path, detector paths, device, progress=False ...) and reused, so the
    detectors load once and the real-data statistics come from the cache after the first snapshot. Log the
    results with report(f'Metrics/{key}', value).
    """
    was_training = G.training
    G.eval()
    try:
        records = evaluate(names, for_snapshot(template, G))
    finally:
        G.train(was_training)
    write_records(records, run_dir, snapshot)
    return merge(records)
