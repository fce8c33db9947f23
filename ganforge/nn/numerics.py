"""How a network computes, chosen when it is built: the op implementation and CPU reduced precision.

Every module whose computation depends on the choice holds a `Numerics` as a plain attribute (not a
parameter or buffer: state-dict keys stay the same, and `copy.deepcopy` keeps it, so G_ema computes as G).
`build_generator(plan, ops=..., cpu_reduced_precision=...)` sets it for the whole network; `set_numerics`
changes it afterwards for one network and nothing else (benchmarks compare both op implementations on the
same weights). Nothing here is process-wide.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganforge.errors import GanforgeError

OPS = ("fast", "reference")


class NumericsError(GanforgeError, ValueError):
    """An op implementation or precision choice that does not exist."""


@dataclass(frozen=True)
class Numerics:
    ops: str = "fast"  # fast (the default) | reference: the plain official formulations, step by step.
    cpu_reduced_precision: bool = False  # The Plan's fp16 blocks in reduced precision on CPUs too (always on GPUs).

    def __post_init__(self) -> None:
        if self.ops not in OPS:
            raise NumericsError(f"ops={self.ops!r} is not an op implementation: choose 'fast' or 'reference'")
        if not isinstance(self.cpu_reduced_precision, bool):
            raise NumericsError(f"cpu_reduced_precision={self.cpu_reduced_precision!r}: give True or False")

    @property
    def fast(self) -> bool:
        return self.ops == "fast"

    def updated(self, ops: str | None = None, cpu_reduced_precision: bool | None = None) -> Numerics:
        """A copy with the settings given (None keeps one), checked."""
        return Numerics(
            self.ops if ops is None else ops,
            self.cpu_reduced_precision if cpu_reduced_precision is None else cpu_reduced_precision,
        )

    def reduced_on(self, device: torch.device) -> bool:
        """Whether blocks that the Plan marks for reduced precision run in it on this device."""
        return device.type == "cuda" or (device.type == "cpu" and self.cpu_reduced_precision)


def set_numerics(net: nn.Module, *, ops: str | None = None, cpu_reduced_precision: bool | None = None) -> nn.Module:
    """Change how `net` computes (None keeps a setting), in every submodule that holds a Numerics; returns `net`.

    Only this network changes: another network, a deep copy made before the call included, keeps its own.
    """
    Numerics().updated(ops, cpu_reduced_precision)  # Checks the values even for a network without such modules.
    for module in net.modules():
        current = getattr(module, "numerics", None)
        if isinstance(current, Numerics):
            # nn.Module's typing expects a tensor or a module here; a plain attribute is what we want.
            module.numerics = current.updated(ops, cpu_reduced_precision)  # type: ignore[assignment]
    return net


def numerics_of(net: nn.Module) -> Numerics:
    """The Numerics `net` was built (or last set) with; the defaults for a network that has none (DCGAN)."""
    for module in net.modules():
        current = getattr(module, "numerics", None)
        if isinstance(current, Numerics):
            return current
    return Numerics()
