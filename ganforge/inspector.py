"""Shape inspector: per-layer output shapes, parameter counts and a memory estimate, on the meta device.

Nothing is allocated: the networks are built and run on `torch.device("meta")`, so the 250M-parameter
XXXL preset at 1024×1024 is inspected in about a second on a laptop CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ganforge.plan import Plan


@dataclass
class LayerRow:
    """One module of a traced network: its name, class, per-image output shape and own parameter count."""

    name: str  # Module path, official naming (synthesis.b64.conv0).
    kind: str  # Class name.
    output_shape: list[int]  # Per image: [C, H, W] or [F].
    params: int  # Parameters held directly by this module (children have their own rows).
    # A layer that computes a Linear map (a Linear, or a conv whose kernel covers its whole input, or makes its whole
    # output from a 1x1 input): the per-image shape it reads as its in_features, before any flatten ([32, 7, 7]
    # for 1568 features), and what it makes ([1], or [32, 7, 7] for the DCGAN generator's first block).
    linear_in: list[int] | None = None
    linear_out: list[int] | None = None


@dataclass
class NetReport:
    """A traced network: parameter and buffer counts, its layers, and the activation bytes per image."""

    params: int
    buffers: int
    layers: list[LayerRow] = field(default_factory=list)
    activation_bytes: int = 0  # Sum of layer outputs per image, fp32: what backward keeps alive.

    def to_dict(self) -> dict:
        return {
            "params": self.params,
            "buffers": self.buffers,
            "activation_bytes_per_image": self.activation_bytes,
            "layers": [vars(r) for r in self.layers],
        }


def _squeeze(shape: list[int]) -> list[int]:
    """[64, 1, 1] -> [64]: trailing 1x1 map sides carry no information."""
    while len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def linear_view(m: nn.Module, x: object, y: torch.Tensor) -> tuple[list[int], list[int]] | None:
    """(shape read, shape made), per image, when module `m` computes a Linear map of its input `x`; else None.

    The shape read is that of the tensor before a flatten (`x.flatten(1)` is a view whose base holds the map), so a
    discriminator head shows the 32x7x7 map behind its 1568 features.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        return None
    if isinstance(m, nn.Linear) or type(m).__name__ == "FullyConnectedLayer":
        base = x._base
        src = base if base is not None and base.ndim > x.ndim and base.numel() == x.numel() else x
        return list(src.shape[1:]), list(y.shape[1:])
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and x.ndim == 4 and m.groups == 1:
        flat_pad = all(p == 0 for p in m.padding) if isinstance(m.padding, tuple) else False
        if not flat_pad or any(d != 1 for d in m.dilation):
            return None
        if isinstance(m, nn.Conv2d) and tuple(x.shape[2:]) == tuple(m.kernel_size):  # Kernel covers the map.
            return list(x.shape[1:]), _squeeze(list(y.shape[1:]))
        if isinstance(m, nn.ConvTranspose2d) and tuple(x.shape[2:]) == (1, 1):  # 1x1 in: each weight is one output.
            return _squeeze(list(x.shape[1:])), list(y.shape[1:])
    return None


def linear_text(row: LayerRow) -> str:
    """'32×7×7 = 1568 → Linear', '64 → Linear → 32×7×7 = 1568', or '' for a layer that is not a Linear map."""
    if row.linear_in is None or row.linear_out is None:
        return ""

    def side(shape: list[int]) -> str:
        n = math.prod(shape)
        return "×".join(map(str, shape)) + (f" = {n}" if len(shape) > 1 else "")

    text = f"{side(row.linear_in)} → Linear"
    return text + (f" → {side(row.linear_out)}" if len(row.linear_out) > 1 else "")


def _is_layer(m: nn.Module) -> bool:
    """Layers whose outputs count toward activation memory (blocks and networks would count twice)."""
    if type(m).__name__.endswith(("Block", "Network", "Generator", "Discriminator", "Epilogue", "Input")):
        return False
    return _own_params(m) > 0 or not any(True for _ in m.children())


def _own_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters(recurse=False))


def trace(net: nn.Module, *inputs, **kwargs) -> NetReport:
    """Run `net` once on meta tensors, recording every module's output shape (batch dim dropped)."""
    rows, activation_bytes = _record(net, inputs, kwargs)
    # Modules that own parameters but did not run (none today) still count in the totals.
    params = sum(p.numel() for p in net.parameters())
    buffers = sum(b.numel() for b in net.buffers())
    layers = [r for r in rows.values() if r.params > 0 or r.kind in _SHAPE_KINDS]
    return NetReport(params, buffers, layers, activation_bytes)


def _record(net: nn.Module, inputs: tuple, kwargs: dict) -> tuple[dict[str, LayerRow], int]:
    """({name: row} of every submodule that ran, in the order they first ran; activation bytes per image)."""
    rows: dict[str, LayerRow] = {}
    act = [0]
    hooks = []
    for name, mod in net.named_modules():
        if not name:
            continue

        def hook(m, args, out, name=name):
            y = out[0] if isinstance(out, tuple) else out
            if not isinstance(y, torch.Tensor):
                return
            if name not in rows:
                rows[name] = LayerRow(name, type(m).__name__, list(y.shape[1:]), _own_params(m))
                view = linear_view(m, args[0] if args else None, y)
                if view is not None:
                    rows[name].linear_in, rows[name].linear_out = view
                if _is_layer(m):
                    act[0] += y[0].numel() * 4

        hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            net(*inputs, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return rows, act[0]


# Parameter-free modules worth a row (they change shapes).
_SHAPE_KINDS = {"MinibatchStd", "Upsample", "Flatten"}


def layer_table(net: nn.Module, *inputs, depth: int | None = None, **kwargs) -> str:
    """The layers of any module, run once on `inputs` (without gradients), as a text table: name, class, output
    shape per image (batch dimension dropped) and parameters, then the total.

    depth=None lists every layer that holds parameters, as `ganforge inspect` does. depth=d folds the layers below
    the d-th level of names into the module at that level (`blocks.0` for depth 2), whose row then counts every
    parameter inside it. Keyword arguments other than `depth` go to the module. On the meta device nothing is
    computed or allocated.

    Example:
        ```python
        import torch
        from ganforge.inspector import layer_table
        from ganforge.nn import MappingNetwork

        print(layer_table(MappingNetwork(512, 0, 512, num_ws=None), torch.randn(1, 512)))
        ```
    """
    if depth is not None and depth < 1:
        raise ValueError(f"depth={depth}: give 1 or more (1 = the module's direct children), or None for every layer")
    ran, _ = _record(net, inputs, kwargs)
    if depth is None:
        rows = [r for r in ran.values() if r.params > 0 or r.kind in _SHAPE_KINDS]
    else:
        rows = []
        for r in ran.values():
            level, module = r.name.count(".") + 1, net.get_submodule(r.name)
            if level == depth or (level < depth and next(module.children(), None) is None):
                rows.append(LayerRow(r.name, r.kind, r.output_shape, sum(p.numel() for p in module.parameters())))
    cells = [("layer", "kind", "output", "params")]
    cells += [(r.name, r.kind, str(r.output_shape), f"{r.params:,}") for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(row[:3], widths)), row[3].rjust(widths[3])]) for row in cells]
    total = sum(p.numel() for p in net.parameters())
    return "\n".join([*lines, f"total: {total:,} parameters ({format_count(total)})"])


def inspect_plan(plan: Plan, batch: int = 2) -> dict:
    """The inspector's answer as plain data (the CLI's --json output)."""
    from ganforge import build_discriminator, build_generator

    with torch.device("meta"):
        G = build_generator(plan).eval()
        D = build_discriminator(plan)
        z = torch.empty([batch, plan.z_dim])
        c = torch.empty([batch, plan.c_dim]) if plan.c_dim else None
        g_kwargs = {"noise_mode": "const"} if plan.family == "stylegan2" else {}
        g = trace(G, z, c, **g_kwargs)
        img = torch.empty([batch, plan.img_channels, plan.height, plan.width])
        d = trace(D, img, c)
    gen = {"params": g.params, "num_ws": plan.num_ws, "output_shape": plan.shape, **g.to_dict()}
    gen["params"] = g.params
    out = {
        "plan": plan.to_dict(),
        "resolution": plan.resolution_text,
        "generator": gen,
        "discriminator": d.to_dict(),
        "total_params": g.params + d.params,
        # Adam training keeps weights, grads and two moments in fp32: 16 bytes per parameter.
        "train_state_bytes": 16 * (g.params + d.params),
        "memory_estimate": memory_model(g.params, d.params, g.activation_bytes, d.activation_bytes),
    }
    return out


# Peak-memory model, fp32, one process; checked against measured peaks by benchmarks/scaling.py (within 25% on the
# CPU from config-f at 32 px to XXXL at 1024 px). Training, per parameter: weights, gradients and two Adam moments
# (16 bytes), the gain-scaled weight copies that backward keeps and their gradients (8), optimizer temporaries (~6);
# plus G_ema (4 per G parameter). Per image: backward keeps pre-activations, modulated inputs and the double-backward
# graphs of R1 and path length beside the layer outputs, about 2.8x the inspector's sum of layer outputs.
# Inference: the G weights and one image's layer outputs per image. Both: ~112 MiB of allocator and thread scratch.
TRAIN_BYTES_PER_PARAM = 30
TRAIN_ACTIVATION_FACTOR = 2.8
RUNTIME_BYTES = 112 << 20


def memory_model(g_params: int, d_params: int, g_act: int, d_act: int) -> dict:
    """Estimated peak bytes = base + batch x per_image, for training (G and D) and G inference."""
    return {
        "train_base_bytes": TRAIN_BYTES_PER_PARAM * (g_params + d_params) + 4 * g_params + RUNTIME_BYTES,
        "train_bytes_per_image": int(TRAIN_ACTIVATION_FACTOR * (g_act + d_act)),
        "infer_base_bytes": 4 * g_params + RUNTIME_BYTES,
        "infer_bytes_per_image": g_act,
    }


def estimate_peak_bytes(info: dict, task: str, batch: int) -> int:
    """The memory model of an inspect_plan() answer at a batch size: task 'train' or 'infer'."""
    m = info["memory_estimate"]
    return m[f"{task}_base_bytes"] + batch * m[f"{task}_bytes_per_image"]


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def format_count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)
