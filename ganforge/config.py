"""Model presets: capacity only (channels, latent sizes, mapping depth, architectures, precision blocks).

Capacity presets follow the field's scaling table (G+D parameters at 1024×1024, skip G, resnet D):
config-f 59.38M, M 63.97M, L 69.75M, XL 106.11M, XXL 150.24M, XXXL 253.68M. The official StyleGAN2-ADA
configurations (paper256, paper512, paper1024, cifar) have their capacity here under the same names, and
`auto` follows the official `--cfg=auto`: half the config-f channels below 512 px, a 2-layer mapping.
Training settings (batch, learning rate, γ, EMA) are recipes: see `ganforge.training.recipes`.
"""

from __future__ import annotations

import dataclasses
import math
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
    num_fp16_res: int = 4  # Reduced-precision top resolutions.
    conv_clamp: float | None = 256  # Clamp conv outputs to ±X; None = off.
    mbstd_group: int = 4  # Minibatch-stddev group size.
    description: str = ""


MODEL_PRESETS: dict[str, ModelPreset] = {
    "auto": ModelPreset(
        mapping_layers=2, description="official --cfg=auto: config-f channels from 512 px, half below; 2 mapping layers"
    ),
    "config-f": ModelPreset(description="StyleGAN2 config-f (official 'stylegan2' cfg), 59.4M at 1024"),
    "stylegan2": ModelPreset(description="the official 'stylegan2' cfg: config-f"),
    "M": ModelPreset(cbase=49152, description="1.5x config-f channels above 64 px, 64.0M at 1024"),
    "L": ModelPreset(cbase=65536, description="2x config-f channels above 64 px, 69.8M at 1024"),
    "XL": ModelPreset(cbase=81920, cmax=640, description="640 max channels, 106.1M at 1024"),
    "XXL": ModelPreset(cbase=98304, cmax=768, description="768 max channels, 150.2M at 1024"),
    "XXXL": ModelPreset(
        cbase=98304,
        cmax=1024,
        z_dim=1024,
        w_dim=1024,
        mapping_layers=6,
        description="1024 max channels, z/w 1024, 6 mapping layers, 253.7M at 1024",
    ),
    "paper256": ModelPreset(cbase=16384, mbstd_group=8, description="official paper256 (half config-f channels)"),
    "paper512": ModelPreset(mbstd_group=8, description="official paper512"),
    "paper1024": ModelPreset(description="official paper1024"),
    "cifar": ModelPreset(mapping_layers=2, d_architecture="orig", mbstd_group=32, description="official cifar"),
    "tiny": ModelPreset(
        cbase=2048,
        cmax=32,
        z_dim=64,
        w_dim=64,
        mapping_layers=2,
        num_fp16_res=0,
        conv_clamp=None,
        description="a small model for CPU demos and tests",
    ),
}
MODEL_PRESETS["demo"] = dataclasses.replace(  # Its own name, so that its recipe can change without touching tiny.
    MODEL_PRESETS["tiny"], description="the model of `ganforge demo` (32-px shapes on a CPU)"
)
PRESETS = MODEL_PRESETS  # The name the inspector and older code use.


def effective_resolution(height: int, width: int) -> float:
    """The square size with the same pixel count: how non-square sizes enter the official formulas."""
    return math.sqrt(height * width)


def model_preset(name: str, height: int, width: int) -> ModelPreset:
    """The capacity of preset `name` at a size; only `auto` depends on the size (cbase halves below 512 px)."""
    preset = MODEL_PRESETS[name]
    if name == "auto":
        cbase = 32768 if effective_resolution(height, width) >= 512 else 16384
        return dataclasses.replace(preset, cbase=cbase)
    return preset
