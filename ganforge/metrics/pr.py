"""Improved precision and recall.

Paper: Kynkäänniemi et al., "Improved Precision and Recall Metric for Assessing Generative Models", NeurIPS 2019
(arXiv:1904.06991). Reference implementation matched: NVlabs/stylegan2-ada-pytorch `metrics/precision_recall.py`
(pr50k3_full: up to 200,000 reals, 50,000 fakes, VGG16 fc features `vgg16.pt(img, return_features=True)`, k = 3:
a probe is inside a manifold when it lies within the distance from some manifold point to that point's k-th nearest
neighbour, the point itself not counted). Precision probes fakes against the real manifold, recall the reverse.

Without the VGG16 file the metric runs on Inception pool3 features and reports `pr_inception_precision/recall`
(not comparable with published pr50k3 values).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ganforge.metrics.detectors import DetectorError
from ganforge.metrics.features import MetricOptions, fake_features, real_features
from ganforge.metrics.registry import gen_count, register_metric

MAX_DISTANCES = 1 << 26  # Distance-matrix entries per block (256 MB in float32).


def row_slices(n_rows: int, n_cols: int) -> list[slice]:
    """Row blocks whose distance matrices against n_cols points hold at most MAX_DISTANCES entries."""
    step = max(1, MAX_DISTANCES // max(n_cols, 1))
    return [slice(start, start + step) for start in range(0, n_rows, step)]


def kth_neighbour_radii(manifold: torch.Tensor, k: int) -> torch.Tensor:
    """[N]: distance from each manifold point to its k-th nearest other manifold point."""
    radii = []
    for rows in row_slices(len(manifold), len(manifold)):
        dist = torch.cdist(manifold[rows], manifold)
        radii.append(dist.kthvalue(k + 1, dim=1).values)  # k + 1: the point itself is at distance 0.
    return torch.cat(radii)


def inside_manifold(probes: torch.Tensor, manifold: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """[P] bool: probe within radii[j] of some manifold point j."""
    inside = []
    for rows in row_slices(len(probes), len(manifold)):
        dist = torch.cdist(probes[rows], manifold)
        inside.append((dist <= radii[None, :]).any(dim=1))
    return torch.cat(inside)


def precision_recall(real: np.ndarray, gen: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall): the share of fakes inside the real manifold, and of reals inside the fake one."""
    real_t, gen_t = torch.as_tensor(real, dtype=torch.float32), torch.as_tensor(gen, dtype=torch.float32)
    precision = inside_manifold(gen_t, real_t, kth_neighbour_radii(real_t, k)).float().mean()
    recall = inside_manifold(real_t, gen_t, kth_neighbour_radii(gen_t, k)).float().mean()
    return float(precision), float(recall)


def pr_detector(opts: MetricOptions) -> tuple[str, dict]:
    """('vgg16', fc-feature arguments), or ('inception', its pool features) when no VGG16 file can be found."""
    try:
        opts.detector("vgg16")
        return "vgg16", {"return_features": True}
    except DetectorError as e:
        if opts.detector_paths.get("vgg16"):
            raise
        warnings.warn(
            f"{e}; precision/recall falls back to Inception features (reported as pr_inception_*)", stacklevel=2
        )
        return "inception", {"return_features": True}


@register_metric
def pr50k3_full(opts: MetricOptions) -> dict[str, float]:
    name, call = pr_detector(opts)
    real = real_features(opts, name, max_items=200_000, call_kwargs=call)
    gen = fake_features(opts, name, gen_count(opts, 50_000), call_kwargs=call)
    precision, recall = precision_recall(real, gen, k=3)
    prefix = "pr50k3_full" if name == "vgg16" else "pr_inception"
    return {f"{prefix}_precision": precision, f"{prefix}_recall": recall}
