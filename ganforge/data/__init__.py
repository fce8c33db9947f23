"""Datasets: prepare any images into the StyleGAN2-ADA layout, check them against a model, and load them.

    from ganforge.data import ImageDataset, make_loader, prepare_dataset

Names are imported on first use, so `import ganforge.data` (and the CLI) stays light: torch is only
loaded by the dataset and loader.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ImageDataset": "ganforge.data.dataset",
    "StepSampler": "ganforge.data.loader",
    "InfiniteLoader": "ganforge.data.loader",
    "make_loader": "ganforge.data.loader",
    "PrepareOptions": "ganforge.data.prepare",
    "PrepareError": "ganforge.data.prepare",
    "prepare_dataset": "ganforge.data.prepare",
    "check_dataset": "ganforge.data.check",
    "scan_dataset": "ganforge.data.check",
    "CurateOptions": "ganforge.data.curate",
    "curate_dataset": "ganforge.data.curate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ganforge.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
