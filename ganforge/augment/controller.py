"""The adaptive augmentation probability p of ADA (Karras et al. 2020, Section 3).

The overfitting heuristic r_t = E[sign(D(real))] is measured over `interval` training iterations, from every
pass of D over real images (D main and R1, every accumulation round, every rank), as the official loss reports
`Loss/signs/real` from both; p then moves by a fixed amount towards the target:

  p ← max(p + sign(r_t − target) · n_img / (speed_kimg · 1000), 0)

where n_img is the number of images the interval trained on (batch · interval), so p can go from 0 to 1 in
`speed_kimg` thousand images. As in the official code there is no upper clamp (p > 1
happens on tiny datasets) unless `max_p` is given.
"""

from __future__ import annotations

import math

import torch

from ganforge.augment.ada import AugmentPipe
from ganforge.distributed import sum_over_ranks


def overfit_heuristic(sign_sum: float, count: float) -> float:
    """r_t = E[sign(D(real))] = Σ sign(D(x)) / n; 0 = no overfitting, 1 = D separates every real."""
    return sign_sum / count


def p_adjustment(r_t: float, target: float, nimg: float, speed_kimg: float) -> float:
    """Δp = sign(r_t − target) · n_img / (speed_kimg · 1000)."""
    return math.copysign(1.0, r_t - target) * nimg / (speed_kimg * 1000) if r_t != target else 0.0


class AdaController:
    """Adjusts `pipe.p` from D's outputs on reals: `accumulate(real_logits)` after every D pass over reals,
    `step(batch)` after every training iteration."""

    def __init__(
        self,
        pipe: AugmentPipe,  # The pipe whose `p` buffer is driven.
        target: float = 0.6,  # Target r_t = E[sign(D(real))]; a higher target allows more overfitting.
        speed_kimg: float = 500.0,  # Thousands of images for p to move by 1 (official: 100 when resuming).
        interval: int = 4,  # Training iterations between adjustments (official ada_interval).
        max_p: float | None = None,  # Upper clamp of p; None = no clamp (official).
        adaptive: bool = True,  # False = fixed p ('--aug fixed'): r_t is still measured and reported.
    ):
        if not 0 <= target <= 1:
            raise ValueError(f"target={target} must lie in [0, 1] (it is a mean of signs); the paper uses 0.6")
        if speed_kimg <= 0:
            raise ValueError(f"speed_kimg={speed_kimg} must be > 0; the official value is 500 (100 when resuming)")
        if interval < 1:
            raise ValueError(f"interval={interval} must be ≥ 1 iteration; the official value is 4")
        if max_p is not None and max_p < 0:
            raise ValueError(f"max_p={max_p} must be ≥ 0, or None for no upper clamp")
        self.pipe = pipe
        self.target, self.speed_kimg, self.interval = target, speed_kimg, interval
        self.max_p, self.adaptive = max_p, adaptive
        self._acc: torch.Tensor | None = None  # [Σ sign, count] on the logits' device: no sync per step.
        self.steps = 0  # Training iterations since the start of training.
        self.nimg = 0  # Images trained on since the last adjustment.
        self.rt = math.nan  # r_t of the last completed interval; NaN before the first.

    @property
    def p(self) -> float:
        return float(self.pipe.p)

    @torch.no_grad()
    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Adds sign(D(real)) of one pass of D over real images (no CPU-GPU sync)."""
        logits = real_logits.detach().float()
        stats = torch.stack([logits.sign().sum(), torch.tensor(float(logits.numel()), device=logits.device)])
        self._acc = stats if self._acc is None else self._acc + stats.to(self._acc.device)

    def step(self, batch: int) -> None:
        """One training iteration over `batch` images (all processes) is done; every `interval` iterations p is
        adjusted (a CPU-GPU sync)."""
        self.steps += 1
        self.nimg += batch
        if self.steps % self.interval == 0:
            self._update()

    def _update(self) -> None:
        acc = self._acc if self._acc is not None else torch.zeros(2, device=self.pipe.p.device)
        sign_sum, count = sum_over_ranks(acc).tolist()
        nimg, self._acc, self.nimg = self.nimg, None, 0
        if count == 0 or not math.isfinite(sign_sum):
            return  # Nothing measured, or non-finite logits (the divergence guard handles those): keep p.
        self.rt = overfit_heuristic(sign_sum, count)
        if self.adaptive:
            p = max(self.p + p_adjustment(self.rt, self.target, nimg, self.speed_kimg), 0.0)
            if self.max_p is not None:
                p = min(p, self.max_p)
            self.pipe.p.fill_(p)

    def stats(self) -> dict[str, float]:
        """{'Augment/p': p, 'Augment/rt': r_t of the last interval (NaN before the first)}."""
        return {"Augment/p": self.p, "Augment/rt": self.rt}

    def state_dict(self) -> dict[str, float | int | None]:
        """Plain JSON-able state (checkpoint metadata). The partial interval is this rank's sums only."""
        sign_sum, count = (0.0, 0.0) if self._acc is None else self._acc.tolist()
        return {
            "p": self.p,
            "sign_sum": sign_sum,
            "count": count,
            "steps": self.steps,
            "nimg": self.nimg,
            "rt": None if math.isnan(self.rt) else self.rt,
        }

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"AdaController state is a {type(state).__name__}, not a dict")
        missing = {"p", "sign_sum", "count", "steps"} - set(state)
        if missing:
            raise ValueError(f"AdaController state lacks {sorted(missing)}; pass the dict from state_dict()")
        p = float(state["p"])
        if not 0 <= p <= 1:  # Also refuses NaN.
            raise ValueError(f"AdaController state has p={p}, outside 0..1")
        self.pipe.p.fill_(p)
        self.steps = int(state["steps"])
        self.nimg = int(state.get("nimg", 0))
        self.rt = math.nan if state.get("rt") is None else float(state["rt"])
        has_partial = float(state["count"]) > 0
        self._acc = (
            torch.tensor([float(state["sign_sum"]), float(state["count"])], device=self.pipe.p.device)
            if has_partial
            else None
        )

    def __repr__(self) -> str:
        mode = "adaptive" if self.adaptive else "fixed"
        return (
            f"AdaController({mode}, p={self.p:g}, target={self.target}, speed_kimg={self.speed_kimg}, "
            f"interval={self.interval}, max_p={self.max_p})"
        )
