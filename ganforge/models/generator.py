"""StyleGAN2 generator: mapping network, synthesis layers and blocks, any base·2^k resolution.

State-dict keys follow the official StyleGAN2-ADA scheme (mapping.fc0.weight,
synthesis.b64.conv0.affine.weight, synthesis.b4.const, …); non-square blocks are named b32x64.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from ganforge.nn import ops
from ganforge.nn.layers import AdaINStyle, Conv2dLayer, FullyConnectedLayer
from ganforge.nn.numerics import Numerics, set_numerics
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


def param_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of a network's weights: what it computes in outside its reduced-precision blocks (float32 as
    the official code; float64 after `.double()`, as the parity tests run it)."""
    return next(module.parameters()).dtype


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
# Mapping network.


class MappingNetwork(nn.Module):
    w_avg: torch.Tensor  # Buffer (when num_ws and w_avg_beta are set).

    def __init__(
        self,
        z_dim: int,  # Input latent size; 0 = labels only (D's conditioning mapping).
        c_dim: int,  # Label size; 0 = unconditional.
        w_dim: int,  # Output size.
        num_ws: int | None,  # Copies of w to output; None = return [N, w_dim].
        num_layers: int = 8,  # Depth.
        lr_multiplier: float = 0.01,  # Learning-rate multiplier of every fc layer.
        w_avg_beta: float | None = 0.995,  # Decay of the tracked w_avg; None = no tracking.
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        embed_features = w_dim if c_dim > 0 else 0
        features = [z_dim + embed_features] + [w_dim] * num_layers
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation="lrelu", lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,  # [N, z_dim]
        c: torch.Tensor | None,  # [N, c_dim] or None
        truncation_psi: float = 1.0,  # 1 = off; 0 = every w is w_avg.
        truncation_cutoff: int | None = None,  # Truncate only the first N ws; None = all.
        skip_w_avg_update: bool = False,
    ) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            if z is None:
                raise ValueError(f"this model takes latents (z_dim={self.z_dim}): pass z of shape [N, {self.z_dim}]")
            assert_shape(z, [None, self.z_dim], "z")
            x = ops.normalize_2nd_moment(z.to(param_dtype(self)))
        if self.c_dim > 0:
            if c is None:
                raise ValueError(
                    f"this model is conditional (c_dim={self.c_dim}): pass labels c of shape [N, {self.c_dim}]"
                )
            assert_shape(c, [None, self.c_dim], "c")
            y = ops.normalize_2nd_moment(self.embed(c.to(param_dtype(self))))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        assert x is not None  # z_dim > 0 or c_dim > 0.
        # Track the average w (training mode only, as official).
        if self.w_avg_beta is not None and self.training and not skip_w_avg_update and self.num_ws is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            if truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


# ----------------------------------------------------------------------------
# Synthesis layers.


class SynthesisLayer(nn.Module):
    """3×3 conv styled by w (modulated, or AdaIN), with noise, bias, lrelu and optional 2× upsampling."""

    resample_filter: torch.Tensor  # Buffer.
    noise_const: torch.Tensor  # Buffer (when use_noise).
    affine: FullyConnectedLayer  # style == "modulated".
    adain: AdaINStyle  # style == "adain".

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        size: tuple[int, int],  # Output (H, W).
        up: int = 1,  # 2 = upsample.
        use_noise: bool = True,
        conv_clamp: float | None = None,
        style: str = "modulated",  # modulated | adain.
        kernel_size: int = 3,
    ):
        super().__init__()
        self.size, self.up, self.use_noise, self.conv_clamp, self.style = tuple(size), up, use_noise, conv_clamp, style
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", ops.setup_filter())
        self.act_gain = ops.ACTIVATIONS["lrelu"][1]
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        if style == "modulated":
            self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        else:
            self.adain = AdaINStyle(w_dim, out_channels)
        if use_noise:
            self.register_buffer("noise_const", torch.randn(list(self.size)))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.numerics = Numerics()  # The network sets its own (ganforge.nn.numerics.set_numerics).

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool | None = True,
        gain: float = 1.0,
    ) -> torch.Tensor:
        n = x.shape[0]
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([n, 1, *self.size], device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        elif noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode={noise_mode!r}: choose random, const or none")
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        fast = self.numerics.fast
        if self.style == "modulated" and fast:
            # Demodulation, bias and gain in one addcmul after the conv; noise, clamp and lrelu in place.
            fused = ops.prefer_fused(x, self.weight) if fused_modconv is None else fused_modconv
            y, dcoefs = ops.modulated_conv2d_parts(
                x,
                self.weight,
                self.affine(w),
                up=self.up,
                padding=self.padding,
                resample_filter=self.resample_filter,
                fused=fused,
            )
            scale = None if dcoefs is None else dcoefs.to(y.dtype).reshape(n, -1, 1, 1)
            bias = self.bias.to(y.dtype).reshape(1, -1, 1, 1)
            return ops.scale_bias_act_(y, scale, bias, self.act_gain * gain, "lrelu", clamp, noise)
        if self.style == "modulated":
            styles = self.affine(w)
            x = ops.modulated_conv2d(
                x,
                self.weight,
                styles,
                noise=noise,
                up=self.up,
                padding=self.padding,
                resample_filter=self.resample_filter,
                fused=fused_modconv,
                fast=False,
            )
        else:
            wt = self.weight * (1 / math.sqrt(self.weight[0].numel()))
            x = ops.conv2d_resample(
                x, wt.to(x.dtype), f=self.resample_filter, up=self.up, padding=self.padding, fast=fast
            )
            if noise is not None:
                x = x + noise.to(x.dtype)
        x = ops.bias_act(x, self.bias, act="lrelu", gain=self.act_gain * gain, clamp=clamp)
        if self.style == "adain":
            x = self.adain(x, w)
        return x

    def extra_repr(self) -> str:
        return f"size={self.size}, up={self.up}, style={self.style}, clamp={self.conv_clamp}"


class ToRGBLayer(nn.Module):
    """1×1 modulated conv without demodulation; styles scaled by 1/sqrt(fan_in)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)
        self.numerics = Numerics()  # The network sets its own (ganforge.nn.numerics.set_numerics).

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool | None = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused_modconv, fast=self.numerics.fast)
        return ops.bias_act(x, self.bias, clamp=self.conv_clamp)


class NoConstInput(nn.Module):
    """Learned input from w[0]: dense to a half-size map, then an upsampling styled conv to the base."""

    def __init__(self, w_dim: int, channels: int, size: tuple[int, int], conv_clamp: float | None, style: str):
        super().__init__()
        self.channels, self.half_size = channels, (size[0] // 2, size[1] // 2)
        self.fc = FullyConnectedLayer(w_dim, channels * self.half_size[0] * self.half_size[1], activation="lrelu")
        self.conv = SynthesisLayer(channels, channels, w_dim, size, up=2, conv_clamp=conv_clamp, style=style)

    def forward(self, w: torch.Tensor, **layer_kwargs) -> torch.Tensor:
        x = self.fc(w).reshape(-1, self.channels, *self.half_size)
        return self.conv(x, w, **layer_kwargs)


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
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)
