"""StyleGAN3 equivariance metrics (eqt50k_int, eqt50k_frac, eqr50k): PSNR in dB between the image of a transformed
input and the transformed image.

Paper: Karras et al., "Alias-Free Generative Adversarial Networks", NeurIPS 2021 (arXiv:2106.12423), section 3 and
appendix E. Reference implementation matched: NVlabs/stylegan3 `metrics/equivariance.py` with the `eq*` entries of
`metrics/metric_main.py`: 50,000 samples; a reference image with the identity input transform; then
- EQ-T (int): a shift t ~ U[-0.125, 0.125]² of the image size, rounded to whole pixels, through the input transform
  (synthesis.input.transform = [[1, 0, -tx], [0, 1, -ty], [0, 0, 1]]), compared with the reference shifted alike;
- EQ-T (frac): the same shift unrounded, the reference shifted by a Lanczos-windowed sinc kernel;
- EQ-R: a rotation α ~ U[-π, π] (transform = rotation_matrix(-α)); the reference rotated through a band-limited 4x
  upsampling, the transformed image filtered with the same band limit (pseudo-rotation), both masks applied;
PSNR = 20·log10(2) − 10·log10(Σ mask·(ref − img)² / Σ mask) over all samples, channels and valid pixels (images in
[-1, 1], so the peak-to-peak value is 2).

Sampling, by design: each sample's latent and transform come from its own generator keyed by (seed, k) (the
official loop shares one transform between the 4 images of a batch), so sample k is the same whatever the batch
size or the number of ranks; G runs a batch of samples at once with one transform per image ([N, 3, 3] in place of
the [3, 3] buffer, which the input's batched matmul applies image by image). The operators are in
`ganforge.metrics.eq_transforms`; tests/test_metrics_equivariance.py replays the official draws through
`equivariance_sums`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ganforge.distributed import rank_share, rank_world, sum_over_ranks
from ganforge.metrics.eq_transforms import (
    fractional_rotation,
    fractional_translation,
    integer_translation,
    pseudo_rotation,
    rotation_matrix,
)
from ganforge.metrics.features import (
    BatchFitter,
    MetricError,
    MetricOptions,
    fake_labels,
    fit_batch,
    generator_bytes_per_image,
    progress_bar,
)
from ganforge.metrics.ppl import family_of, generator_and_psi
from ganforge.metrics.registry import REAL_DATA_FREE, gen_count, register_metric, restrict_families
from ganforge.models import StyleGAN3Generator

TRANSLATE_MAX = 0.125  # Largest shift, in units of the image size (official).
ROTATE_MAX = 1.0  # Largest rotation, in units of π (official).
NUM_SAMPLES = 50_000
KINDS = ("int", "frac", "rot")  # EQ-T integer, EQ-T fractional, EQ-R.
SG3_FAMILIES = ("stylegan3-t", "stylegan3-r")
NEEDS_WHY = (
    "transforms the input of a StyleGAN3 generator (synthesis.input.transform), which StyleGAN2 and DCGAN "
    "generators do not have"
)


@dataclass(frozen=True)
class EqDraws:
    """The random draws of N equivariance samples (every kind's, whichever is measured)."""

    z: torch.Tensor  # [N, z_dim]
    shift_int: torch.Tensor  # [N, 2] (tx, ty), in units of the image size, on the pixel grid.
    shift_frac: torch.Tensor  # [N, 2] (tx, ty), in units of the image size.
    angle: torch.Tensor  # [N] radians.

    def to(self, device: str | torch.device) -> EqDraws:
        return EqDraws(*(t.to(device) for t in (self.z, self.shift_int, self.shift_frac, self.angle)))


def eq_draws(G: StyleGAN3Generator, seed: int, items: range) -> EqDraws:
    """Sample k's draws from torch.Generator seeded (seed·2^20 + k) on the CPU: z, then shifts and angle."""
    res = int(G.img_resolution)
    rows = []
    for k in items:
        gen = torch.Generator().manual_seed((seed << 20) + k)
        z = torch.randn([G.z_dim], generator=gen)
        shift_int = (torch.rand([2], generator=gen) * 2 - 1) * TRANSLATE_MAX
        shift_int = (shift_int * res).round() / res
        shift_frac = (torch.rand([2], generator=gen) * 2 - 1) * TRANSLATE_MAX
        angle = (torch.rand([], generator=gen) * 2 - 1) * (ROTATE_MAX * math.pi)
        rows.append((z, shift_int, shift_frac, angle))
    if not rows:
        return EqDraws(torch.zeros([0, int(G.z_dim)]), torch.zeros([0, 2]), torch.zeros([0, 2]), torch.zeros([0]))
    return EqDraws(*(torch.stack(column) for column in zip(*rows)))


@contextlib.contextmanager
def per_image_transform(G: StyleGAN3Generator, transforms: torch.Tensor) -> Iterator[None]:
    """Run G with synthesis.input.transform set to `transforms` [N, 3, 3] (one per image), then put it back."""
    owner = G.synthesis.input
    saved = owner.transform
    owner.transform = transforms
    try:
        yield
    finally:
        owner.transform = saved


def shift_transforms(shift: torch.Tensor) -> torch.Tensor:
    """[N, 2] image shifts -> [N, 3, 3] input transforms [[1, 0, -tx], [0, 1, -ty], [0, 0, 1]]."""
    m = torch.eye(3, device=shift.device).repeat(len(shift), 1, 1)
    m[:, :2, 2] = -shift
    return m


def equivariance_sums(
    G: StyleGAN3Generator,  # Its synthesis.input.transform moves the image.
    draws: EqDraws,  # N samples, on G's device.
    c: torch.Tensor | None,  # [N, c_dim] labels; None = unconditional.
    kinds: tuple[str, ...],  # Subset of KINDS.
    truncation_psi: float = 1.0,
) -> torch.Tensor:
    """[len(kinds), 2] float64: (Σ mask·(ref − img)², Σ mask) over the N samples, per kind."""
    n = len(draws.z)
    ws = G.mapping(draws.z, c, truncation_psi=truncation_psi)
    with per_image_transform(G, torch.eye(3, device=draws.z.device)):  # The reference, whatever G's own transform.
        orig = G.synthesis(ws, noise_mode="const")
    sums = []
    for kind in kinds:
        # Transform the input (one transform per image).
        if kind == "rot":
            transforms = torch.stack([rotation_matrix(-a) for a in draws.angle])
        else:
            transforms = shift_transforms(draws.shift_int if kind == "int" else draws.shift_frac)
        with per_image_transform(G, transforms):
            img = G.synthesis(ws, noise_mode="const")

        # Transform the reference alike, sample by sample (the operators take one shift or angle).
        err = torch.zeros([], dtype=torch.float64, device=img.device)
        cover = torch.zeros([], dtype=torch.float64, device=img.device)
        for i in range(n):
            (expected, got), mask = reference(kind, orig[i : i + 1], img[i : i + 1], draws, i)
            err += ((expected - got).square() * mask).to(torch.float64).sum()
            cover += mask.to(torch.float64).sum()
        sums.append(torch.stack([err, cover]))
    return torch.stack(sums)


def reference(
    kind: str, orig: torch.Tensor, img: torch.Tensor, draws: EqDraws, i: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """((expected, got), mask) for sample i: the reference moved by the operator of `kind`, and G's image
    of the moved input (pseudo-rotated for EQ-R, with both masks)."""
    if kind == "int":
        ref, mask = integer_translation(orig, draws.shift_int[i, 0], draws.shift_int[i, 1])
        return (ref, img), mask
    if kind == "frac":
        ref, mask = fractional_translation(orig, draws.shift_frac[i, 0], draws.shift_frac[i, 1])
        return (ref, img), mask
    ref, ref_mask = fractional_rotation(orig, draws.angle[i])
    pseudo, pseudo_mask = pseudo_rotation(img, draws.angle[i])
    return (ref, pseudo), ref_mask * pseudo_mask


def psnr(sums: torch.Tensor) -> float:
    """20·log10(2) − 10·log10(MSE) from (Σ squared error, Σ mask): images in [-1, 1] have a peak-to-peak of 2."""
    mse = sums[0] / sums[1]
    return float(math.log10(2) * 20 - mse.log10() * 10)


def compute_equivariance(opts: MetricOptions, metric: str, kind: str) -> float:
    """The PSNR of one kind over gen_count(opts, 50,000) samples, each rank summing its share."""
    G, psi = generator_and_psi(opts)
    if not isinstance(G, StyleGAN3Generator):
        raise MetricError(f"{metric} {NEEDS_WHY}, and this generator is {family_of(G)}: drop {metric}")
    return psnr_of(G, psi, opts, metric, kind)


def psnr_of(G: StyleGAN3Generator, psi: float, opts: MetricOptions, metric: str, kind: str) -> float:
    """Sums of this rank's samples in fitted batches, added over ranks, then the PSNR."""
    G.to(opts.device)
    n = gen_count(opts, NUM_SAMPLES)
    share = rank_share(n, *rank_world())
    labels = fake_labels(opts, n, int(G.c_dim))
    fitter = BatchFitter(fit_batch(opts, 3 * generator_bytes_per_image(G)), opts.device)

    def sums_of(start: int, stop: int) -> torch.Tensor:
        items = range(share.start + start, share.start + stop)
        draws = eq_draws(G, opts.seed, items).to(opts.device)
        c = None if labels is None else labels[items.start : items.stop].to(opts.device)
        return equivariance_sums(G, draws, c, (kind,), truncation_psi=psi)

    world = rank_world()[1]
    advance, close = progress_bar(n, f"{metric} on {n} samples", opts.progress)
    try:
        parts = fitter.run(sums_of, len(share), lambda k: advance(k * world))
    finally:
        close()
    total = torch.stack(parts).sum(dim=0) if parts else torch.zeros([1, 2], dtype=torch.float64)
    total = sum_over_ranks(total.to(opts.device)).cpu()
    return psnr(total[0])


for _name in ("eqt50k_int", "eqt50k_frac", "eqr50k"):
    restrict_families(_name, SG3_FAMILIES, NEEDS_WHY)
    REAL_DATA_FREE.add(_name)


@register_metric
def eqt50k_int(opts: MetricOptions) -> dict[str, float]:
    return {"eqt50k_int": compute_equivariance(opts, "eqt50k_int", "int")}


@register_metric
def eqt50k_frac(opts: MetricOptions) -> dict[str, float]:
    return {"eqt50k_frac": compute_equivariance(opts, "eqt50k_frac", "frac")}


@register_metric
def eqr50k(opts: MetricOptions) -> dict[str, float]:
    return {"eqr50k": compute_equivariance(opts, "eqr50k", "rot")}
