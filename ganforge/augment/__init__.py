"""Augmentation of everything D sees: ADA (adaptive or fixed p) and DiffAugment.

pipe, controller = build_augment("ada", pipe="bgc")      # loss: D(pipe(img)); loop: controller.accumulate(logits)
pipe, controller = build_augment("fixed", p=0.2)         # constant p; controller only measures r_t
pipe, _ = build_augment("diffaugment", policy="color,translation,cutout")
"""

from __future__ import annotations

from torch import nn

from ganforge.augment.ada import PRESETS, AugmentPipe
from ganforge.augment.controller import AdaController
from ganforge.augment.diffaugment import DiffAugment

KINDS = ("ada", "fixed", "diffaugment", "none")

__all__ = ["KINDS", "PRESETS", "AdaController", "AugmentPipe", "DiffAugment", "build_augment"]


def build_augment(
    kind: str = "ada",  # 'ada' (adaptive p), 'fixed' (constant p), 'diffaugment', 'none' (alias 'noaug').
    pipe: str = "bgc",  # ADA preset (official --augpipe name); 'ada' and 'fixed' only.
    p: float = 0.0,  # Initial p ('ada') or the constant p ('fixed').
    policy: str = "color,translation,cutout",  # DiffAugment ops; 'diffaugment' only.
    target: float = 0.6,  # ADA target for E[sign(D(real))].
    speed_kimg: float = 500.0,  # kimg for p to move by 1 (official: 100 when resuming).
    interval: int = 4,  # D steps between p adjustments.
    max_p: float | None = None,  # Upper clamp of p; None = none (official).
) -> tuple[nn.Module | None, AdaController | None]:
    """(augment module or None, controller or None). 'fixed' returns a controller that only measures r_t."""
    if kind in ("none", "noaug"):
        return None, None
    if kind == "diffaugment":
        return DiffAugment(policy), None
    if kind in ("ada", "fixed"):
        aug = AugmentPipe.from_preset(pipe, p=p)
        ctrl = AdaController(
            aug, target=target, speed_kimg=speed_kimg, interval=interval, max_p=max_p, adaptive=kind == "ada"
        )
        return aug, ctrl
    raise ValueError(f"unknown augmentation kind {kind!r}; choose one of {', '.join(KINDS)} (or 'noaug')")
