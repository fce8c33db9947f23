"""Compare two image sets (like pytorch-fid): FID, KID and precision/recall between any folder or zip and a dataset.

ganforge metrics --images samples/ --data faces-256.zip --metrics fid,kid,pr --json   ->  {"fid": 12.3, ...}
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganforge.metrics.features import MetricError, MetricOptions, real_features
from ganforge.metrics.fid import fid_from_features
from ganforge.metrics.kid import kid_from_features
from ganforge.metrics.pr import pr_detector, precision_recall

SET_METRICS = ("fid", "kid", "pr")


def compare_sets(
    images: str | Path,
    data: str | Path,
    names: list[str] | tuple[str, ...] = ("fid",),
    max_images: int | None = None,
    detector_paths: dict | None = None,
    device: str | torch.device = "cpu",
    batch: int | None = None,
    progress: bool = True,
    allow_download: bool = False,
) -> dict[str, float]:
    """Metrics of the image set `images` against the reference set `data` (each read as an ImageDataset)."""
    unknown = [n for n in names if n not in SET_METRICS]
    if unknown:
        raise MetricError(
            f"--metrics {','.join(unknown)} cannot compare image sets; choose from {', '.join(SET_METRICS)}"
        )
    for what, path in (("--images", images), ("--data", data)):
        if not Path(path).exists():
            raise MetricError(f"{what} {path} does not exist: pass a folder or zip of images")
    paths = detector_paths or {}

    def options(dataset_path: str | Path) -> MetricOptions:
        return MetricOptions(
            dataset_path=dataset_path,
            detector_paths=paths,
            device=device,
            batch=batch,
            progress=progress,
            allow_download=allow_download,
        )

    ref, other = options(data), options(images)
    ref.dataset(), other.dataset()  # Both sets are read (headers) before any detector is loaded.
    out: dict[str, float] = {}
    if "fid" in names or "kid" in names:
        a = real_features(ref, "inception", max_images)
        share_detector(ref, other, "inception")
        b = real_features(other, "inception", max_images)
        if "fid" in names:
            out["fid"] = fid_from_features(b, a)
        if "kid" in names:
            out["kid"] = kid_from_features(b, a)
    if "pr" in names:
        detector, call = pr_detector(ref)
        a = real_features(ref, detector, max_images, call_kwargs=call)
        share_detector(ref, other, detector)
        b = real_features(other, detector, max_images, call_kwargs=call)
        precision, recall = precision_recall(a, b, k=3)
        prefix = "pr" if detector == "vgg16" else "pr_inception"
        out[f"{prefix}_precision"], out[f"{prefix}_recall"] = precision, recall
    return out


def share_detector(loaded: MetricOptions, other: MetricOptions, name: str) -> None:
    """Give `other` the detector `loaded` has (loaded once; its CPU copy is built and checked once)."""
    other.memo[("detector", name)] = loaded.detector(name)


class Truncated(torch.nn.Module):
    """A generator called with a fixed truncation ψ (for `ganforge metrics --truncation`)."""

    def __init__(self, G: torch.nn.Module, psi: float):
        super().__init__()
        self.G, self.psi = G, psi
        self.z_dim, self.c_dim = G.z_dim, G.c_dim

    def forward(self, z, c=None, **kwargs):
        kwargs.setdefault("noise_mode", "const")  # As the untruncated generator is called for the metrics.
        return self.G(z, c, truncation_psi=self.psi, **kwargs)
