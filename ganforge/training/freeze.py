"""Layer freezing by name and resolution, FreezeD, and gradual unfreezing by kimg.

Specs (comma-separated on the command line):
    mapping          the generator's mapping network
    G<=512, D<256    generator / discriminator blocks by resolution (the block's long side; the
                     mapping networks count as resolution 0)
    G:b64, D:b4      one block by name (D:b4 is the discriminator's base block, the epilogue)
    G:L3_52_512      one StyleGAN3 synthesis layer by its official name (G:input is the Fourier input)
    G, D             a whole network
`--freeze-d N` freezes the first N discriminator blocks from the input side (FreezeD).
Gradual unfreezing releases one resolution every `--unfreeze-every` kimg, top-down (the highest
frozen resolution first) or bottom-up.

StyleGAN3 synthesis layers (`synthesis.L{idx}_{size}_{channels}`) have no resolution in their names (the size
counts the margin): given the Plan, a layer's resolution is its output sampling rate, and the Fourier input's is
the first layer's input rate, so `G<=64` means the same image scale in both families.

Frozen parameters get no gradient, so Adam never touches them: they stay bit-identical.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from torch import nn

from ganforge.errors import GanforgeError
from ganforge.plan import Plan

_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "=": operator.eq}
_SPEC = re.compile(r"^(G|D)\s*(<=|>=|<|>|=)\s*(\d+)$")
_BLOCK_SPEC = re.compile(r"^(G|D):(b\d+(x\d+)?|mapping|input|L\d+_\d+_\d+)$")


class FreezeError(GanforgeError, ValueError):
    pass


_SG3_LAYER = re.compile(r"^synthesis\.(L(\d+)_\d+_\d+|input)\.")


def _sg3_layer(name: str, plan: Plan | None) -> tuple[str, int] | None:
    """(layer name, resolution) of a StyleGAN3 generator parameter, given its Plan; None for anything else."""
    if plan is None or not plan.is_sg3:
        return None
    m = _SG3_LAYER.match(name)
    if m is None:
        return None
    laid_out = plan.sg3_geometry
    if m.group(1) == "input":
        return "input", laid_out[0].in_rate
    idx = int(m.group(2))
    return (m.group(1), laid_out[idx].out_rate) if idx < len(laid_out) else None


def param_resolution(name: str, plan: Plan | None = None) -> int:
    """Resolution of a parameter from its official name: synthesis.b32x64.conv0.weight -> 64; mapping -> 0.

    With a StyleGAN3 Plan, synthesis.L5_84_512.weight -> that layer's output sampling rate (64)."""
    sg3 = _sg3_layer(name, plan)
    if sg3 is not None:
        return sg3[1]
    m = re.search(r"(?:^|\.)b(\d+)(?:x(\d+))?\.", name)
    if m is None:
        return 0
    return max(int(m.group(1)), int(m.group(2) or 0))


def param_block(name: str, plan: Plan | None = None) -> str | None:
    sg3 = _sg3_layer(name, plan)
    if sg3 is not None:
        return sg3[0]
    m = re.search(r"(?:^|\.)(b\d+(?:x\d+)?)\.", name)
    return m.group(1) if m else None


def parse_specs(specs: list[str] | str | None) -> list[str]:
    if not specs:
        return []
    items = specs.split(",") if isinstance(specs, str) else [x for s in specs for x in s.split(",")]
    out = []
    for item in (x.strip() for x in items):
        if not item:
            continue
        if item in ("mapping", "G", "D") or _SPEC.match(item) or _BLOCK_SPEC.match(item):
            out.append(item)
        else:
            raise FreezeError(f"--freeze {item!r} is not a freeze spec; use mapping, G<=512, D<256, G:b64 or D")
    return out


def _matches(spec: str, net: str, name: str, plan: Plan | None = None) -> bool:
    if spec == "mapping":
        return net == "G" and name.startswith("mapping.")
    if spec in ("G", "D"):
        return net == spec
    m = _SPEC.match(spec)
    if m:
        in_block = param_block(name, plan) is not None  # Resolution specs cover blocks, not the mapping networks.
        return net == m.group(1) and in_block and _OPS[m.group(2)](param_resolution(name, plan), int(m.group(3)))
    net_spec, block = spec.split(":")
    if block == "mapping":
        return net == net_spec and name.startswith("mapping.")
    return net == net_spec and param_block(name, plan) == block


def matches_any(spec: str, names: dict[str, list[str]], plan: Plan | None = None) -> bool:
    """Whether `spec` covers at least one of the names ({'G': [...], 'D': [...]} state-dict names)."""
    return any(_matches(spec, net, name, plan) for net, net_names in names.items() for name in net_names)


@dataclass(frozen=True)
class FreezePlan:
    specs: tuple[str, ...] = ()  # Freeze specs (see module docstring).
    freeze_d: int = 0  # FreezeD: first N discriminator blocks from the input.
    unfreeze_every: float = 0.0  # kimg between releases of one resolution; 0 = never.
    order: str = "top-down"  # top-down | bottom-up.

    @property
    def active(self) -> bool:
        return bool(self.specs) or self.freeze_d > 0

    def initial(self, G: nn.Module, D: nn.Module) -> dict[str, set[str]]:
        """Parameter names frozen at kimg 0, per network."""
        out: dict[str, set[str]] = {"G": set(), "D": set()}
        plan = getattr(G, "plan", None)
        for net_name, net in (("G", G), ("D", D)):
            for name, _ in net.named_parameters():
                if any(_matches(s, net_name, name, plan) for s in self.specs):
                    out[net_name].add(name)
        blocks = list(getattr(D, "block_names", []))[: self.freeze_d]
        for name, _ in D.named_parameters():
            if param_block(name) in blocks:
                out["D"].add(name)
        return out

    def frozen(self, G: nn.Module, D: nn.Module, kimg: float) -> dict[str, set[str]]:
        """Parameter names frozen at `kimg`, after gradual unfreezing."""
        out = self.initial(G, D)
        if self.unfreeze_every <= 0:
            return out
        released = int(kimg // self.unfreeze_every)
        plan = getattr(G, "plan", None)
        resolutions = sorted(
            {param_resolution(n, plan) for names in out.values() for n in names}, reverse=(self.order == "top-down")
        )
        gone = set(resolutions[:released])
        return {net: {n for n in names if param_resolution(n, plan) not in gone} for net, names in out.items()}


def apply_freeze(net: nn.Module, frozen: set[str]) -> None:
    """After net.requires_grad_(True): switch off the frozen parameters."""
    if not frozen:
        return
    for name, p in net.named_parameters():
        if name in frozen:
            p.requires_grad_(False)


def drop_frozen_grads(net: nn.Module, frozen: set[str]) -> None:
    """Frozen parameters must reach the optimizer with grad None (DDP may have filled zeros)."""
    if not frozen:
        return
    for name, p in net.named_parameters():
        if name in frozen:
            p.grad = None
