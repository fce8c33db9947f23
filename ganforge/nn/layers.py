"""Layers with parameters: equalized-learning-rate dense and conv layers, AdaIN, minibatch std, norms.

Equalized learning rate (Karras et al. 2018): weights are stored as N(0, 1) / lr_mul and scaled
at run time by lr_mul / sqrt(fan_in); biases by lr_mul. Parameter names follow the official code.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganforge.nn import ops
from ganforge.nn.numerics import Numerics
from ganforge.nn.shapes import check_shape, shape_error


class FullyConnectedLayer(nn.Module):
    bias: nn.Parameter | None

    def __init__(
        self,
        in_features: int,  # Input size.
        out_features: int,  # Output size.
        bias: bool = True,  # Learn a bias?
        activation: str = "linear",  # Activation name (see ops.ACTIVATIONS).
        lr_multiplier: float = 1.0,  # Learning-rate multiplier (0.01 in the mapping network).
        bias_init: float = 0.0,  # Initial bias (1 for style affines).
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [N, in] -> [N, out]
        w = self.weight.to(x.dtype) * self.weight_gain
        b: torch.Tensor | None = None
        if self.bias is not None:
            b = self.bias.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, act={self.activation}, lr_mul={self.bias_gain:g}"


class Conv2dLayer(nn.Module):
    resample_filter: torch.Tensor
    bias: nn.Parameter | None

    def __init__(
        self,
        in_channels: int,  # Input feature maps.
        out_channels: int,  # Output feature maps.
        kernel_size: int,  # Square kernel size (padding keeps the size: kernel_size // 2).
        bias: bool = True,  # Learn a bias?
        activation: str = "linear",  # Activation name.
        up: int = 1,  # 2 = upsample the output.
        down: int = 1,  # 2 = downsample the output.
        resample_filter: list[float] | None = None,  # FIR taps; None = [1, 3, 3, 1].
        conv_clamp: float | None = None,  # Clamp outputs to ±X; None = off.
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.activation = activation
        self.up, self.down = up, down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter or [1, 3, 3, 1]))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = ops.ACTIVATIONS[activation][1]
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.numerics = Numerics()  # The network sets its own (ganforge.nn.numerics.set_numerics).

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        fast = self.numerics.fast
        if fast and self.activation in ("linear", "lrelu"):
            # Bias inside the conv, then gain, clamp and activation in place. (Folding the gain into the weights
            # would save a pass but triples the rounding error of conditional D outputs against the official code.)
            w = (self.weight * self.weight_gain).to(x.dtype)
            b = None if self.bias is None else self.bias.to(x.dtype)
            x = ops.conv2d_resample(
                x, w, f=self.resample_filter, up=self.up, down=self.down, padding=self.padding, bias=b
            )
            return ops.activate_(x, self.activation, clamp, gain=self.act_gain * gain)
        w = self.weight * self.weight_gain
        x = ops.conv2d_resample(
            x, w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down, padding=self.padding, fast=fast
        )
        return ops.bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_channels}, out={self.out_channels}, k={self.weight.shape[-1]}, "
            f"act={self.activation}, up={self.up}, down={self.down}, clamp={self.conv_clamp}"
        )


class PixelNorm(nn.Module):
    """x / sqrt(mean_c(x²) + 1e-8) per pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.normalize_2nd_moment(x, dim=1)


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018): D sees how varied its batch is, as extra feature maps.

    The batch splits into groups of G = min(group_size, N) images (image i in group i mod N/G) and the C
    channels into F = num_channels parts; for each group and part, with x_g its [G, C/F, H, W] slice:

    ```text
    σ = mean over (c, h, w) of sqrt(Var_G(x_g) + 1e-8)   # one number per group and part
    y = concat(x, σ broadcast to [F, H, W])              # [N, C, H, W] -> [N, C + F, H, W]
    ```

    Input x: [N, C, H, W], N a multiple of G (any N when N < group_size) and C a multiple of F.

    Example:
        ```python
        import torch
        from ganforge.nn import MinibatchStd

        mbstd = MinibatchStd(group_size=4, num_channels=1)
        y = mbstd(torch.randn(8, 512, 4, 4))  # [8, 513, 4, 4]
        ```
    """

    shape_args = ("group_size", "num_channels")  # Constructor arguments that shape errors name the block by.

    def __init__(
        self,
        group_size: int | None,  # Images per group; None = the whole batch.
        num_channels: int = 1,  # Extra feature maps F (C must be a multiple of F).
    ):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [N, C, H, W] -> [N, C + F, H, W]
        check_shape(self, "x", x, ("N", "C", "H", "W"))
        n, c = x.shape[0], x.shape[1]
        g = min(self.group_size, n) if self.group_size else n
        if c % self.num_channels != 0:
            raise shape_error(self, f"x of shape [N, C, H, W] with C a multiple of {self.num_channels}", list(x.shape))
        if n % g != 0:
            raise shape_error(
                self,
                f"x of shape [N, C, H, W] with N a multiple of {g} (or set group_size to a divisor of N)",
                list(x.shape),
            )
        return ops.minibatch_std(x, self.group_size, self.num_channels)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


def adain(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """AdaIN (StyleGAN1): y = scale · (x - mean_HW) / std_HW + bias, per sample and channel.

    std_HW = sqrt(mean_HW((x - mean_HW)²) + eps) (the biased variance). x [N, C, H, W], scale and bias [N, C].
    """
    x = x - x.mean(dim=[2, 3], keepdim=True)
    x = x * (x.square().mean(dim=[2, 3], keepdim=True) + eps).rsqrt()
    return x * scale[:, :, None, None].to(x.dtype) + bias[:, :, None, None].to(x.dtype)


class AdaIN(nn.Module):
    """Adaptive instance normalization (StyleGAN1, Karras et al. 2019): w sets each channel's scale and bias.

    Each channel of each image is normalized over its H×W positions, then scaled and shifted by a style
    computed from w by a learned affine layer A (equalized lr; scale bias init 1, shift bias init 0):

    ```text
    (y_s, y_b) = A(w)                                       # [N, C] each
    μ = mean_HW(x),  σ = sqrt(mean_HW((x - μ)²) + 1e-8)     # per image and channel
    AdaIN(x, w) = y_s · (x - μ) / σ + y_b
    ```

    Input: x [N, channels, H, W] and w [N, w_dim] (one w per image of x); output: x's shape.

    Example:
        ```python
        import torch
        from ganforge.nn import AdaIN

        adain = AdaIN(w_dim=512, channels=256)
        y = adain(torch.randn(4, 256, 8, 8), torch.randn(4, 512))  # [4, 256, 8, 8]
        ```
    """

    shape_args = ("w_dim", "channels")  # Constructor arguments that shape errors name the block by.

    def __init__(
        self,
        w_dim: int,  # Size of w.
        channels: int,  # Feature maps C of x.
    ):
        super().__init__()
        self.w_dim, self.channels = w_dim, channels
        self.affine = FullyConnectedLayer(w_dim, 2 * channels, bias_init=0)
        assert self.affine.bias is not None
        with torch.no_grad():
            self.affine.bias[:channels].fill_(1.0)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # [N, C, H, W], [N, w_dim] -> [N, C, H, W]
        check_shape(self, "x", x, ("N", self.channels, "H", "W"))
        check_shape(self, "w", w, (x.shape[0], self.w_dim), note="one w per image of x")
        style = self.affine(w)  # [N, 2C]
        return adain(x, style[:, : self.channels], style[:, self.channels :])


AdaINStyle = AdaIN  # The name this layer had before ganforge.nn exported it.


def param_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of a network's weights: what it computes in outside its reduced-precision blocks (float32 as
    the official code; float64 after `.double()`, as the parity tests run it)."""
    return next(module.parameters()).dtype
