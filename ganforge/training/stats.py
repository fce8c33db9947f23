"""One statistics channel: `report(name, value)` during a tick; sinks read the per-tick means.

Sinks: stats.jsonl (one JSON object per tick), TensorBoard scalars, and the progress line.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import torch


class Collector:
    """Accumulates sums and counts per name without CPU-GPU syncs until `means()`."""

    def __init__(self):
        self._sum: dict[str, torch.Tensor] = {}
        self._count: dict[str, float] = defaultdict(float)

    def report(self, name: str, value) -> None:
        if isinstance(value, (int, float)):  # Python numbers keep their double precision.
            value = torch.tensor(float(value), dtype=torch.float64)
        t = torch.as_tensor(value).detach().to(torch.float64).flatten()
        if t.numel() == 0:
            return
        s = t.sum()
        self._sum[name] = self._sum[name] + s if name in self._sum else s
        self._count[name] += t.numel()

    def means(self, reset: bool = True) -> dict[str, float]:
        out = {name: float(self._sum[name].cpu()) / self._count[name] for name in self._sum}
        if reset:
            self._sum.clear()
            self._count.clear()
        return out


class Sinks:
    """Writes tick statistics to stats.jsonl and (optionally) TensorBoard. Rank 0 only."""

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = Path(run_dir) / "stats.jsonl"
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir))
            except ImportError:  # tensorboard missing: stats.jsonl still has everything
                self.tb = None

    def write(self, stats: dict[str, float], kimg: float, wall: float) -> None:
        record = {"kimg": kimg, "timestamp": wall, **{k: (v if math.isfinite(v) else str(v)) for k, v in stats.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            step = int(kimg * 1000)
            for name, value in stats.items():
                if math.isfinite(value):
                    self.tb.add_scalar(name, value, global_step=step, walltime=wall)
            self.tb.flush()

    def image(self, name: str, grid_uint8_hwc, kimg: float) -> None:
        if self.tb is not None:
            self.tb.add_image(name, grid_uint8_hwc, global_step=int(kimg * 1000), dataformats="HWC")
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_stats(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
