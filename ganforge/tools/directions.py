"""Latent directions in w: the file `ganforge directions` writes, its checks, and adding a direction to ws.

A directions file is a ganforge safetensors file (checksummed, no pickle) whose metadata has kind "directions":

    directions   float32 [K, w_dim]   unit vectors, orthonormal, strongest first
    eigenvalues  float32 [K]          method sefa: the eigenvalues of AᵀA (`ganforge.tools.factorize.sefa`)
    stddevs      float32 [K]          method ganspace: the standard deviation of w along each axis
    mean         float32 [w_dim]      method ganspace: the mean w of the samples

with method, layers (the ws indices the directions were computed from and move by default), num_ws, w_dim, the
source checkpoint's file name and, for GANSpace, samples and seed.

Direction k at strength S moves ws[:, layers] by S · unit_k · d_k, where unit_k is 1 for SeFa (S in units of w)
and the standard deviation σ_k for GANSpace (S in standard deviations of w along the axis: ±3 spans nearly all
of the model's samples).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganforge.latents import STRENGTH_LIMIT, parse_ranges, shown
from ganforge.modelio.checkpoint import CheckpointError, open_checkpoint, save_checkpoint
from ganforge.models import is_stylegan
from ganforge.tools.generate import ToolError

KIND = "directions"
METHODS = ("sefa", "ganspace")
VALUE_NAMES = {"sefa": "eigenvalues", "ganspace": "stddevs"}  # The tensor beside `directions`, per method.
MAX_FILE_BYTES = 64 * 2**20  # K ≤ w_dim ≤ a few thousand: a directions file is a few MB at most.
MAX_LAYER_INDEX = 1023  # --layers indices, a typo guard (num_ws is 26 at 16384 px); the model checks the rest.
EXAMPLE = "ganforge directions --checkpoint CKPT --method sefa --out dirs.safetensors"


@dataclass(frozen=True)
class Directions:
    method: str  # sefa | ganspace.
    vectors: torch.Tensor  # [K, w_dim] float32: orthonormal rows, strongest first.
    values: torch.Tensor  # [K]: SeFa eigenvalues, or GANSpace standard deviations.
    layers: tuple[int, ...]  # ws indices: computed from (SeFa) and moved by default.
    num_ws: int  # The source model's.
    checkpoint: str  # The source checkpoint's file name.
    samples: int | None = None  # GANSpace: number of w samples.
    seed: int | None = None  # GANSpace: seed of the z samples.
    mean: torch.Tensor | None = None  # GANSpace: [w_dim] mean of the samples.

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def w_dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def units(self) -> torch.Tensor:
        """[K]: what strength 1 moves w by along each direction (1 for SeFa, σ_k for GANSpace)."""
        return self.values if self.method == "ganspace" else torch.ones_like(self.values)

    def offset(self, strengths: Sequence[float]) -> torch.Tensor:
        """[w_dim]: Σ_k S_k · unit_k · d_k over the directions with a non-zero strength (the first len(strengths)).

        Zero strengths are skipped, so one direction alone gives the same bits whatever the others' count.
        """
        out = torch.zeros([self.w_dim])
        for k, s in enumerate(strengths):
            if s != 0:
                out = out + (float(s) * float(self.units[k])) * self.vectors[k]
        return out


@dataclass(frozen=True)
class DirectionEdit:
    """One direction at one strength on some ws: what `generate --direction` adds."""

    directions: Directions
    index: int
    strength: float
    layers: tuple[int, ...]

    def offset(self) -> torch.Tensor:
        return self.directions.offset([0.0] * self.index + [self.strength])

    def apply(self, ws: torch.Tensor) -> torch.Tensor:
        return add_offset(ws, self.offset(), self.layers)


def add_offset(ws: torch.Tensor, offset: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
    """ws [N, num_ws, w_dim] with `offset` [w_dim] added to ws[:, layers] (a new tensor)."""
    index = torch.tensor(list(layers), dtype=torch.long, device=ws.device)
    add = offset.to(ws.device, ws.dtype).expand(ws.shape[0], len(index), -1)
    return ws.index_add(1, index, add)


# ----------------------------------------------------------------------------
# Options.


def parse_direction(text: str, flag: str = "--direction") -> tuple[str, int]:
    """'FILE:K' -> (FILE, K): direction K (0 = the strongest) of a directions file."""
    path, sep, k = str(text).rpartition(":")
    if not sep or not path or not k.strip().isdigit() or len(k.strip()) > 9:
        raise ToolError(f"{flag} {shown(text)}: write FILE:K, e.g. dirs.safetensors:0 (K = 0 is the strongest)")
    return path, int(k)


def check_strength(strength: float, flag: str = "--strength") -> float:
    strength = float(strength)
    if not math.isfinite(strength) or abs(strength) > STRENGTH_LIMIT:
        raise ToolError(
            f"{flag} {strength:g}: pass a strength in {-STRENGTH_LIMIT:g}..{STRENGTH_LIMIT:g} "
            "(GANSpace: standard deviations, 3 typical; SeFa: units of w)"
        )
    return strength


def parse_layers(text: str, flag: str = "--layers") -> list[int]:
    """'0-3' or '4,5' -> ws indices (checked against the model's num_ws by `check_layers`)."""
    return parse_ranges(text, flag, MAX_LAYER_INDEX + 1, top=MAX_LAYER_INDEX, what="ws indices")


def layers_text(layers: Sequence[int]) -> str:
    """(0, 1, 2, 5) -> '0-2,5': ws indices as --layers takes them."""
    runs: list[list[int]] = []
    for i in sorted(layers):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def check_layers(layers: Sequence[int], num_ws: int, flag: str = "--layers") -> tuple[int, ...]:
    """Sorted unique ws indices, all below num_ws, or a ToolError naming the range."""
    out = tuple(sorted(set(int(i) for i in layers)))
    if not out or out[-1] >= num_ws:
        raise ToolError(f"{flag}: this model has ws 0..{num_ws - 1} (num_ws={num_ws}); pass indices in that range")
    return out


# ----------------------------------------------------------------------------
# The file.


def save_directions(d: Directions, path: str | Path) -> None:
    tensors = {"directions": d.vectors.float(), VALUE_NAMES[d.method]: d.values.float()}
    if d.mean is not None:
        tensors["mean"] = d.mean.float()
    meta = dict(
        kind=KIND,
        method=d.method,
        layers=list(d.layers),
        num_ws=d.num_ws,
        w_dim=d.w_dim,
        count=d.count,
        checkpoint=d.checkpoint,
        samples=d.samples,
        seed=d.seed,
    )
    save_checkpoint(path, tensors, meta)


def load_directions(path: str | Path, flag: str = "--direction") -> Directions:
    """A directions file, every field checked (safe for any file: headers first, no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise ToolError(f"{flag} {path} does not exist or is not a file: check the path, or make one with `{EXAMPLE}`")
    not_ours = f"{flag} {path} is not a directions file: make one with `{EXAMPLE}`"
    try:
        head = open_checkpoint(path)
    except CheckpointError:
        raise ToolError(not_ours) from None
    meta = head.meta
    if meta.get("kind") != KIND or head.size > MAX_FILE_BYTES:
        what = "a ganforge checkpoint" if "plan" in meta else "not a directions file"
        raise ToolError(f"{flag} {path} is {what}, not a directions file: make one with `{EXAMPLE}`")
    try:
        tensors = head.read()
    except CheckpointError as e:
        raise ToolError(str(e)) from None
    return _checked(path, flag, meta, tensors)


def _checked(path: Path, flag: str, meta: dict, tensors: dict[str, torch.Tensor]) -> Directions:
    damaged = f"{flag} {path} is a damaged directions file"
    method = meta.get("method")
    if method not in METHODS:
        raise ToolError(f"{damaged} (method {shown(method)}): make it again with `{EXAMPLE}`")
    vectors, values = tensors.get("directions"), tensors.get(VALUE_NAMES[method])
    if vectors is None or values is None or vectors.ndim != 2 or values.shape != (vectors.shape[0],):
        raise ToolError(f"{damaged} (its tensors have the wrong names or shapes): make it again with `{EXAMPLE}`")
    vectors, values = vectors.float(), values.float()
    num_ws, layers = meta.get("num_ws"), meta.get("layers")
    if (
        type(num_ws) is not int
        or not 1 <= num_ws <= MAX_LAYER_INDEX + 1
        or not isinstance(layers, list)
        or not layers
        or not all(type(i) is int and 0 <= i < num_ws for i in layers)
        or meta.get("w_dim") != vectors.shape[1]
        or vectors.shape[0] < 1
    ):
        raise ToolError(f"{damaged} (layers, num_ws or w_dim do not agree): make it again with `{EXAMPLE}`")
    if not (torch.isfinite(vectors).all() and torch.isfinite(values).all()) or (values < 0).any():
        raise ToolError(f"{damaged} (non-finite or negative values): make it again with `{EXAMPLE}`")
    mean = tensors.get("mean")
    samples, seed = meta.get("samples"), meta.get("seed")
    return Directions(
        method=method,
        vectors=vectors,
        values=values,
        layers=tuple(sorted(set(layers))),
        num_ws=num_ws,
        checkpoint=str(meta.get("checkpoint", ""))[:200],
        samples=samples if type(samples) is int else None,
        seed=seed if type(seed) is int else None,
        mean=mean.float() if mean is not None and mean.shape == (vectors.shape[1],) else None,
    )


# ----------------------------------------------------------------------------
# Against a model.


def check_model(d: Directions, G: Any, flag: str = "--direction") -> None:
    """The model has ws (StyleGAN2/3), of the file's w_dim, and at least as many as the file's layers need."""
    if not is_stylegan(G):
        raise ToolError(
            f"{flag}: a DCGAN generator has no w to move along a direction; use a StyleGAN2 or StyleGAN3 model"
        )
    w_dim, num_ws = int(G.w_dim), int(G.num_ws)
    if w_dim != d.w_dim:
        raise ToolError(
            f"{flag}: the directions are {d.w_dim}-dimensional (from {d.checkpoint or 'another model'}) but this "
            f"model's w_dim is {w_dim}; compute directions for this model with `ganforge directions`"
        )
    if d.layers[-1] >= num_ws:
        raise ToolError(
            f"{flag}: the directions move ws up to {d.layers[-1]} but this model has ws 0..{num_ws - 1}; pass "
            f"--layers within 0-{num_ws - 1} or compute directions for this model"
        )


def check_index(d: Directions, k: int, path: str | Path, flag: str = "--direction") -> int:
    if not 0 <= k < d.count:
        raise ToolError(f"{flag} {path}:{k}: the file holds directions 0..{d.count - 1}; pass K in that range")
    return k


def direction_edit(
    G: Any,
    direction: tuple[str, int] | None,  # (FILE, K) from --direction; None = no edit.
    strength: float | None,
    layers: Sequence[int] | None,  # ws to move; None = the file's layers.
) -> DirectionEdit | None:
    """--direction FILE:K --strength S [--layers A-B] checked against G, or None when no --direction was given."""
    if direction is None:
        given = [f for f, v in (("--strength", strength), ("--layers", layers)) if v is not None]
        if given:
            flags = " and ".join(given)
            verb = "apply" if len(given) > 1 else "applies"
            raise ToolError(f"{flags} only {verb} with --direction FILE:K: add --direction or drop {flags}")
        return None
    if strength is None:
        raise ToolError("--direction needs --strength S: add e.g. --strength 2 (GANSpace: standard deviations)")
    d = load_directions(direction[0])
    check_model(d, G)
    k = check_index(d, direction[1], direction[0])
    chosen = d.layers if layers is None else check_layers(layers, int(G.num_ws))
    return DirectionEdit(d, k, check_strength(strength), chosen)
