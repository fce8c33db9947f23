"""StyleGAN's mapping network: latent z (and labels c) to the intermediate latent w, with the tracked w_avg."""

from __future__ import annotations

import torch
from torch import nn

from ganforge.nn import ops
from ganforge.nn.layers import FullyConnectedLayer, param_dtype
from ganforge.nn.shapes import check_shape


class MappingNetwork(nn.Module):
    """z (and labels c) → w: a stack of fully connected layers (Karras et al. 2019), official StyleGAN2-ADA names.

    ```text
    x = normalize(z) ‖ normalize(embed(c))       # normalize(v) = v / sqrt(mean(v²) + 1e-8); ‖ = concat
    w = fc_{L-1}(… fc_0(x))                      # fc_i(v) = lrelu(W_i v + b_i) · √2, lr multiplier 0.01
    w_avg ← w_avg + (1 - β)(mean_N(w) - w_avg)   # training mode only; β = w_avg_beta
    w' = w_avg + ψ (w - w_avg)                   # truncation, ψ = truncation_psi
    ```

    Input: z [N, z_dim] (None when z_dim = 0) and c [N, c_dim] (None when c_dim = 0). Output: w [N, w_dim]
    when num_ws is None, else w repeated for each synthesis layer, [N, num_ws, w_dim].

    Example:
        ```python
        import torch
        from ganforge.nn import MappingNetwork

        mapping = MappingNetwork(z_dim=512, c_dim=0, w_dim=512, num_ws=None)
        w = mapping(torch.randn(4, 512))  # [4, 512]
        ```
    """

    w_avg: torch.Tensor  # Buffer (when num_ws and w_avg_beta are set).
    shape_args = ("z_dim", "c_dim")  # Constructor arguments that shape errors name the block by.

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
        c: torch.Tensor | None = None,  # [N, c_dim]; None when c_dim = 0.
        truncation_psi: float = 1.0,  # 1 = off; 0 = every w is w_avg.
        truncation_cutoff: int | None = None,  # Truncate only the first N ws; None = all.
        skip_w_avg_update: bool = False,
    ) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            if z is None:
                raise ValueError(f"this model takes latents (z_dim={self.z_dim}): pass z of shape [N, {self.z_dim}]")
            check_shape(self, "z", z, ("N", self.z_dim))
            x = ops.normalize_2nd_moment(z.to(param_dtype(self)))
        if self.c_dim > 0:
            if c is None:
                raise ValueError(
                    f"this model is conditional (c_dim={self.c_dim}): pass labels c of shape [N, {self.c_dim}]"
                )
            if z is not None and self.z_dim > 0:
                check_shape(self, "c", c, (z.shape[0], self.c_dim), note="one label vector per latent of z")
            else:
                check_shape(self, "c", c, ("N", self.c_dim))
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
        return self.truncate(x, truncation_psi, truncation_cutoff)

    def truncate(self, ws: torch.Tensor, truncation_psi: float, truncation_cutoff: int | None) -> torch.Tensor:
        """w_avg + ψ·(w − w_avg) for the first `truncation_cutoff` ws (all when None); ψ = 1 returns ws as is."""
        if truncation_psi == 1:
            return ws
        if truncation_cutoff is None:
            return self.w_avg.lerp(ws, truncation_psi)
        ws[:, :truncation_cutoff] = self.w_avg.lerp(ws[:, :truncation_cutoff], truncation_psi)
        return ws

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"
