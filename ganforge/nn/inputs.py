"""The synthesis network's first feature maps: a learned constant (StyleGAN2) or a map made from w ("noconst").

Both take w [N, w_dim] and return [N, channels, H, W], so one can replace the other.
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge.nn.layers import FullyConnectedLayer
from ganforge.nn.shapes import check_shape, shape_error
from ganforge.nn.synthesis import SynthesisLayer


class ConstantInput(nn.Module):
    """The learned constant input of StyleGAN2: the same [C, H, W] tensor for every image; w only sets the batch size.

    ```text
    x_n = const   for every image n,   const ~ N(0, 1) at init, learned
    ```

    Input: w [N, w_dim] (any w_dim). Output: [N, channels, H, W], a view of `const` (no copy).

    Example:
        ```python
        import torch
        from ganforge.nn import ConstantInput

        const = ConstantInput(channels=512, size=(4, 4))
        x = const(torch.randn(4, 512))  # [4, 512, 4, 4]
        ```
    """

    shape_args = ("channels", "size")  # Constructor arguments that shape errors name the block by.

    def __init__(
        self,
        channels: int,  # Feature maps C.
        size: int | tuple[int, int] = 4,  # (H, W), or one int for a square map.
    ):
        super().__init__()
        self.channels = channels
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.const = nn.Parameter(torch.randn([channels, *self.size]))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        # [N, w_dim] -> [N, C, H, W]
        check_shape(self, "w", w, ("N", "w_dim"))
        return self.const.unsqueeze(0).expand(w.shape[0], -1, -1, -1)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, size={self.size}"


class NoConstInput(nn.Module):
    """A learned input made from w ("noconst"): a dense layer to a half-size map, then an upsampling synthesis layer.

    ```text
    x_0 = reshape(lrelu(W w + b) · √2, [C, H/2, W/2])
    x   = SynthesisLayer(x_0, w, up=2)            # [C, H, W]
    ```

    Unlike the constant, the first maps vary with w. Input: w [N, w_dim]; output: [N, channels, H, W].
    State-dict names: `fc.*` and `conv.*` (in a generator: `synthesis.b4.input.fc.weight` …).

    Example:
        ```python
        import torch
        from ganforge.nn import NoConstInput

        noconst = NoConstInput(w_dim=512, channels=512, size=(4, 4))
        x = noconst(torch.randn(4, 512))  # [4, 512, 4, 4]
        ```
    """

    shape_args = ("w_dim", "channels", "size")  # Constructor arguments that shape errors name the block by.

    def __init__(
        self,
        w_dim: int,  # Size of w.
        channels: int,  # Feature maps C.
        size: tuple[int, int],  # Output (H, W); both even.
        conv_clamp: float | None = None,  # Clamp the conv's outputs to ±X; None = off.
        style: str = "modulated",  # The conv's styling: modulated | adain.
    ):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, (int(size[0]), int(size[1]))
        if self.size[0] % 2 or self.size[1] % 2:
            raise shape_error(self, "an even output size (it upsamples a half-size map)", self.size)
        self.half_size = (self.size[0] // 2, self.size[1] // 2)
        self.fc = FullyConnectedLayer(w_dim, channels * self.half_size[0] * self.half_size[1], activation="lrelu")
        self.conv = SynthesisLayer(channels, channels, w_dim, self.size, up=2, conv_clamp=conv_clamp, style=style)

    def forward(self, w: torch.Tensor, **layer_kwargs) -> torch.Tensor:
        # [N, w_dim] -> [N, C, H, W]; layer_kwargs go to the conv (noise_mode, fused_modconv).
        check_shape(self, "w", w, ("N", self.w_dim))
        x = self.fc(w).reshape(-1, self.channels, *self.half_size)
        return self.conv(x, w, **layer_kwargs)

    def extra_repr(self) -> str:
        return f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}"
