"""What a file's tensors must be, before anything is allocated: names and shapes from the meta device.

A checkpoint (or an official pickle) says which Plan it holds; a hostile or damaged file can say anything.
The networks that Plan describes are built on `torch.device("meta")` (no memory, no time to speak of), and
their state-dict shapes are compared with the tensors the file actually holds. Only when every name and
shape matches is a real network built, so a 600 KB file cannot make ganforge allocate gigabytes.
"""

from __future__ import annotations

import functools
import math

import torch

from ganforge.plan import Plan


@functools.lru_cache(maxsize=32)
def _meta_shapes(plan: Plan, net: str, patch: bool) -> tuple[tuple[str, tuple[int, ...], bool], ...]:
    from ganforge import build_discriminator, build_generator

    with torch.device("meta"):
        module = build_generator(plan) if net == "G" else build_discriminator(plan, patch=patch)
    params = {name for name, _ in module.named_parameters()}
    return tuple((name, tuple(t.shape), name in params) for name, t in module.state_dict().items())


def expected_shapes(plan: Plan, net: str = "G", patch: bool = False) -> dict[str, tuple[int, ...]]:
    """{state-dict name: shape} of the network `net` ('G' or 'D') that `plan` builds; nothing allocated."""
    return {name: shape for name, shape, _ in _meta_shapes(plan, net, patch)}


def parameter_shapes(plan: Plan, net: str = "G", patch: bool = False) -> list[tuple[int, ...]]:
    """Shapes of the network's parameters in `module.parameters()` order (what an optimizer's state follows)."""
    return [shape for _, shape, is_param in _meta_shapes(plan, net, patch) if is_param]


def parameter_count(plan: Plan, net: str = "G", patch: bool = False) -> int:
    return sum(math.prod(shape) for shape in parameter_shapes(plan, net, patch))


def _listing(names, limit: int = 4) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def shape_mismatch(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], what: str) -> str | None:
    """None when `found` has exactly the expected names and shapes; else one sentence naming the first tensors
    that differ. `what` names the network and its file ("G_ema in ckpt.safetensors")."""
    missing = set(expected) - set(found)
    if missing:
        return f"{what} lacks the tensor(s) {_listing(missing)} that its plan needs: the file is damaged or incomplete"
    extra = set(found) - set(expected)
    if extra:
        return f"{what} holds tensor(s) {_listing(extra)} that its plan does not have: the file is damaged"
    for name, shape in expected.items():
        if tuple(found[name]) != tuple(shape):
            return (f"{what}: tensor {name} has shape {list(found[name])} but its plan needs {list(shape)}: "
                    f"the file is damaged")
    return None
