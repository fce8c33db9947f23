"""Render settings: parsed from a query string, checked twice (alone, then against the model), never trusted.

Every bad value raises ParamError with the HTTP status and a sentence that names the parameter and its value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from ganforge.errors import GanforgeError
from ganforge.latents import ROTATE_LIMIT, STRENGTH_LIMIT, TRANSLATE_LIMIT

MAX_SEED = 2**32 - 1
PSI_RANGE = (-2.0, 2.0)
WALK_RANGE = (-1.0, 1.0)
NOISE_MODES = ("const", "random", "none")
WALK_SPACES = ("z", "w")
DEFAULT_MAX_GRID = 16
MAX_DIRS = 64  # Direction strengths per request (the page shows at most a few sliders).
DEFAULT_MAX_SAVES = 1000  # Saves per server session.
DEFAULT_MAX_SAVE_MB = 1024  # Megabytes written by saves per server session.


class ParamError(GanforgeError, ValueError):
    """A request parameter the server refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RenderSettings:
    seed: int = 0  # z = RandomState(seed).randn(z_dim), as `ganforge generate`.
    psi: float = 1.0  # Truncation ψ: 1 = off, 0 = every w is w_avg.
    cutoff: int | None = None  # Truncate only the first N ws; None = all.
    noise: str = "const"  # const | random | none.
    class_idx: int | None = None  # Label of a conditional model; None for unconditional ones.
    grid: int = 1  # Images: seeds seed .. seed + grid - 1, laid out as `ganforge generate --grid`.
    mix_seed: int | None = None  # Style mixing: this seed's ws replace ws[mix_from..mix_to]; None = off.
    mix_from: int = 0
    mix_to: int = 0
    walk_seed: int | None = None  # Latent walk toward this seed's latent; None = off.
    walk: float = 0.0  # Position along the walk in [-1, 1]: 0 = the seed itself, 1 = the walk seed.
    space: str = "z"  # z: great-circle walk between the z's; w: straight line between the ws.
    dirs: tuple[float, ...] = ()  # Strength of each direction of --directions (the first len(dirs)); () = none.
    tx: float = 0.0  # StyleGAN3: shift of the image in image sizes (generate --translate TX,TY).
    ty: float = 0.0
    rotate: float = 0.0  # StyleGAN3: rotation in degrees (generate --rotate).

    @property
    def moving(self) -> bool:
        return bool(self.tx or self.ty or self.rotate)

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.grid))

    @property
    def walking(self) -> bool:
        return self.walk_seed is not None and self.walk != 0

    @property
    def mixing(self) -> bool:
        return self.mix_seed is not None

    def to_dict(self) -> dict:
        return asdict(self)


# Query name -> RenderSettings field (the query says `class`, a Python keyword).
QUERY_FIELDS = {
    "seed": "seed",
    "psi": "psi",
    "cutoff": "cutoff",
    "noise": "noise",
    "class": "class_idx",
    "grid": "grid",
    "mix_seed": "mix_seed",
    "mix_from": "mix_from",
    "mix_to": "mix_to",
    "walk_seed": "walk_seed",
    "walk": "walk",
    "space": "space",
    "dirs": "dirs",
    "tx": "tx",
    "ty": "ty",
    "rotate": "rotate",
}
EXTRA_KEYS = ("model",)  # Accepted beside the settings, read by the caller.


def parse_int(name: str, text: str, lo: int, hi: int) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ParamError(f"{name}={text!r} is not an integer: pass a whole number in {lo}..{hi}") from None
    if not lo <= value <= hi:
        raise ParamError(f"{name}={value} is out of range: pass {lo}..{hi}")
    return value


def parse_float(name: str, text: str, lo: float, hi: float) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ParamError(f"{name}={text!r} is not a number: pass a value in {lo:g}..{hi:g}") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ParamError(f"{name}={text!r} is out of range: pass {lo:g}..{hi:g}")
    return value


def parse_choice(name: str, text: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise ParamError(f"{name}={text!r} is not allowed: choose {', '.join(choices)}")
    return text


def optional(query: dict[str, str], name: str) -> str | None:
    """The value, or None when absent or empty (an empty field in a form means 'not set')."""
    value = query.get(name)
    return None if value is None or str(value).strip() == "" else value


def parse_strengths(text: str) -> tuple[float, ...]:
    """'1.5,0,-2' -> (1.5, 0.0, -2.0): direction strengths, at most MAX_DIRS of them, each in ±STRENGTH_LIMIT."""
    parts = str(text).split(",")
    if len(parts) > MAX_DIRS:
        raise ParamError(f"dirs has {len(parts)} values: pass at most {MAX_DIRS}, one per direction slider")
    return tuple(parse_float("dirs", p, -STRENGTH_LIMIT, STRENGTH_LIMIT) for p in parts)


def parse_settings(query: dict[str, str], max_grid: int = DEFAULT_MAX_GRID) -> RenderSettings:
    """Query parameters -> RenderSettings, with every model-independent range checked."""
    unknown = sorted(set(query) - set(QUERY_FIELDS) - set(EXTRA_KEYS))
    if unknown:
        raise ParamError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))}: "
            f"use {', '.join(list(QUERY_FIELDS) + list(EXTRA_KEYS))}"
        )
    got = {name: optional(query, name) for name in QUERY_FIELDS}
    kw: dict = {}
    if got["seed"] is not None:
        kw["seed"] = parse_int("seed", got["seed"], 0, MAX_SEED)
    if got["psi"] is not None:
        kw["psi"] = parse_float("psi", got["psi"], *PSI_RANGE)
    if got["cutoff"] is not None:
        kw["cutoff"] = parse_int("cutoff", got["cutoff"], 0, 10_000)
    if got["noise"] is not None:
        kw["noise"] = parse_choice("noise", got["noise"], NOISE_MODES)
    if got["class"] is not None:
        kw["class_idx"] = parse_int("class", got["class"], 0, 1_000_000)
    if got["grid"] is not None:
        kw["grid"] = parse_int("grid", got["grid"], 1, max_grid)
    for name in ("mix_seed", "walk_seed"):
        if (text := got[name]) is not None:
            kw[name] = parse_int(name, text, 0, MAX_SEED)
    for name in ("mix_from", "mix_to"):
        if (text := got[name]) is not None:
            kw[name] = parse_int(name, text, 0, 10_000)
    if got["walk"] is not None:
        kw["walk"] = parse_float("walk", got["walk"], *WALK_RANGE)
    if got["space"] is not None:
        kw["space"] = parse_choice("space", got["space"], WALK_SPACES)
    if got["dirs"] is not None:
        kw["dirs"] = parse_strengths(got["dirs"])
    for name in ("tx", "ty"):
        if (text := got[name]) is not None:
            kw[name] = parse_float(name, text, -TRANSLATE_LIMIT, TRANSLATE_LIMIT)
    if got["rotate"] is not None:
        kw["rotate"] = parse_float("rotate", got["rotate"], -ROTATE_LIMIT, ROTATE_LIMIT)
    settings = RenderSettings(**kw)
    if settings.seed + settings.grid - 1 > MAX_SEED:
        raise ParamError(
            f"grid={settings.grid} from seed={settings.seed} runs past seed {MAX_SEED}: "
            "start lower or ask for fewer images"
        )
    return settings


def settings_from_dict(values: dict, max_grid: int = DEFAULT_MAX_GRID) -> RenderSettings:
    """A saved settings dict (field names) -> RenderSettings, through the same checks as a query."""
    by_field = {field: key for key, field in QUERY_FIELDS.items()}
    unknown = sorted(set(values) - set(by_field))
    if unknown:
        raise ParamError(f"unknown setting(s) {', '.join(map(repr, unknown))}")
    query = {by_field[k]: "" if v is None else _text(v) for k, v in values.items()}
    return parse_settings(query, max_grid)


def _text(value: object) -> str:
    """A saved value as query text (a list of strengths as '1.5,0')."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def check_for_model(settings: RenderSettings, num_ws: int, c_dim: int, stylegan: bool = True) -> RenderSettings:
    """The settings checked against a model's num_ws and c_dim (mix layers, cutoff, class)."""
    if settings.cutoff is not None and settings.cutoff > num_ws:
        raise ParamError(f"cutoff={settings.cutoff} is out of range: this model has {num_ws} ws, pass 0..{num_ws}")
    if c_dim == 0 and settings.class_idx is not None:
        raise ParamError(
            f"class={settings.class_idx} was given but this model is unconditional (c_dim=0): leave class empty"
        )
    if c_dim > 0 and settings.class_idx is None:
        raise ParamError(f"this model is conditional with {c_dim} classes: pass class=0..{c_dim - 1}")
    if settings.class_idx is not None and settings.class_idx >= c_dim:  # c_dim > 0: checked above.
        raise ParamError(f"class={settings.class_idx} is out of range: this model has classes 0..{c_dim - 1}")
    if settings.mixing or settings.walking or settings.psi != 1 or settings.cutoff is not None or any(settings.dirs):
        if not stylegan:
            raise ParamError(
                "style mixing, latent walks, truncation and directions need a StyleGAN2 or StyleGAN3 generator; "
                "this model is a DCGAN: use seed, grid and class only"
            )
    for name in ("mix_from", "mix_to"):
        value = getattr(settings, name)
        if value > max(num_ws - 1, 0):
            raise ParamError(f"{name}={value} is out of range: this model has ws 0..{num_ws - 1}")
    if settings.mixing and settings.mix_from > settings.mix_to:
        raise ParamError(
            f"mix_from={settings.mix_from} is above mix_to={settings.mix_to}: the layer range is mix_from..mix_to"
        )
    if not settings.mixing and (settings.mix_from or settings.mix_to):
        settings = replace(settings, mix_from=0, mix_to=0)  # Layers without a mix seed mean nothing.
    return settings
