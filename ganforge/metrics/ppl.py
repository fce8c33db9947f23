"""Perceptual path length (ppl_zfull, ppl_wfull, ppl_zend, ppl_wend).

Paper: Karras et al., "A Style-Based Generator Architecture for Generative Adversarial Networks", CVPR 2019
(arXiv:1812.04948), section 4.1. Reference implementation matched: NVlabs/stylegan2-ada-pytorch
`metrics/perceptual_path_length.py` with the `ppl_*` entries of `metrics/metric_main.py`:

    PPL = E[ d(g(l(a, b; t)), g(l(a, b; t + ε))) / ε² ]

over 50,000 samples, ε = 1e-4, l = slerp between two normalized z (space 'z') or lerp between their w (space 'w'),
t ~ U[0, 1) ('full') or t = 0 ('end'); g = synthesis with constant noise (drawn afresh per sample, the same at both
ends of the step) in float32; the face region cropped (rows 3/8..7/8, columns 2/8..6/8), images larger than 256
averaged down to 256 in factor×factor blocks, d = squared L2 between the LPIPS features of the StyleGAN2-ADA VGG16
(`vgg16.pt(img, resize_images=False, return_lpips=True)`, img in 0..255 float). The mean is taken over the
distances between the 1st percentile (rounded down) and the 99th (rounded up).

Sampling, by design: every sample's draws (t, both ends, noise) come from its own generator keyed by (seed, k), so
sample k is the same whatever the batch size or the number of ranks; the official loop draws from the global RNG
and shares one noise draw between the two samples of each batch. The distances are the same function of the draws
(tests/test_metrics_ppl.py replays the official draws through `path_distances`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import torch

from ganforge.metrics.features import (
    BatchFitter,
    MetricError,
    MetricOptions,
    detector_bytes_per_image,
    extract,
    fake_labels,
    fit_batch,
    generator_bytes_per_image,
)
from ganforge.metrics.registry import REAL_DATA_FREE, gen_count, register_metric, restrict_families
from ganforge.models import Generator, StyleGAN3Generator

EPSILON = 1e-4  # Step along the path (official).
LPIPS_RESOLUTION = 256  # Larger images are block-averaged down to this side before the VGG16 features.
NUM_SAMPLES = 50_000
STYLEGAN_FAMILIES = ("stylegan2", "stylegan3-t", "stylegan3-r")
NEEDS_WHY = "interpolates latents through the mapping and synthesis networks, which only StyleGAN generators have"
StyleGAN: TypeAlias = Generator | StyleGAN3Generator


@dataclass(frozen=True)
class PathDraws:
    """The random draws of N path samples."""

    t: torch.Tensor  # [N] position on the path: U[0, 1) ('full') or 0 ('end').
    z0: torch.Tensor  # [N, z_dim] one end of the path.
    z1: torch.Tensor  # [N, z_dim] the other end.
    noise: dict[str, torch.Tensor]  # Noise buffer name -> [N, H, W], each sample's constant noise; {} = none.

    def to(self, device: str | torch.device) -> PathDraws:
        noise = {name: x.to(device) for name, x in self.noise.items()}
        return PathDraws(self.t.to(device), self.z0.to(device), self.z1.to(device), noise)


# ----------------------------------------------------------------------------------------------------------------
# Math.


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the directions of a and b ([N, D]) by t ([N, 1]), as a unit vector:
    â cos(tθ) + ĉ sin(tθ) with θ = acos(â·b̂) and ĉ the unit part of b̂ orthogonal to â."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    cos_theta = (a * b).sum(dim=-1, keepdim=True)
    angle = t * torch.acos(cos_theta)
    ortho = b - cos_theta * a
    ortho = ortho / ortho.norm(dim=-1, keepdim=True)
    out = a * torch.cos(angle) + ortho * torch.sin(angle)
    return out / out.norm(dim=-1, keepdim=True)


def face_crop(img: torch.Tensor) -> torch.Tensor:
    """[N, C, S, S] -> [N, C, S/2, S/2]: rows 3/8..7/8 and columns 2/8..6/8 (in units of S // 8), as official."""
    c = img.shape[2] // 8
    return img[:, :, c * 3 : c * 7, c * 2 : c * 6]


def block_average(img: torch.Tensor, factor: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, H/factor, W/factor]: the mean of each factor×factor block (factor ≤ 1 = as is)."""
    if factor <= 1:
        return img
    n, c, h, w = img.shape
    return img.reshape(n, c, h // factor, factor, w // factor, factor).mean(dim=[3, 5])


def filtered_mean(dist: np.ndarray) -> float:
    """The mean of the distances between the 1st percentile (lower value) and the 99th (higher value)."""
    lo = np.percentile(dist, 1, method="lower")
    hi = np.percentile(dist, 99, method="higher")
    return float(dist[(dist >= lo) & (dist <= hi)].mean())


# ----------------------------------------------------------------------------------------------------------------
# Path samples.


def noise_buffers(G: StyleGAN) -> dict[str, torch.Tensor]:
    """G's constant-noise buffers by name (StyleGAN2: one per synthesis layer; StyleGAN3: none)."""
    return {name: buf for name, buf in G.named_buffers() if name.endswith(".noise_const")}


def path_draws(G: StyleGAN, seed: int, items: range) -> PathDraws:
    """Draws of samples `items`: sample k's t, z0, z1 and noise from torch.Generator seeded (seed·2^20 + k), on the
    CPU (the same numbers on every device). 'end' sampling ignores t."""
    shapes = {name: buf.shape for name, buf in noise_buffers(G).items()}
    ts, z0s, z1s, noises = [], [], [], []
    for k in items:
        gen = torch.Generator().manual_seed((seed << 20) + k)
        ts.append(torch.rand([], generator=gen))
        z0s.append(torch.randn([G.z_dim], generator=gen))
        z1s.append(torch.randn([G.z_dim], generator=gen))
        noises.append({name: torch.randn(list(shape), generator=gen) for name, shape in shapes.items()})
    z_dim = int(G.z_dim)
    return PathDraws(
        t=torch.stack(ts) if ts else torch.zeros([0]),
        z0=torch.stack(z0s) if z0s else torch.zeros([0, z_dim]),
        z1=torch.stack(z1s) if z1s else torch.zeros([0, z_dim]),
        noise={name: torch.stack([n[name] for n in noises]) for name in shapes} if noises else {},
    )


@contextlib.contextmanager
def per_image_noise(G: torch.nn.Module, noise: dict[str, torch.Tensor]) -> Iterator[None]:
    """Run G with noise buffer `name` set to noise[name] ([B, 1, H, W], one per image; the layers add it to their
    [B, C, H, W] output by broadcasting), then put the buffers back."""
    modules = dict(G.named_modules())
    saved = {}
    try:
        for name, value in noise.items():
            owner, _, attr = name.rpartition(".")
            module = modules[owner]
            saved[name] = (module, attr, getattr(module, attr))
            setattr(module, attr, value)
        yield
    finally:
        for module, attr, value in saved.values():
            setattr(module, attr, value)


def path_distances(
    G: StyleGAN,  # StyleGAN2 or StyleGAN3 generator (mapping, synthesis).
    lpips: Callable[[torch.Tensor], torch.Tensor],  # Float NCHW 0..255 RGB => [N, F] LPIPS features.
    draws: PathDraws,  # N samples, on G's device.
    c: torch.Tensor | None,  # [N, c_dim] labels; None = unconditional.
    space: str,  # 'z' (slerp) or 'w' (lerp).
    sampling: str,  # 'full' (t as drawn) or 'end' (t = 0).
    crop: bool,  # Crop the face region first (official for the named metrics).
    epsilon: float = EPSILON,
    truncation_psi: float = 1.0,
) -> torch.Tensor:
    """[N] float32 perceptual distances of each sample's step (t, t + ε), divided by ε²."""
    n = len(draws.t)
    t = draws.t * (1 if sampling == "full" else 0)
    cc = None if c is None else torch.cat([c, c])
    mapping = lambda z, labels: G.mapping(z, labels, truncation_psi=truncation_psi)

    # Both ends of the step in W.
    if space == "w":
        w0, w1 = mapping(torch.cat([draws.z0, draws.z1]), cc).chunk(2)
        wt0 = w0.lerp(w1, t[:, None, None])
        wt1 = w0.lerp(w1, t[:, None, None] + epsilon)
    else:
        zt0 = slerp(draws.z0, draws.z1, t[:, None])
        zt1 = slerp(draws.z0, draws.z1, t[:, None] + epsilon)
        wt0, wt1 = mapping(torch.cat([zt0, zt1]), cc).chunk(2)

    # Images, each pair with its sample's noise.
    noise = {name: torch.cat([x, x])[:, None] for name, x in draws.noise.items()}  # [2N, 1, H, W]
    with per_image_noise(G, noise):
        img = G.synthesis(torch.cat([wt0, wt1]), noise_mode="const", force_fp32=True)

    # Face crop, at most 256 px, 0..255.
    if crop:
        img = face_crop(img)
    img = block_average(img, int(G.img_resolution) // LPIPS_RESOLUTION)
    img = (img + 1) * (255 / 2)

    # Squared LPIPS distance per unit step².
    f0, f1 = lpips(img).chunk(2)
    dist = (f0 - f1).square().sum(dim=1) / epsilon**2
    assert dist.shape == (n,)
    return dist


# ----------------------------------------------------------------------------------------------------------------
# The metrics.


def generator_and_psi(opts: MetricOptions) -> tuple[torch.nn.Module, float]:
    """(opts.G, its truncation ψ): a `--truncation` wrapper is opened (its ψ then applies to the mapping)."""
    from ganforge.metrics.compare import Truncated

    G = opts.generator()
    return (G.G, float(G.psi)) if isinstance(G, Truncated) else (G, 1.0)


def family_of(G: torch.nn.Module) -> str:
    plan = getattr(G, "plan", None)
    return str(getattr(plan, "family", type(G).__name__))


def compute_ppl(opts: MetricOptions, metric: str, space: str, sampling: str, crop: bool) -> float:
    """The PPL of opts.G over gen_count(opts, 50,000) samples, each rank computing its share."""
    G, psi = generator_and_psi(opts)
    if not isinstance(G, (Generator, StyleGAN3Generator)):
        raise MetricError(f"{metric} {NEEDS_WHY}, and this generator is {family_of(G)}: drop {metric}")
    return ppl_of(G, psi, opts, metric, space, sampling, crop)


def ppl_of(G: StyleGAN, psi: float, opts: MetricOptions, metric: str, space: str, sampling: str, crop: bool) -> float:
    """Path distances of this rank's samples in fitted batches, gathered over ranks, then the filtered mean."""
    from ganforge.distributed import rank_share, rank_world

    if crop and G.img_shape[1] != G.img_shape[2]:
        raise MetricError(
            f"{metric} crops the face region of square images, but this generator makes "
            f"{G.img_shape[1]}x{G.img_shape[2]} images: drop {metric}"
        )
    G.to(opts.device)
    n = gen_count(opts, NUM_SAMPLES)
    vgg = opts.detector("vgg16")
    share = rank_share(n, *rank_world())
    labels = fake_labels(opts, n, int(G.c_dim))
    per_sample = 2 * (detector_bytes_per_image(vgg) + generator_bytes_per_image(G))
    fitter = BatchFitter(fit_batch(opts, per_sample), opts.device)

    def distances(start: int, stop: int) -> torch.Tensor:
        items = range(share.start + start, share.start + stop)
        draws = path_draws(G, opts.seed, items).to(opts.device)
        c = None if labels is None else labels[items.start : items.stop].to(opts.device)
        return path_distances(G, vgg.features, draws, c, space, sampling, crop, truncation_psi=psi)[:, None]

    dist = extract(distances, len(share), n, f"{metric} on {n} path samples", opts, fitter)
    return filtered_mean(dist[:, 0])


for _name in ("ppl_zfull", "ppl_wfull", "ppl_zend", "ppl_wend"):
    restrict_families(_name, STYLEGAN_FAMILIES, NEEDS_WHY)
    REAL_DATA_FREE.add(_name)


@register_metric
def ppl_zfull(opts: MetricOptions) -> dict[str, float]:
    return {"ppl_zfull": compute_ppl(opts, "ppl_zfull", space="z", sampling="full", crop=True)}


@register_metric
def ppl_wfull(opts: MetricOptions) -> dict[str, float]:
    return {"ppl_wfull": compute_ppl(opts, "ppl_wfull", space="w", sampling="full", crop=True)}


@register_metric
def ppl_zend(opts: MetricOptions) -> dict[str, float]:
    return {"ppl_zend": compute_ppl(opts, "ppl_zend", space="z", sampling="end", crop=True)}


@register_metric
def ppl_wend(opts: MetricOptions) -> dict[str, float]:
    return {"ppl_wend": compute_ppl(opts, "ppl_wend", space="w", sampling="end", crop=True)}
