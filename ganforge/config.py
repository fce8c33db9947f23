"""Presets: capacity (channels, latent sizes, mapping depth) and the official training settings.

Capacity presets follow the field's scaling table (G+D parameters at 1024×1024, skip G, resnet D):
config-f 59.38M, M 63.97M, L 69.75M, XL 106.11M, XXL 150.24M, XXXL 253.68M. The official
StyleGAN2-ADA `cfg_specs` (paper256, paper512, paper1024, cifar) carry their training settings.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPreset:
    cbase: int = 32768  # Channel base: C(r) = min(cbase // r, cmax).
    cmax: int = 512  # Channel cap.
    z_dim: int = 512  # Input latent size.
    w_dim: int = 512  # Intermediate latent size.
    mapping_layers: int = 8  # Mapping network depth.
    g_architecture: str = "skip"  # orig | skip | resnet.
    d_architecture: str = "resnet"  # orig | skip | resnet.
    num_fp16_res: int = 4  # Reduced-precision top resolutions (on GPUs).
    conv_clamp: float | None = 256  # Clamp conv outputs to ±X when fp16 is in use; None = off.
    mbstd_group: int = 4  # Minibatch-stddev group size.
    # Training defaults (official cfg_specs); used by the training loop.
    batch: int = 32  # Global batch size.
    gamma: float = 10.0  # R1 weight.
    ema_kimg: float = 10.0  # G EMA half-life in thousands of images.
    ema_rampup: float | None = None  # EMA ramp-up ratio; None = off.
    lr: float = 0.002  # Adam learning rate (G and D).
    pl_weight: float = 2.0  # Path-length regularization weight; 0 = off.
    style_mixing: float = 0.9  # Style-mixing probability; 0 = off.
    description: str = ""


PRESETS: dict[str, ModelPreset] = {
    # Capacity presets (the config-f column is the official `stylegan2` cfg).
    "config-f": ModelPreset(description="StyleGAN2 config-f (official 'stylegan2' cfg), 59.4M at 1024"),
    "M": ModelPreset(cbase=49152, description="1.5x config-f channels above 64 px, 64.0M at 1024"),
    "L": ModelPreset(cbase=65536, description="2x config-f channels above 64 px, 69.8M at 1024"),
    "XL": ModelPreset(cbase=81920, cmax=640, description="640 max channels, 106.1M at 1024"),
    "XXL": ModelPreset(cbase=98304, cmax=768, description="768 max channels, 150.2M at 1024"),
    "XXXL": ModelPreset(
        cbase=98304, cmax=1024, z_dim=1024, w_dim=1024, mapping_layers=6,
        description="1024 max channels, z/w 1024, 6 mapping layers, 253.7M at 1024",
    ),
    # Official StyleGAN2-ADA training configurations.
    "paper256": ModelPreset(cbase=16384, batch=64, gamma=1.0, ema_kimg=20.0, lr=0.0025, mbstd_group=8,
                            description="official paper256 (FFHQ/LSUN 256)"),
    "paper512": ModelPreset(batch=64, gamma=0.5, ema_kimg=20.0, lr=0.0025, mbstd_group=8,
                            description="official paper512 (BreCaHAD, AFHQ)"),
    "paper1024": ModelPreset(batch=32, gamma=2.0, ema_kimg=10.0, lr=0.002, mbstd_group=4,
                             description="official paper1024 (FFHQ, MetFaces)"),
    "cifar": ModelPreset(mapping_layers=2, d_architecture="orig", batch=64, gamma=0.01, ema_kimg=500.0,
                         ema_rampup=0.05, lr=0.0025, mbstd_group=32, pl_weight=0.0, style_mixing=0.0,
                         description="official cifar (32 px, conditional)"),
    # Small models for CPU demos and tests (32-64 px).
    "tiny": ModelPreset(cbase=2048, cmax=32, z_dim=64, w_dim=64, mapping_layers=2, num_fp16_res=0,
                        conv_clamp=None, batch=8, gamma=0.1, ema_kimg=1.0, ema_rampup=0.05, lr=0.002,
                        description="a small model for CPU demos and tests"),
}
