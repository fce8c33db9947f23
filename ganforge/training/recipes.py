"""Training recipes: batch, learning rate, R1 γ, EMA and regularization, by name (`--preset`).

The official StyleGAN2-ADA `train.py --cfg` specs (reference: its `cfg_specs` table), each with the
capacity preset of the same name (ganforge.config), plus `tiny` for demos and tests. `auto` is the official
formula of the resolution and the number of processes (non-square sizes by their pixel count). As in the
official code, a preset's batch is split into passes of batch // ref_gpus images per process (gradient
accumulation on fewer GPUs than the preset was made for) unless --batch or --batch-gpu is given:

    batch  = max(min(gpus · min(4096 // res, 32), 64), gpus)     mbstd group = min(batch // gpus, 4)
    lr     = 0.002 if res >= 1024 else 0.0025                       γ = 0.0002 · res² / batch
    EMA    = batch · 10 / 32 kimg with ramp-up 0.05                 channels: half config-f below 512 px
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ganforge.config import effective_resolution


@dataclass(frozen=True)
class Recipe:
    model: str  # Capacity preset (ganforge.config.MODEL_PRESETS).
    batch: int  # Global batch size.
    lr: float  # Adam learning rate (G and D).
    gamma: float  # R1 weight.
    ema_kimg: float  # G EMA half-life in kimg.
    ema_rampup: float = 0.0  # EMA ramp-up ratio; 0 = off.
    pl_weight: float = 2.0  # Path-length weight; 0 = off.
    style_mixing: float = 0.9  # Style-mixing probability; 0 = off.
    mbstd_group: int | None = None  # Minibatch-std group; None = the capacity preset's.
    ref_gpus: int | None = None  # Per-pass batch = batch // ref_gpus (official); None = the whole per-process batch.
    aug: str | None = None  # Augmentation mode; None = the loss's default (ada for StyleGAN2).
    description: str = ""


RECIPES: dict[str, Recipe] = {
    "auto": Recipe(
        "auto",
        batch=0,
        lr=0.0,
        gamma=0.0,
        ema_kimg=0.0,
        ema_rampup=0.05,
        description="official --cfg=auto: batch, lr, γ and EMA from the resolution and process count",
    ),
    "stylegan2": Recipe(
        "stylegan2",
        batch=32,
        lr=0.002,
        gamma=10.0,
        ema_kimg=10.0,
        ref_gpus=8,
        description="official 'stylegan2' (config-f, batch 32, γ 10)",
    ),
    "paper256": Recipe(
        "paper256",
        batch=64,
        lr=0.0025,
        gamma=1.0,
        ema_kimg=20.0,
        ref_gpus=8,
        description="official paper256 (FFHQ/LSUN at 256: batch 64, γ 1)",
    ),
    "paper512": Recipe(
        "paper512",
        batch=64,
        lr=0.0025,
        gamma=0.5,
        ema_kimg=20.0,
        ref_gpus=8,
        description="official paper512 (BreCaHAD, AFHQ: batch 64, γ 0.5)",
    ),
    "paper1024": Recipe(
        "paper1024",
        batch=32,
        lr=0.002,
        gamma=2.0,
        ema_kimg=10.0,
        ref_gpus=8,
        description="official paper1024 (FFHQ, MetFaces: batch 32, γ 2)",
    ),
    "cifar": Recipe(
        "cifar",
        batch=64,
        lr=0.0025,
        gamma=0.01,
        ema_kimg=500.0,
        ema_rampup=0.05,
        pl_weight=0.0,
        style_mixing=0.0,
        ref_gpus=2,
        description="official cifar (32 px, conditional: no path length, no mixing)",
    ),
    "tiny": Recipe(
        "tiny",
        batch=8,
        lr=0.002,
        gamma=0.1,
        ema_kimg=1.0,
        ema_rampup=0.05,
        description="a small model and recipe for CPU demos and tests",
    ),
    "demo": Recipe(  # The best measured so far; other candidates and their FIDs: benchmarks/RESULTS.md.
        "demo",
        batch=16,
        lr=0.002,
        gamma=0.1,
        ema_kimg=1.0,
        ema_rampup=0.05,
        description="`ganforge demo`: 32-px shapes in about 3 minutes on 2 CPU cores",
    ),
}


def recipe_for(name: str, height: int, width: int, gpus: int = 1) -> Recipe:
    """The recipe `name` at a size and process count; only `auto` depends on them."""
    recipe = RECIPES[name]
    if name != "auto":
        return recipe
    res = effective_resolution(height, width)
    batch = max(min(gpus * min(int(4096 // res), 32), 64), gpus)
    return dataclasses.replace(
        recipe,
        batch=batch,
        lr=0.002 if res >= 1024 else 0.0025,
        gamma=0.0002 * height * width / batch,
        ema_kimg=batch * 10 / 32,
        mbstd_group=min(batch // gpus, 4),
    )
