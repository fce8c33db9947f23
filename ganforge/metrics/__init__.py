"""Metrics: FID, KID, precision/recall, IS, perceptual path length and StyleGAN3 equivariance, on demand or at
snapshots.

    from ganforge.metrics import compute_metrics, METRICS, load_detector

`ganforge.metrics.detectors` imports nothing heavy; the metric registry is imported on first use of its names.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_detector": "ganforge.metrics.detectors",
    "Detector": "ganforge.metrics.detectors",
    "DetectorError": "ganforge.metrics.detectors",
    "MetricOptions": "ganforge.metrics.features",
    "METRICS": "ganforge.metrics.run",
    "register_metric": "ganforge.metrics.registry",
    "compute_metrics": "ganforge.metrics.run",
    "snapshot_metrics": "ganforge.metrics.run",
    "write_records": "ganforge.metrics.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ganforge.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
