"""Transfer weights into a new model: another resolution, capacity, or input block (const -> noconst).

Every tensor whose name and shape match is copied (G, D and G_ema); the rest of the new model keeps
its fresh initialization. Block names encode resolution (synthesis.b512.conv0.weight), so a 512 model
copied into a 1024 model fills every shared block and leaves the new top block fresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ganforge import build_discriminator, build_generator
from ganforge.modelio import check
from ganforge.modelio import checkpoint as ck
from ganforge.plan import Plan, make_plan

# Plan fields a transfer keeps from the source unless told otherwise.
_KEEP = (
    "img_channels",
    "c_dim",
    "z_dim",
    "w_dim",
    "mapping_layers",
    "mapping_lr_mult",
    "w_avg_beta",
    "g_architecture",
    "d_architecture",
    "style",
    "g_input",
    "num_fp16_res",
    "fp16_dtype",
    "conv_clamp",
    "mbstd_group",
    "mbstd_channels",
    "cmap_dim",
    "d_mapping_layers",
)


@dataclass
class TransferReport:
    """What `transfer` did per network (G, D, G_ema): tensors copied, left freshly initialized, and dropped."""

    copied: dict[str, list[str]] = field(default_factory=dict)  # net -> names copied
    new: dict[str, list[str]] = field(default_factory=dict)  # net -> names initialized fresh
    dropped: dict[str, list[str]] = field(default_factory=dict)  # net -> source names not used

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            net: {"copied": len(self.copied[net]), "new": len(self.new[net]), "dropped": len(self.dropped[net])}
            for net in self.copied
        }


def target_plan(src: Plan, resolution=None, preset: str | None = None, **overrides) -> Plan:
    """The new model's Plan: the source's settings, with a new resolution / preset / overrides."""
    keep = {k: getattr(src, k) for k in _KEEP}
    if preset is None and src.cbase:
        keep.update(cbase=src.cbase, cmax=src.cmax)
    if preset is not None:  # A capacity preset brings its own latent sizes and mapping depth.
        for k in ("z_dim", "w_dim", "mapping_layers"):
            keep.pop(k)
    keep.update(overrides)
    img_channels, c_dim = keep.pop("img_channels"), keep.pop("c_dim")
    res = resolution if resolution is not None else (src.height, src.width)
    return make_plan(preset or src.preset, res, family=src.family, img_channels=img_channels, c_dim=c_dim, **keep)


def copy_matching(dst: torch.nn.Module, src_state: dict[str, torch.Tensor]) -> tuple[list[str], list[str], list[str]]:
    """Copy tensors whose name and shape match into dst; returns (copied, new, dropped) names."""
    state = dst.state_dict()
    copied, new = [], []
    for name, t in state.items():
        s = src_state.get(name)
        if s is not None and tuple(s.shape) == tuple(t.shape):
            t.copy_(s)
            copied.append(name)
        else:
            new.append(name)
    dropped = [n for n in src_state if n not in copied]
    return copied, new, dropped


def transfer(
    src: str | Path, out: str | Path, resolution=None, preset: str | None = None, **overrides
) -> tuple[Plan, TransferReport]:
    """Build the new model from the checkpoint `src`, copy what fits, and write an export checkpoint to `out`."""
    contents = check.inspect_file(src)  # Metadata and shapes checked before anything is built.
    tensors, src_plan = contents.file.read(parts=("G", "D", "G_ema")), contents.plan
    plan = target_plan(src_plan, resolution, preset, **overrides)
    torch.manual_seed(0)
    nets = {"G": build_generator(plan), "D": build_discriminator(plan)}
    nets["G_ema"] = build_generator(plan)
    nets["G_ema"].load_state_dict(nets["G"].state_dict())
    report = TransferReport()
    parts = {}
    for name, net in nets.items():
        src_state = ck.split(tensors, name)
        if not src_state:
            continue
        with torch.no_grad():
            report.copied[name], report.new[name], report.dropped[name] = copy_matching(net, src_state)
        parts[name] = net.state_dict()
    if "G" not in parts and "G_ema" not in parts:
        raise ck.CheckpointError(f"{src} holds no generator weights to transfer")
    out_meta = {
        "kind": "export",
        "plan": plan.to_dict(),
        "transfer": {"source": Path(src).name, "source_plan": src_plan.to_dict(), **report.counts()},
    }
    ck.save_checkpoint(out, ck.join(**parts), out_meta)
    return plan, report
