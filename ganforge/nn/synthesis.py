"""Style-driven synthesis layers of StyleGAN2: modulated convolution, noise injection, the synthesis layer, ToRGB.

Parameter names follow the official StyleGAN2-ADA code (`weight`, `bias`, `affine`, `noise_strength`,
`noise_const`), so official weights load by name. The math lives in `ganforge.nn.ops`; these modules hold the
parameters and check the shapes they are given.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganforge.nn import ops
from ganforge.nn.layers import AdaIN, FullyConnectedLayer
from ganforge.nn.numerics import Numerics
from ganforge.nn.shapes import check_shape

NOISE_MODES = ("random", "const", "none")


def layer_noise(
    mode: str,  # random | const | none.
    n: int,  # Batch size.
    size: tuple[int, int],  # (H, W) of the maps.
    device: torch.device,
    strength: torch.Tensor,  # Learned scalar.
    const: torch.Tensor | None,  # [H, W] fixed noise for mode "const".
) -> torch.Tensor | None:
    """StyleGAN2's noise input: strength · N(0, 1) of shape [n, 1, H, W] (random), strength · const (const), or None."""
    if mode == "random":
        return torch.randn([n, 1, *size], device=device) * strength
    if mode == "const" and const is not None:
        return const * strength
    if mode not in NOISE_MODES:
        raise ValueError(f"noise_mode={mode!r}: choose random, const or none")
    return None


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class NoiseInjection(nn.Module):
    """Per-pixel noise scaled by a learned strength (StyleGAN), one noise map shared by all channels.

    ```text
    y = x + s · n,   n ~ N(0, 1) of shape [N, 1, H, W],   s learned, init 0
    ```

    Input x: [N, C, H, W] (H, W = size when a size is given); output: x's shape. noise_mode "const" adds a fixed
    map (`noise_const`, drawn once, for reproducible images), "none" adds nothing.

    Example:
        ```python
        import torch
        from ganforge.nn import NoiseInjection

        noise = NoiseInjection(size=8)
        y = noise(torch.randn(4, 256, 8, 8))  # [4, 256, 8, 8]
        ```
    """

    noise_const: torch.Tensor  # Buffer (when a size is given).
    shape_args = ("size",)  # Constructor arguments that shape errors name the block by.

    def __init__(
        self,
        size: int | tuple[int, int] | None = None,  # (H, W) of x, or one int for square maps; None = any size.
    ):
        super().__init__()
        self.size = None if size is None else _pair(size)
        if self.size is not None:
            self.register_buffer("noise_const", torch.randn(list(self.size)))
        self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        # [N, C, H, W] -> [N, C, H, W]
        h, w = self.size if self.size is not None else ("H", "W")
        check_shape(self, "x", x, ("N", "C", h, w))
        if noise_mode == "const" and self.size is None:
            raise ValueError("noise_mode='const' needs NoiseInjection(size=...): its fixed noise map has that size")
        const = self.noise_const if self.size is not None else None
        noise = layer_noise(noise_mode, x.shape[0], (x.shape[2], x.shape[3]), x.device, self.noise_strength, const)
        return x if noise is None else x + noise.to(x.dtype)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class ModulatedConv2d(nn.Module):
    """Convolution whose weights each style vector rescales per input channel (StyleGAN2, Karras et al. 2020, eqs. 1-3).

    ```text
    s = A(w)                                           # [N, I] styles; affine layer A, bias init 1
    W'_n[o, i, k] = s_n[i] · W[o, i, k]                # modulation, per image n
    W''_n[o, i, k] = W'_n[o, i, k] / sqrt(Σ_{i,k} W'_n[o, i, k]² + 1e-8)   # demodulation
    y_n = conv(x_n, W''_n)
    ```

    Demodulation gives each output map unit expected variance for unit-variance input, replacing AdaIN's
    instance normalization. With demodulate=False (ToRGB) s is scaled by 1/sqrt(I·k²) instead (equalized lr).
    No bias: StyleGAN2 adds noise, then the bias, then the activation (see SynthesisLayer).

    Input: x [N, in_channels, H, W] and w [N, w_dim] (one w per image of x). Output: [N, out_channels, H·up, W·up].

    Example:
        ```python
        import torch
        from ganforge.nn import ModulatedConv2d

        conv = ModulatedConv2d(in_channels=512, out_channels=256, w_dim=512)
        y = conv(torch.randn(4, 512, 8, 8), torch.randn(4, 512))  # [4, 256, 8, 8]
        ```
    """

    resample_filter: torch.Tensor  # Buffer.
    shape_args = ("in_channels", "w_dim")  # Constructor arguments that shape errors name the block by.

    def __init__(
        self,
        in_channels: int,  # Input feature maps I.
        out_channels: int,  # Output feature maps O.
        w_dim: int,  # Size of w (the affine layer maps it to I styles).
        kernel_size: int = 3,  # Square kernel; padding kernel_size // 2 keeps the size.
        demodulate: bool = True,  # Normalize each output map (StyleGAN2); False = modulation only (ToRGB).
        up: int = 1,  # 2 = 2× upsampling: transposed conv, then the FIR filter.
        resample_filter: list[float] | None = None,  # FIR taps for up = 2; None = [1, 3, 3, 1].
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.demodulate, self.up, self.padding = demodulate, up, kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter or [1, 3, 3, 1]))
        self.numerics = Numerics()  # A network sets its own (ganforge.nn.numerics.set_numerics).

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool | None = None) -> torch.Tensor:
        # [N, I, H, W], [N, w_dim] -> [N, O, H·up, W·up]. fused_modconv: None = per-shape choice (ops.prefer_fused).
        check_shape(self, "x", x, ("N", self.in_channels, "H", "W"))
        check_shape(self, "w", w, (x.shape[0], self.w_dim), note="one w per image of x")
        styles = self.affine(w)
        if not self.demodulate:
            styles = styles * self.weight_gain
        return ops.modulated_conv2d(
            x,
            self.weight,
            styles,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            demodulate=self.demodulate,
            fused=fused_modconv,
            fast=self.numerics.fast,
        )

    def extra_repr(self) -> str:
        k = self.weight.shape[-1]
        head = f"in={self.in_channels}, out={self.out_channels}, w_dim={self.w_dim}"
        return f"{head}, k={k}, up={self.up}, demodulate={self.demodulate}"


class SynthesisLayer(nn.Module):
    """One StyleGAN2 synthesis layer: modulated conv (or conv + AdaIN), noise, bias, leaky ReLU; official names.

    ```text
    style "modulated":  y = clamp(lrelu(ModulatedConv2d(x, w) + s·n + b) · √2, ±conv_clamp)
    style "adain":      y = AdaIN(clamp(lrelu(conv(x) + s·n + b) · √2, ±conv_clamp), w)     # StyleGAN1
    ```

    Input: x [N, in_channels, H/up, W/up] with (H, W) = size, and w [N, w_dim]. Output: [N, out_channels, H, W].

    Example:
        ```python
        import torch
        from ganforge.nn import SynthesisLayer

        layer = SynthesisLayer(in_channels=512, out_channels=256, w_dim=512, size=(16, 16), up=2)
        y = layer(torch.randn(4, 512, 8, 8), torch.randn(4, 512))  # [4, 256, 16, 16]
        ```
    """

    resample_filter: torch.Tensor  # Buffer.
    noise_const: torch.Tensor  # Buffer (when use_noise).
    affine: FullyConnectedLayer  # style == "modulated".
    adain: AdaIN  # style == "adain".
    shape_args = ("in_channels", "w_dim", "size", "up")  # Constructor arguments that shape errors name the block by.

    def __init__(
        self,
        in_channels: int,  # Input feature maps.
        out_channels: int,  # Output feature maps.
        w_dim: int,  # Size of w.
        size: tuple[int, int],  # Output (H, W).
        up: int = 1,  # 2 = upsample.
        use_noise: bool = True,  # Learned-strength noise input (noise_strength, noise_const).
        conv_clamp: float | None = None,  # Clamp outputs to ±X; None = off.
        style: str = "modulated",  # modulated | adain.
        kernel_size: int = 3,  # Square kernel.
    ):
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.up, self.use_noise, self.conv_clamp, self.style = up, use_noise, conv_clamp, style
        self.in_channels, self.w_dim = in_channels, w_dim
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", ops.setup_filter())
        self.act_gain = ops.ACTIVATIONS["lrelu"][1]
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        if style == "modulated":
            self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        else:
            self.adain = AdaIN(w_dim, out_channels)
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
        check_shape(self, "x", x, ("N", self.in_channels, self.size[0] // self.up, self.size[1] // self.up))
        check_shape(self, "w", w, (n, self.w_dim), note="one w per image of x")
        noise = None
        if self.use_noise:
            noise = layer_noise(noise_mode, n, self.size, x.device, self.noise_strength, self.noise_const)
        elif noise_mode not in NOISE_MODES:
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
    """Feature maps → image: a 1×1 modulated conv without demodulation, plus a bias (StyleGAN2's tRGB).

    ```text
    s = A(w) / sqrt(in_channels)                  # styles, equalized lr
    y = clamp(conv1x1(x, s ⊙ W) + b, ±conv_clamp)
    ```

    Input: x [N, in_channels, H, W] and w [N, w_dim]. Output: [N, out_channels, H, W] (3 for RGB); a skip
    generator adds it to the upsampled image of the previous resolution.

    Example:
        ```python
        import torch
        from ganforge.nn import ToRGBLayer

        torgb = ToRGBLayer(in_channels=128, out_channels=3, w_dim=512)
        img = torgb(torch.randn(4, 128, 64, 64), torch.randn(4, 512))  # [4, 3, 64, 64]
        ```
    """

    shape_args = ("in_channels", "w_dim")  # Constructor arguments that shape errors name the block by.

    def __init__(
        self,
        in_channels: int,  # Input feature maps.
        out_channels: int,  # Image channels.
        w_dim: int,  # Size of w.
        conv_clamp: float | None = None,  # Clamp outputs to ±X; None = off.
    ):
        super().__init__()
        self.in_channels, self.w_dim = in_channels, w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)
        self.numerics = Numerics()  # The network sets its own (ganforge.nn.numerics.set_numerics).

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool | None = True) -> torch.Tensor:
        check_shape(self, "x", x, ("N", self.in_channels, "H", "W"))
        check_shape(self, "w", w, (x.shape[0], self.w_dim), note="one w per image of x")
        styles = self.affine(w) * self.weight_gain
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused_modconv, fast=self.numerics.fast)
        return ops.bias_act(x, self.bias, clamp=self.conv_clamp)
