"""What a file's tensors must be, before anything is allocated: names and shapes from the meta device.

A checkpoint (or an official pickle) says which Plan it holds; a hostile or damaged file can say anything.
The networks that Plan describes are built on `torch.device("meta")` (no memory; small ones on the CPU), and
their state-dict shapes are compared with the tensors the file actually holds. Only when every name and
shape matches is a real network built, so a 600 KB file cannot make ganforge allocate gigabytes.
"""

from __future__ import annotations

import functools
import math

import torch

from ganforge.plan import Plan

CPU_BUILD_BYTES = 64 << 20  # Plans whose rough size is below this are built on the CPU (see _meta_shapes).


def rough_bytes(plan: Plan) -> int:
    """A generous upper bound of G + D parameter bytes (fp32), from the Plan's numbers alone.

    Only decides where shapes are computed: building on the meta device allocates nothing but its first use
    in a process imports torch._dynamo (~2 s); a small network is cheaper to build on the CPU.
    """
    chans = list(plan.channels)
    widest_latent = max(plan.z_dim, plan.w_dim, plan.c_dim, plan.cmap_dim or 0, chans[0]) + 1
    total = (plan.mapping_layers + plan.d_mapping_layers + 2) * widest_latent**2
    for prev, c in zip([chans[0], *chans], chans):
        total += 16 * (prev + c + 1) * (c + 1)  # 3x3 / 4x4 convolutions of G and D.
        total += 4 * (plan.w_dim + 1) * (prev + c + plan.img_channels + 1)  # Affines, ToRGB, FromRGB.
    total += 2 * (chans[0] + 2) * plan.base_h * plan.base_w * (widest_latent + 1)  # Const / dense inputs, D head.
    if plan.is_sg3:  # Its G has its own channels (sg3_cbase, sg3_cmax): counted exactly from the geometry.
        from ganforge.plan_sg3 import parameter_count as sg3_parameter_count

        total += sg3_parameter_count(plan)
    return 8 * total  # 4 bytes, twice over.


@functools.lru_cache(maxsize=32)
def _meta_shapes(plan: Plan, net: str, patch: bool) -> tuple[tuple[str, tuple[int, ...], bool], ...]:
    from ganforge import build_discriminator, build_generator

    small = rough_bytes(plan) <= CPU_BUILD_BYTES
    with torch.random.fork_rng(devices=[]), torch.device("cpu" if small else "meta"):  # Leaves the RNG as it was.
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
    """Number of parameters of the network `net` ('G' or 'D') that `plan` builds; nothing allocated."""
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
            return (
                f"{what}: tensor {name} has shape {list(found[name])} but its plan needs {list(shape)}: "
                f"the file is damaged"
            )
    return None
