"""ADA: adaptive discriminator augmentation (Karras et al. 2020, "Training Generative Adversarial Networks
with Limited Data", Appendix B), written from the paper's description.

The pipeline is applied to every image D sees, reals and fakes alike, and is differentiable w.r.t. its
input (fakes carry G's gradient; R1 is taken through it). Each op fires per sample with probability
multiplier·p. Stages, each composed per sample and applied once:

  blit + geometric  one 3x3 matrix -> one warp    x-flip, 90° turns, integer translation; isotropic scale,
                                                  pre-rotation, anisotropic scale, post-rotation, fractional
                                                  translation
  color             one 4x4 matrix                brightness, contrast, luma flip, hue rotation, saturation
  filter            4-band gains                  amplify / attenuate frequency bands
  corruption        -                             additive noise, cutout

A sample on which no op of a stage fired passes that stage bit-exactly, so p = 0 is the exact identity.

Parity with the official `training/augment.py`: the same op order, parameter ranges, resampling (Symlet-6
2x up/down around a bilinear warp, reflect padding) and band filters (Symlet-2), and the same random draws in
the same order and shapes, one `torch.rand`/`torch.randn` per parameter and per gate. Seeded alike, both
pipelines give the same images to float32 rounding (tests/test_parity_augment.py); the only difference is that
official resamples or filters the whole batch, so samples it leaves untouched come back with float32 rounding
(a few 1e-6 at most); here they pass bit-exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ganforge.augment import image_ops
from ganforge.augment import transforms as T

BLIT = {"xflip": 1.0, "rotate90": 1.0, "xint": 1.0}
GEOM = {"scale": 1.0, "rotate": 1.0, "aniso": 1.0, "xfrac": 1.0}
COLOR = {"brightness": 1.0, "contrast": 1.0, "lumaflip": 1.0, "hue": 1.0, "saturation": 1.0}
FILTER = {"imgfilter": 1.0}
NOISE = {"noise": 1.0}
CUTOUT = {"cutout": 1.0}

# Official `--augpipe` names -> op multipliers (ops not listed are off).
PRESETS: dict[str, dict[str, float]] = {
    "blit": BLIT,
    "geom": GEOM,
    "color": COLOR,
    "filter": FILTER,
    "noise": NOISE,
    "cutout": CUTOUT,
    "bg": {**BLIT, **GEOM},
    "bgc": {**BLIT, **GEOM, **COLOR},
    "bgcf": {**BLIT, **GEOM, **COLOR, **FILTER},
    "bgcfn": {**BLIT, **GEOM, **COLOR, **FILTER, **NOISE},
    "bgcfnc": {**BLIT, **GEOM, **COLOR, **FILTER, **NOISE, **CUTOUT},
}


class _Gates:
    """Per-sample firing: op fires on sample n with probability `prob`; remembers which samples any op touched."""

    def __init__(self, n: int, device: torch.device):
        self.n, self.device = n, device
        self.fired = torch.zeros(n, dtype=torch.bool, device=device)

    def __call__(self, prob: torch.Tensor, value: torch.Tensor, neutral: float) -> torch.Tensor:
        """value where the op fires, else `neutral`; value [N, ...]. Draws U(0, 1) shaped [N, 1, ...] (after the
        value: the official order), so the whole pipeline consumes the random stream as the official one does."""
        fire = torch.rand([self.n] + [1] * (value.ndim - 1), device=self.device) < prob
        self.fired |= fire.reshape(self.n)
        return torch.where(fire, value, torch.full_like(value, neutral))

    def select(self, augmented: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        """Augmented samples where an op fired, the original (bit-exact) elsewhere."""
        return torch.where(self.fired[:, None, None, None], augmented, original)


def lognormal2(shape: list[int], std: float, device: torch.device) -> torch.Tensor:
    """s = 2^(std·z), z ~ N(0, 1): a log2-normal factor with median 1."""
    return torch.exp2(torch.randn(shape, device=device) * std)


def uniform(shape: list[int], half_range: float, device: torch.device) -> torch.Tensor:
    """U(−half_range, half_range)."""
    return (torch.rand(shape, device=device) * 2 - 1) * half_range


def uniform_int(shape: list[int], count: int, device: torch.device) -> torch.Tensor:
    """floor(U(0, 1)·count): an integer in {0, ..., count − 1}, as a float (one U(0, 1) draw, as official)."""
    return torch.floor(torch.rand(shape, device=device) * count)


def rotation_prob(p: torch.Tensor) -> torch.Tensor:
    """p_rot = 1 − sqrt(1 − p): pre- and post-rotation each fire with p_rot, so P(any rotation) = p."""
    return 1 - torch.sqrt((1 - p).clamp(0, 1))


class AugmentPipe(nn.Module):
    p: torch.Tensor  # Buffer [], set by register_buffer.

    def __init__(
        self,
        p: float = 0.0,  # Augmentation probability; multiplier·p per op and sample (may exceed 1).
        # Op multipliers (≤ 0 = off). Presets: AugmentPipe.from_preset('bgc').
        xflip: float = 0,  # Horizontal flip.
        rotate90: float = 0,  # Rotation by a multiple of 90°.
        xint: float = 0,  # Integer translation.
        scale: float = 0,  # Isotropic scaling.
        rotate: float = 0,  # Arbitrary rotation (applied as a pre- and a post-rotation).
        aniso: float = 0,  # Anisotropic scaling.
        xfrac: float = 0,  # Fractional translation.
        brightness: float = 0,  # Additive brightness.
        contrast: float = 0,  # Multiplicative contrast.
        lumaflip: float = 0,  # Luma flip (inverts the gray axis).
        hue: float = 0,  # Hue rotation about the gray axis.
        saturation: float = 0,  # Saturation scaling.
        imgfilter: float = 0,  # Frequency-band amplification.
        noise: float = 0,  # Additive Gaussian noise.
        cutout: float = 0,  # Zeroed rectangle.
        # Strengths (official defaults).
        xint_max: float = 0.125,  # Integer translation range, fraction of the image size.
        scale_std: float = 0.2,  # Log2 std of isotropic scaling.
        rotate_max: float = 1.0,  # Rotation range, fraction of a full turn (±rotate_max·π).
        aniso_std: float = 0.2,  # Log2 std of anisotropic scaling.
        xfrac_std: float = 0.125,  # Std of fractional translation, fraction of the image size.
        brightness_std: float = 0.2,  # Std of additive brightness (image units, images in [-1, 1]).
        contrast_std: float = 0.5,  # Log2 std of contrast.
        hue_max: float = 1.0,  # Hue rotation range, fraction of a full turn.
        saturation_std: float = 1.0,  # Log2 std of saturation.
        imgfilter_std: float = 1.0,  # Log2 std of band amplification.
        imgfilter_bands: tuple[float, ...] = (1, 1, 1, 1),  # Per-band multipliers (low to high frequency).
        noise_std: float = 0.1,  # Std of the noise level σ_n (half-normal).
        cutout_size: float = 0.5,  # Cutout side, fraction of the image size.
    ):
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)))  # [] lives in state_dict / checkpoints.
        self.mult = dict(
            xflip=xflip,
            rotate90=rotate90,
            xint=xint,
            scale=scale,
            rotate=rotate,
            aniso=aniso,
            xfrac=xfrac,
            brightness=brightness,
            contrast=contrast,
            lumaflip=lumaflip,
            hue=hue,
            saturation=saturation,
            imgfilter=imgfilter,
            noise=noise,
            cutout=cutout,
        )
        self.xint_max, self.scale_std, self.rotate_max = xint_max, scale_std, rotate_max
        self.aniso_std, self.xfrac_std = aniso_std, xfrac_std
        self.brightness_std, self.contrast_std, self.hue_max = brightness_std, contrast_std, hue_max
        self.saturation_std, self.imgfilter_std = saturation_std, imgfilter_std
        self.imgfilter_bands = tuple(float(b) for b in imgfilter_bands)
        if len(self.imgfilter_bands) != 4:
            raise ValueError(f"imgfilter_bands needs 4 multipliers (one per band), got {len(self.imgfilter_bands)}")
        self.noise_std, self.cutout_size = noise_std, cutout_size

    @classmethod
    def from_preset(cls, name: str = "bgc", p: float = 0.0, **overrides: Any) -> AugmentPipe:
        """Official `--augpipe` name ('blit', 'geom', 'color', 'filter', 'noise', 'cutout', 'bg', 'bgc', ...)."""
        if name not in PRESETS:
            raise ValueError(f"unknown augment pipe {name!r}; choose one of {', '.join(PRESETS)}")
        kwargs: dict[str, Any] = {**PRESETS[name], **overrides}
        return cls(p=p, **kwargs)

    def _on(self, *ops: str) -> bool:
        return any(self.mult[op] > 0 for op in ops)

    def _prob(self, op: str) -> torch.Tensor:
        return self.p * self.mult[op]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # [N, C, H, W] float, ~[-1, 1] -> [N, C, H, W], same dtype.
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(
                f"AugmentPipe expects float images [N, C, H, W], got {images.dtype} "
                f"{list(images.shape)}; convert uint8 data to float in [-1, 1] first"
            )
        if self._on(*COLOR) and images.shape[1] not in (1, 3):
            raise ValueError(
                f"color augmentation needs 1 or 3 channels, got {images.shape[1]}; "
                f"use a pipe without color ops (e.g. 'bg') for {images.shape[1]}-channel images"
            )
        work = torch.promote_types(images.dtype, torch.float32)  # fp16/bf16 in -> fp32 math, exact round trip.
        x = images.to(work)
        x = self._geometric(x)
        x = self._color(x)
        x = self._filter(x)
        x = self._corrupt(x)
        return x.to(images.dtype)

    # ------------------------------------------------------------------------
    # Stages.

    def _geometric(self, x: torch.Tensor) -> torch.Tensor:
        """Blit and geometric ops as one sampling matrix G (output -> input pixels), one warp.

        Each op contributes the inverse of its forward transform, right-multiplied: G = M₁⁻¹·M₂⁻¹·…
        """
        if not self._on(*BLIT, *GEOM):
            return x
        n, _, h, w = x.shape
        dev = x.device
        gate = _Gates(n, dev)
        g = T.identity(n, 3, dev)

        # Pixel blitting.
        if self._on("xflip"):
            i = gate(self._prob("xflip"), uniform_int([n], 2, dev), 0)
            g = g @ T.scale2d(1 - 2 * i, torch.ones_like(i))
        if self._on("rotate90"):
            i = gate(self._prob("rotate90"), uniform_int([n], 4, dev), 0)
            g = g @ T.rotate2d(math.pi / 2 * i)  # Inverse of a turn by −90°·i.
        if self._on("xint"):
            t = gate(self._prob("xint"), uniform([n, 2], self.xint_max, dev), 0)
            g = g @ T.translate2d(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h))

        # General geometric transformations.
        if self._on("scale"):
            s = gate(self._prob("scale"), lognormal2([n], self.scale_std, dev), 1)
            g = g @ T.scale2d(1 / s, 1 / s)
        p_rot = rotation_prob(self._prob("rotate"))
        if self._on("rotate"):  # Pre-rotation, before the anisotropic scaling.
            g = g @ T.rotate2d(gate(p_rot, uniform([n], math.pi * self.rotate_max, dev), 0))
        if self._on("aniso"):
            s = gate(self._prob("aniso"), lognormal2([n], self.aniso_std, dev), 1)
            g = g @ T.scale2d(1 / s, 1 / (1 / s))  # Inverse of diag(s, 1/s), each entry rounded as official.
        if self._on("rotate"):  # Post-rotation.
            g = g @ T.rotate2d(gate(p_rot, uniform([n], math.pi * self.rotate_max, dev), 0))
        if self._on("xfrac"):
            t = gate(self._prob("xfrac"), torch.randn([n, 2], device=dev) * self.xfrac_std, 0)
            g = g @ T.translate2d(-t[:, 0] * w, -t[:, 1] * h)

        return gate.select(image_ops.warp(x, g), x)

    def _color(self, x: torch.Tensor) -> torch.Tensor:
        """Color ops as one 4x4 matrix C on [r, g, b, 1], composed left to right: C ← C_op · C.

        Hue and saturation leave a gray image unchanged: on 1-channel images they are skipped (no draws).
        """
        if not self._on(*COLOR):
            return x
        n, dev = x.shape[0], x.device
        rgb = x.shape[1] > 1
        gate = _Gates(n, dev)
        c = T.identity(n, 4, dev)
        if self._on("brightness"):
            c = T.translate3d(gate(self._prob("brightness"), torch.randn([n], device=dev) * self.brightness_std, 0)) @ c
        if self._on("contrast"):
            c = T.scale3d(gate(self._prob("contrast"), lognormal2([n], self.contrast_std, dev), 1)) @ c
        if self._on("lumaflip"):
            i = gate(self._prob("lumaflip"), uniform_int([n, 1, 1], 2, dev), 0)
            c = T.luma_flip(i.reshape(n)) @ c
        if self._on("hue") and rgb:
            c = T.rotate_hue(gate(self._prob("hue"), uniform([n], math.pi * self.hue_max, dev), 0)) @ c
        if self._on("saturation") and rgb:
            s = gate(self._prob("saturation"), lognormal2([n, 1, 1], self.saturation_std, dev), 1)
            c = T.saturate(s.reshape(n)) @ c
        return gate.select(image_ops.apply_color(x, c), x)

    def _filter(self, x: torch.Tensor) -> torch.Tensor:
        """Each band in turn: amplify it by a log2-normal factor (if the op fires), renormalize the energy."""
        if not self._on("imgfilter"):
            return x
        n, dev = x.shape[0], x.device
        gate = _Gates(n, dev)
        gains = torch.ones([n, 4], device=dev)
        for band, band_mult in enumerate(self.imgfilter_bands):
            amplify = torch.ones([n, 4], device=dev)
            prob = self._prob("imgfilter") * band_mult
            amplify[:, band] = gate(prob, lognormal2([n], self.imgfilter_std, dev), 1)
            gains = gains * image_ops.band_gains(amplify)
        return gate.select(image_ops.band_filter(x, gains), x)

    def _corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """Additive noise with a half-normal level σ_n, then cutout."""
        n, dev = x.shape[0], x.device
        if self._on("noise"):
            gate = _Gates(n, dev)
            sigma = gate(self._prob("noise"), torch.randn([n, 1, 1, 1], device=dev).abs() * self.noise_std, 0)
            x = gate.select(image_ops.add_noise(x, sigma), x)
        if self._on("cutout"):
            gate = _Gates(n, dev)
            size = gate(self._prob("cutout"), torch.full([n, 1, 1, 1, 1], self.cutout_size, device=dev), 0)
            centre = torch.rand([n, 2, 1, 1, 1], device=dev)
            x = gate.select(image_ops.cutout(x, centre, size.reshape(n)), x)
        return x

    def extra_repr(self) -> str:
        ops = ", ".join(f"{k}={v:g}" for k, v in self.mult.items() if v != 0) or "no ops"
        return f"p={float(self.p):g}, {ops}"
