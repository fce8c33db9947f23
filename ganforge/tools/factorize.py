"""Interpretable directions in w without labels: SeFa and GANSpace.

SeFa (Shen & Zhou 2021, "Closed-Form Factorization of Latent Semantics in GANs"): the style affine A of a layer
maps w to styles, so the w directions that change the styles most are the top eigenvectors of AᵀA. Here A stacks
the affines of the chosen ws indices, each row (the w_dim-vector that makes one style channel) scaled to unit
length first, as the SeFa code does (it normalises the columns of the transposed weight, `axis=0`). Per-layer
weight gains (equalized learning rate) therefore drop out, and every channel counts alike.

GANSpace (Härkönen et al. 2020, "GANSpace: Discovering Interpretable GAN Controls"): PCA of w = mapping(z) over
many samples; the principal axes, with the standard deviation of w along each.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ganforge.devices import parse_device
from ganforge.tools.directions import Directions, check_layers, layers_text
from ganforge.tools.generate import ToolError

MAX_SAMPLES = 1_000_000  # GANSpace samples: 1M × 512 w's is a few minutes on a GPU; more is a typo.
CHUNK = 1000  # GANSpace: z is drawn and mapped in chunks of this many (the draws do not depend on --batch).


# ----------------------------------------------------------------------------
# Style layers.


class Affine(NamedTuple):
    ws: int  # The ws index it reads.
    name: str  # Module path under synthesis ('b8.conv0', 'L3_36_512' …).
    weight: torch.Tensor  # [channels, w_dim], without the equalized-lr gain.
    torgb: bool


def style_affines(G: Any) -> list[Affine]:
    """Every style affine of G's synthesis network, in ws order.

    StyleGAN2: each modulated (or AdaIN) convolution at the ws index that feeds it, and each ToRGB at its own index
    (the index of the next block's first convolution, or the last index for the final ToRGB). StyleGAN3: layer i
    reads ws[i + 1] (the last one is ToRGB); ws[0] sets the Fourier input's rotation and shift, not a style.
    """
    synthesis = G.synthesis
    if hasattr(synthesis, "layer_names"):  # StyleGAN3.
        layers = [getattr(synthesis, name) for name in synthesis.layer_names]
        return [
            Affine(i + 1, name, layer.affine.weight, bool(layer.is_torgb))
            for i, (name, layer) in enumerate(zip(synthesis.layer_names, layers))
        ]
    out: list[Affine] = []
    w_idx = 0
    for name in synthesis.block_names:
        block = getattr(synthesis, name)
        first = block.in_channels == 0
        if first and hasattr(block, "input"):  # The noconst input's styled conv reads ws[0] too.
            out.append(Affine(w_idx, f"{name}.input.conv", _style_weight(block.input.conv), False))
        for sub, j in [("conv1", 0)] if first else [("conv0", 0), ("conv1", 1)]:
            out.append(Affine(w_idx + j, f"{name}.{sub}", _style_weight(getattr(block, sub)), False))
        if hasattr(block, "torgb"):
            out.append(Affine(w_idx + block.num_conv, f"{name}.torgb", block.torgb.affine.weight, True))
        w_idx += block.num_conv
    return sorted(out, key=lambda a: a.ws)


def _style_weight(layer: Any) -> torch.Tensor:
    return layer.affine.weight if hasattr(layer, "affine") else layer.adain.affine.weight


def sefa_layers(G: Any, layers: Sequence[int]) -> list[Affine]:
    """The affines SeFa reads for the chosen ws indices: the convolutions each index feeds; an index that feeds
    none (the last, which feeds only the final ToRGB) contributes its ToRGB, as the SeFa code does."""
    affines = style_affines(G)
    chosen: list[Affine] = []
    for i in layers:
        here = [a for a in affines if a.ws == i]
        chosen += [a for a in here if not a.torgb] or here
    return chosen


def default_layers(G: Any) -> list[int]:
    """Every ws index with a style layer (all of them for StyleGAN2; 1..num_ws-1 for StyleGAN3)."""
    return sorted({a.ws for a in style_affines(G)})


# ----------------------------------------------------------------------------
# SeFa.


def sefa_matrix(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """AᵀA [w_dim, w_dim] in float64, A = the weights [C_i, w_dim] stacked with every row scaled to unit norm."""
    a = torch.cat([w.detach().double().cpu() for w in weights])  # [ΣC, w_dim]
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return a.t() @ a


def top_eigenvectors(m: torch.Tensor, num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(vectors [num, D], values [num]) of a symmetric matrix, largest eigenvalue first; each vector's sign makes
    its largest-magnitude component positive (eigenvectors have no sign of their own)."""
    values, vectors = torch.linalg.eigh(m)  # Ascending.
    values, vectors = values.flip(0)[:num], vectors.flip(1)[:, :num].t()
    peak = vectors.gather(1, vectors.abs().argmax(dim=1, keepdim=True))
    return vectors * peak.sign(), values.clamp_min(0)


def sefa(G: Any, layers: Sequence[int] | None = None, num: int = 16, checkpoint: str = "") -> Directions:
    """The top-`num` SeFa directions of G's style affines at ws `layers` (default: every index with a style)."""
    chosen = check_layers(default_layers(G) if layers is None else layers, int(G.num_ws))
    affines = sefa_layers(G, chosen)
    if not affines:
        raise ToolError(
            f"--layers {layers_text(chosen)}: no style layer reads these ws (StyleGAN3's ws 0 only moves its "
            f"Fourier input); pass indices in {default_layers(G)[0]}-{default_layers(G)[-1]}"
        )
    vectors, values = top_eigenvectors(sefa_matrix([a.weight for a in affines]), num)
    return Directions("sefa", vectors.float(), values.float(), chosen, int(G.num_ws), checkpoint)


# ----------------------------------------------------------------------------
# GANSpace.


@torch.no_grad()
def sample_ws(G: Any, samples: int, seed: int, device: torch.device, batch: int = CHUNK) -> Iterator[torch.Tensor]:
    """float64 w [n, w_dim] chunks of mapping(z) on the CPU for `samples` z ~ N(0, I) drawn from `seed` (labels of a
    conditional model drawn uniformly); the draws do not depend on `batch`."""
    gen = torch.Generator().manual_seed(seed)
    c_dim, z_dim = int(getattr(G, "c_dim", 0) or 0), int(G.z_dim)
    for start in range(0, samples, CHUNK):
        n = min(CHUNK, samples - start)
        z = torch.randn([n, z_dim], generator=gen)
        c = None if not c_dim else torch.nn.functional.one_hot(torch.randint(c_dim, [n], generator=gen), c_dim).float()
        for i in range(0, n, batch):
            ci = None if c is None else c[i : i + batch].to(device)
            yield G.mapping(z[i : i + batch].to(device), ci)[:, 0].double().cpu()


@torch.no_grad()
def ganspace(
    G: Any,
    num: int = 16,
    samples: int = 10_000,
    seed: int = 0,
    layers: Sequence[int] | None = None,
    checkpoint: str = "",
    device: str | torch.device = "cpu",
    batch: int = CHUNK,
) -> Directions:
    """The top-`num` principal axes of w = mapping(z) over `samples` draws, with the standard deviations along them.

    The covariance is summed in float64 around the first chunk's mean (a shift that keeps the sums well
    conditioned), so memory is [w_dim, w_dim] whatever the number of samples.
    """
    num_ws = int(G.num_ws)
    chosen = check_layers(range(num_ws) if layers is None else layers, num_ws)
    if not num < samples <= MAX_SAMPLES:
        raise ToolError(f"--samples {samples}: pass more samples than --num {num}, at most {MAX_SAMPLES:,}")
    chunks = sample_ws(G, samples, seed, torch.device(device), batch)
    first = next(chunks)  # samples > num ≥ 1.
    shift = first.mean(0)
    s1, s2 = torch.zeros_like(shift), torch.zeros(len(shift), len(shift), dtype=torch.float64)
    for w in itertools.chain([first], chunks):
        w = w - shift
        s1, s2 = s1 + w.sum(0), s2 + w.t() @ w
    mean = s1 / samples
    cov = (s2 - samples * torch.outer(mean, mean)) / (samples - 1)
    vectors, variances = top_eigenvectors((cov + cov.t()) / 2, num)
    return Directions(
        "ganspace",
        vectors.float(),
        variances.sqrt().float(),
        chosen,
        num_ws,
        checkpoint,
        samples=samples,
        seed=seed,
        mean=(mean + shift).float(),
    )


# ----------------------------------------------------------------------------
# From a checkpoint.


def compute_directions(
    checkpoint: str | Path,
    method: str = "sefa",
    layers: Sequence[int] | None = None,
    num: int = 16,
    samples: int = 10_000,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Directions:
    """Directions of a checkpoint's G_ema (ganforge .safetensors or official .pkl): StyleGAN2 and StyleGAN3."""
    from ganforge.modelio.load import load_generator
    from ganforge.models import is_stylegan

    if method not in ("sefa", "ganspace"):
        raise ToolError(f"--method {method!r}: choose sefa or ganspace")
    device = parse_device(device)
    G = load_generator(checkpoint)
    if not is_stylegan(G):
        raise ToolError(
            "a DCGAN generator has no mapping network or w, so it has no latent directions: use a StyleGAN2 or "
            "StyleGAN3 checkpoint"
        )
    w_dim = G.plan.w_dim
    if not 1 <= num <= w_dim:
        raise ToolError(f"--num {num}: this model's w has {w_dim} dimensions; pass 1..{w_dim}")
    name = Path(checkpoint).name
    if method == "sefa":
        return sefa(G, layers, num, name)
    return ganspace(G.to(device), num, samples, seed, layers, name, device)
