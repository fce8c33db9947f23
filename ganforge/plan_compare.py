"""Comparisons of a Plan with a dataset, a checkpoint's Plan or a ws tensor: one sentence per mismatch.

A mismatch is found by comparing two Plans (or a Plan and a dataset), never by a shape error deep in
torch, and each sentence says what to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath

from ganforge.plan import Plan, block_name, decompose, format_resolution


@dataclass
class Mismatch:
    """One difference between two Plans (or a Plan and a dataset), as a sentence with its fix."""

    what: str  # Short key ("resolution", "num_ws", …).
    sentence: str  # What is wrong and what to change.


@dataclass
class Report:
    """The mismatches of one comparison; `ok` when there are none, `str(report)` gives one sentence per line."""

    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def add(self, what: str, sentence: str) -> None:
        self.mismatches.append(Mismatch(what, sentence))

    def __str__(self) -> str:
        return "\n".join(m.sentence for m in self.mismatches) or "no mismatches"


def transfer_command(checkpoint: str, resolution: str) -> tuple[str, str]:
    """(the `ganforge transfer` command that copies a checkpoint into a model at `resolution`, its output file)."""
    out = f"{PurePath(checkpoint).stem}-{resolution}.safetensors"
    return f"`ganforge transfer {checkpoint} --resolution {resolution} --out {out}`", out


def compare_data(
    plan: Plan, data_shape: tuple[int, int, int] | list[int], c_dim: int = 0, checkpoint: str | None = None
) -> Report:
    """Compare a model with a dataset of images [C, H, W] and `c_dim` label classes. `checkpoint`: the file the
    model comes from (`--init`), so that a size mismatch suggests `ganforge transfer` first."""
    rep = Report()
    c, h, w = (int(v) for v in data_shape)
    if (h, w) != (plan.height, plan.width):
        res = format_resolution(h, w)
        fix = f"prepare the data with `ganforge dataset prepare SRC DEST --resolution {plan.resolution_text}`"
        if checkpoint is not None and decompose(h, w) is not None:
            command, out = transfer_command(checkpoint, res)
            fix = f"copy what fits into a {res} model with {command} and pass --init {out}, or {fix}"
        elif decompose(h, w) is not None:
            fix += f", or build the model at --resolution {res}"
        rep.add("resolution", f"the data is {res} (WxH) but the model makes {plan.resolution_text}: {fix}.")
    if c != plan.img_channels:
        rep.add(
            "channels",
            f"the data has {c} channel(s) but the model has img_channels={plan.img_channels}: "
            f"build the model with img_channels={c} or prepare the data with --channels {plan.img_channels}.",
        )
    if c_dim != plan.c_dim:
        rep.add(
            "labels",
            f"the data has {c_dim} label classes but the model has c_dim={plan.c_dim}: "
            f"build the model with c_dim={c_dim}"
            + (" (or train without --cond)." if c_dim else " (or give the dataset labels)."),
        )
    return rep


def compare_plans(ckpt: Plan, model: Plan, checkpoint: str = "CKPT") -> Report:
    """Compare a checkpoint's Plan with the model it is loaded into (`checkpoint`: its file, named in the fixes)."""
    rep = Report()
    if ckpt.family != model.family:
        rep.add(
            "family",
            f"the checkpoint is a {ckpt.family} model but this is a {model.family} model: use --family {ckpt.family}.",
        )
        return rep
    if (ckpt.height, ckpt.width) != (model.height, model.width):
        extra = f" with {ckpt.num_ws} ws; this model is {model.resolution_text} with {model.num_ws} ws"
        command, out = transfer_command(checkpoint, model.resolution_text)
        rep.add(
            "resolution",
            f"the checkpoint was trained at {ckpt.resolution_text}"
            + (extra if model.family == "stylegan2" else f"; this model is {model.resolution_text}")
            + f": copy what fits into a {model.resolution_text} model with {command} and start a new run from it "
            f"with --init {out}, or resume it on {ckpt.resolution_text} data.",
        )
    same_sizes = (ckpt.base_h, ckpt.base_w) == (model.base_h, model.base_w)
    if same_sizes:
        n = min(ckpt.num_blocks, model.num_blocks)
        for i in range(n):
            if ckpt.channels[i] != model.channels[i]:
                hh, ww = model.block_sizes[i]
                rep.add(
                    "channels",
                    f"block {block_name(hh, ww)} has {ckpt.channels[i]} channels in the checkpoint but "
                    f"{model.channels[i]} in this model: use preset {ckpt.preset!r} (or the same cbase/cmax), "
                    f"or `ganforge transfer` to change capacity.",
                )
                break
    for name in (
        "z_dim",
        "w_dim",
        "mapping_layers",
        "c_dim",
        "img_channels",
        "g_architecture",
        "d_architecture",
        "style",
        "g_input",
    ):
        a, b = getattr(ckpt, name), getattr(model, name)
        if a != b:
            rep.add(
                name,
                f"the checkpoint has {name}={a!r} but this model has {name}={b!r}: build the model with {name}={a!r}.",
            )
    return rep


def compare_num_ws(plan: Plan, num_ws: int, source: str = "the mapping network") -> Report:
    """Check a ws tensor / mapping output against the synthesis network."""
    rep = Report()
    if num_ws != plan.num_ws:
        rep.add(
            "num_ws",
            f"{source} produces {num_ws} ws but the synthesis network at {plan.resolution_text} needs "
            f"{plan.num_ws} (2 per block, {plan.num_blocks} blocks): build both from the same Plan.",
        )
    return rep
