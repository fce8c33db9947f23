"""Official StyleGAN2-ADA or StyleGAN3-repository .pkl -> ganforge checkpoint (.safetensors), without running code
from the pickle."""

from __future__ import annotations

from pathlib import Path

from ganforge.modelio import checkpoint as ck
from ganforge.modelio.official import load_official_pkl
from ganforge.modelio.unpickler import OfficialPickleError
from ganforge.modelio.untrusted import json_value


def convert_official(src: str | Path, dest: str | Path) -> Path:
    """Write G, D and G_ema of an official snapshot as an inference checkpoint (kind 'export')."""
    snap = load_official_pkl(src)
    parts = {name: net.state_dict() for name in ("G", "D", "G_ema") if (net := getattr(snap, name)) is not None}
    if not parts:
        raise OfficialPickleError(
            f"{Path(src).name} holds no G, D or G_ema network: there is nothing to convert; "
            f"give a network-snapshot-*.pkl written by the official training code"
        )
    plan = snap.plan or snap.d_plan
    assert plan is not None  # Every network of a snapshot comes with its Plan.
    meta = {
        "kind": "export",
        "plan": plan.to_dict(),
        "source": {"file": Path(src).name, "format": f"{snap.repository}-pkl", "fingerprint": snap.source_fingerprint},
        "augment_p": snap.augment_p,
        # Everything copied from the file into metadata passes the JSON rules and node budget again here
        # (shared references count each time they are reached), whoever built the snapshot object.
        "training_set_kwargs": json_value(snap.training_set_kwargs, "training_set_kwargs"),
    }
    if snap.d_plan is not None and snap.d_plan is not plan:
        meta["d_plan"] = snap.d_plan.to_dict()
    ck.save_checkpoint(dest, ck.join(**parts), meta)
    return Path(dest)
