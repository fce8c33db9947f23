"""`ganforge demo`'s training: the `demo` recipe on the built-in shapes, sized for a few minutes on 2 CPU cores.

The recipe is a named preset (`--preset demo`) so anyone can run it on their own data; `demo_config` adds what the
demo itself fixes (its data, folders, snapshot spacing and sample grid). `benchmarks/demo_quality.py` measures its
training time and FID, and keeps the other recipes that were tried, with their figures, in `benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ganforge.training.config import TrainConfig

DEMO_KIMG = 12.0  # The length of `ganforge demo` in thousands of images (benchmarks/demo_quality.py times it).


def demo_config(data: str | Path, outdir: str | Path, *, device: str = "auto", **overrides) -> TrainConfig:
    """The demo's TrainConfig: `preset="demo"` on `data`, one run folder `outdir/run`, resumable.

    Keyword `overrides` replace any TrainConfig field (the benchmark uses them for the other candidates).
    Snapshots every quarter of the run and progress lines every twelfth, so the progress image has columns.
    """
    kimg = float(overrides.pop("kimg", DEMO_KIMG))
    cfg = TrainConfig(
        data=str(data),
        outdir=str(outdir),
        run_name="run",
        preset="demo",
        kimg=kimg,
        snap=max(kimg / 4, 0.5),
        tick=max(kimg / 12, 0.25),
        device=device,
        resume="latest",
        workers=0,
        grid="8x4",
    )
    return dataclasses.replace(cfg, **overrides).resolved()
