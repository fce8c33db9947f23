"""Shape contracts of the public blocks: one sentence naming the block, the shape it expects and the one it got.

A block states what it reads as a spec, one entry per dimension: an int is a size that must match, a string
is a free size named for the reader (`"N"`, `"H"`, `"W"`). `check_shape(self, "x", x, ("N", 512, "H", "W"))`
then raises

    ModulatedConv2d(in_channels=512, w_dim=512) expects x of shape [N, 512, H, W]; got [4, 256, 8, 8].

instead of PyTorch's "weight of size [512, 64, 3, 3] ... got 256 channels". The block is described by the
constructor arguments its class lists in `shape_args`. The check compares Python ints (no device sync, nothing
recorded by tracing or torch.compile beyond the shape guards they keep anyway); the message is only built when
the check fails.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ganforge.errors import GanforgeError


class ShapeError(GanforgeError, ValueError):
    """A block was given a tensor of the wrong shape; the message names the block, the expected and received shapes."""


def describe(block: nn.Module) -> str:
    """'ModulatedConv2d(in_channels=512, w_dim=512)': the class and the arguments it lists in `shape_args`."""
    names: Sequence[str] = getattr(block, "shape_args", ())
    args = ", ".join(f"{name}={getattr(block, name)!r}" for name in names)
    return f"{type(block).__name__}({args})"


def format_spec(spec: Sequence[int | str]) -> str:
    return "[" + ", ".join(str(s) for s in spec) + "]"


def _matches(shape: Sequence[int], spec: Sequence[int | str]) -> bool:
    # A plain loop: a third faster than all() over a generator, which matters on every layer call.
    if len(shape) != len(spec):
        return False
    for s, d in zip(spec, shape):
        if s != d and s.__class__ is not str:
            return False
    return True


def shape_error(block: nn.Module, expectation: str, got: object) -> ShapeError:
    """ShapeError('<Block>(args) expects <expectation>; got <got>.'), for contracts a spec cannot state."""
    return ShapeError(f"{describe(block)} expects {expectation}; got {got}.")


def check_shape(block: nn.Module, name: str, x: torch.Tensor, spec: Sequence[int | str], note: str = "") -> None:
    """Raise ShapeError unless x's shape matches spec (ints must be equal, strings are free sizes).

    `note` is added to the expectation ("one w per image of x"); a tensor that lacks only its batch dimension
    (its sizes match the fixed ones after the batch, and there is at least one) is told so.
    """
    if _matches(x.shape, spec):
        return
    got = str(list(x.shape))
    fixed = any(isinstance(s, int) for s in spec[1:])
    if fixed and x.ndim == len(spec) - 1 and _matches([0, *x.shape], ["N", *spec[1:]]):
        got += f": the batch dimension is missing ({name}.unsqueeze(0) makes a batch of one)"
    raise shape_error(block, f"{name} of shape {format_spec(spec)}" + (f" ({note})" if note else ""), got)
