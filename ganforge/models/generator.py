"""StyleGAN2 generator: synthesis blocks and network from a Plan, any base·2^k resolution.

The layers are the public blocks of `ganforge.nn` (mapping network, synthesis layers, ToRGB, inputs).

State-dict keys follow the official StyleGAN2-ADA scheme (mapping.fc0.weight,
synthesis.b64.conv0.affine.weight, synthesis.b4.const, …); non-square blocks are named b32x64.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from ganforge.nn import ops
from ganforge.nn.inputs import NoConstInput
from ganforge.nn.layers import Conv2dLayer, param_dtype
from ganforge.nn.mapping import MappingNetwork
from ganforge.nn.numerics import Numerics, set_numerics
from ganforge.nn.synthesis import SynthesisLayer, ToRGBLayer
from ganforge.plan import Plan
from ganforge.plan_compare import compare_num_ws


def assert_shape(x: torch.Tensor, shape: list[int | None], what: str = "tensor") -> None:
    if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{what} has shape {list(x.shape)}, expected {want}")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """bf16 dot-product instructions on this CPU (avx512_bf16 or amx_bf16 in /proc/cpuinfo; False elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def reduced_dtype(
    plan: Plan,
    use_fp16: bool,
    x: torch.Tensor,
    force_fp32: bool,
    numerics: Numerics,
    full: torch.dtype = torch.float32,
) -> torch.dtype:
    """Reduced precision where the Plan asks for it, on GPUs (and on CPUs for networks built with
    cpu_reduced_precision=True); else `full`, the weights' dtype."""
    if not use_fp16 or force_fp32 or not numerics.reduced_on(x.device):
        return full
    return torch.bfloat16 if plan.fp16_dtype == "bf16" else torch.float16


# ----------------------------------------------------------------------------
# Synthesis blocks and network.


class SynthesisBlock(nn.Module):
    resample_filter: torch.Tensor  # Buffer.

    def __init__(
        self,
        in_channels: int,  # 0 = first block (const or noconst input).
        out_channels: int,
        w_dim: int,
        size: tuple[int, int],  # Output (H, W).
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",  # orig | skip | resnet.
        use_fp16: bool = False,
        conv_clamp: float | None = None,
        style: str = "modulated",
        g_input: str = "const",
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.size, self.is_last, self.architecture, self.use_fp16 = (size[0], size[1]), is_last, architecture, use_fp16
        self.register_buffer("resample_filter", ops.setup_filter())
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            if g_input == "const":
                self.const = nn.Parameter(torch.randn([out_channels, *self.size]))
            else:
                self.input = NoConstInput(w_dim, out_channels, self.size, conv_clamp=conv_clamp, style=style)
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, self.size, up=2, conv_clamp=conv_clamp, style=style
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, self.size, conv_clamp=conv_clamp, style=style)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2)
        self.numerics = Numerics()  # The network sets its own (ganforge.nn.numerics.set_numerics).

    def forward(self, x, img, ws, dtype=torch.float32, fused_modconv=None, noise_mode="random"):
        # ws: [N, num_conv + num_torgb, w_dim]
        w_iter = iter(ws.unbind(dim=1))
        fast = self.numerics.fast
        if fused_modconv is None and not (fast and ws.device.type == "cpu"):  # CPU: chosen per layer.
            fused_modconv = (not self.training) and (dtype == ws.dtype or ws.shape[0] == 1)
        kw = dict(fused_modconv=fused_modconv, noise_mode=noise_mode)

        # Input.
        if self.in_channels == 0:
            if hasattr(self, "const"):
                x = self.const.to(dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)  # A view: no copy.
            else:
                x = self.input(ws[:, 0], **kw).to(dtype)
            x = ops.preferred_layout(x, fast=fast)
        else:
            assert_shape(x, [None, self.in_channels, self.size[0] // 2, self.size[1] // 2], "block input")
            x = x.to(dtype)

        # Main layers.
        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), **kw)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), **kw)
            x = self.conv1(x, next(w_iter), gain=math.sqrt(0.5), **kw)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), **kw)
            x = self.conv1(x, next(w_iter), **kw)

        # ToRGB, accumulated in full precision (the dtype of ws).
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter, fast=fast)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(ws.dtype)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, plan: Plan):
        super().__init__()
        self.plan = plan
        self.numerics = Numerics()  # Generator sets its own (ganforge.nn.numerics.set_numerics).
        self.w_dim, self.img_channels = plan.w_dim, plan.img_channels
        self.img_resolution = max(plan.height, plan.width)
        self.block_names = plan.block_names
        self.num_ws = 0
        for i, (name, size, ch) in enumerate(zip(plan.block_names, plan.block_sizes, plan.channels)):
            block = SynthesisBlock(
                in_channels=plan.channels[i - 1] if i > 0 else 0,
                out_channels=ch,
                w_dim=plan.w_dim,
                size=size,
                img_channels=plan.img_channels,
                is_last=(i == plan.num_blocks - 1),
                architecture=plan.g_architecture,
                use_fp16=plan.fp16_block(i),
                conv_clamp=plan.conv_clamp,
                style=plan.style,
                g_input=plan.g_input,
            )
            self.num_ws += block.num_conv
            if block.is_last:
                self.num_ws += block.num_torgb
            setattr(self, name, block)
        assert self.num_ws == plan.num_ws

    def forward(
        self, ws: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False, fused_modconv: bool | None = None
    ) -> torch.Tensor:
        # [N, num_ws, w_dim] -> [N, C, H, W]
        if ws.ndim == 3 and ws.shape[1] != self.num_ws:
            raise ValueError(str(compare_num_ws(self.plan, ws.shape[1], source=f"the ws tensor {list(ws.shape)}")))
        assert_shape(ws, [None, self.num_ws, self.w_dim], "ws")
        full = param_dtype(self)
        ws = ws.to(full)
        x = img = None
        w_idx = 0
        for name in self.block_names:
            block = getattr(self, name)
            cur = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            dtype = reduced_dtype(self.plan, block.use_fp16, ws, force_fp32, self.numerics, full)
            x, img = block(x, img, cur, dtype=dtype, fused_modconv=fused_modconv, noise_mode=noise_mode)
        assert img is not None  # The last block always has a ToRGB layer.
        return img.contiguous()


class Generator(nn.Module):
    """G(z, c) = synthesis(mapping(z, c)). Official call signature and attributes.

    `ops` ("fast" or "reference") and `cpu_reduced_precision` choose how this network computes
    (`ganforge.nn.numerics`); the Plan's fp16 blocks run in reduced precision on GPUs either way.
    """

    def __init__(self, plan: Plan, *, cpu_reduced_precision: bool = False, ops: str = "fast"):
        super().__init__()
        if plan.family != "stylegan2":
            raise ValueError(f"Generator needs a stylegan2 plan, got family={plan.family!r}")
        Numerics(ops, cpu_reduced_precision)  # Checks the values before anything is allocated.
        self.plan = plan
        self.z_dim, self.c_dim, self.w_dim = plan.z_dim, plan.c_dim, plan.w_dim
        self.img_channels = plan.img_channels
        self.img_resolution = max(plan.height, plan.width)
        self.img_shape = (plan.img_channels, plan.height, plan.width)
        self.synthesis = SynthesisNetwork(plan)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            plan.z_dim,
            plan.c_dim,
            plan.w_dim,
            num_ws=self.num_ws,
            num_layers=plan.mapping_layers,
            lr_multiplier=plan.mapping_lr_mult,
            w_avg_beta=plan.w_avg_beta,
        )
        set_numerics(self, ops=ops, cpu_reduced_precision=cpu_reduced_precision)

    def forward(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, **synthesis_kwargs):
        if z is not None and self.z_dim > 0:  # The network's sentence (as the DCGAN G's) before the mapping's.
            assert_shape(z, [None, self.z_dim], "z")
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)
