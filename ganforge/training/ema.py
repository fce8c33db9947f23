"""Exponential moving average of the generator weights (G_ema), as official StyleGAN2-ADA."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch: int, cur_nimg: int, ema_kimg: float, rampup: float | None) -> float:
    """β = 0.5 ** (batch / ema_nimg), ema_nimg = ema_kimg·1000, capped at cur_nimg·rampup while ramping up."""
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema ← model + β·(ema − model) for parameters; buffers (noise_const, w_avg) are copied, not averaged."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b.detach())
