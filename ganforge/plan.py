"""The Plan: one pure function from (preset, resolution, overrides) to a resolved architecture.

Every network, the inspector and every compatibility check reads a Plan; no module computes a
channel count, a block size or a flatten size on its own. A mismatch is found by comparing two
Plans (or a Plan and a dataset) and reported as one sentence that says what to change.

Resolutions are `base · 2^k`: (H, W) = (h0·2^k, w0·2^k) with the short base side in 4..7 and the
long base side at most 32. Square powers of two get the official 4×4 base.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from ganforge.config import MODEL_PRESETS, ModelPreset, model_preset
from ganforge.errors import GanforgeError
from ganforge.plan_sg3 import FAMILIES as _SG3_FAMILIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ganforge.plan_sg3 import SG3Layer


class PlanError(GanforgeError, ValueError):
    """A configuration that cannot be built; the message says what to change."""


MIN_BASE = 4  # Short side of the first block (the official const is 4×4).
MAX_SHORT_BASE = 7  # A larger short base would mean the size has a factor that is not base·2^k.
MAX_LONG_BASE = 32  # Aspect ratio limit: the long base side of the first block.
MAX_SIDE = 16384


# ----------------------------------------------------------------------------
# Resolution parsing and the base·2^k decomposition.


def parse_resolution(value: int | str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Parse a resolution as written by users: 256, "256", "512x256" (W x H). Returns (H, W)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise PlanError(f"resolution {value!r} must be (H, W)")
        h, w = int(value[0]), int(value[1])
    elif isinstance(value, int):
        h = w = value
    else:
        text = str(value).strip().lower()
        m = re.fullmatch(r"(\d+)\s*(?:[x×*]\s*(\d+))?", text)
        if not m:
            raise PlanError(f"resolution {value!r} is not a size: write 256 for 256x256, or WxH such as 512x256")
        w = int(m.group(1))
        h = int(m.group(2)) if m.group(2) else w
    if h <= 0 or w <= 0 or max(h, w) > MAX_SIDE:
        raise PlanError(f"resolution {w}x{h} (WxH) is out of range: each side must be 1..{MAX_SIDE}")
    return h, w


def format_resolution(h: int, w: int) -> str:
    """The user-facing spelling, WxH as in image tools."""
    return f"{w}x{h}"


def decompose(h: int, w: int) -> tuple[int, int, int] | None:
    """(h0, w0, k) with h = h0·2^k, w = w0·2^k and a valid base, or None."""
    k = 0
    while h % (2 ** (k + 1)) == 0 and w % (2 ** (k + 1)) == 0 and min(h, w) // 2 ** (k + 1) >= MIN_BASE:
        k += 1
    h0, w0 = h // 2**k, w // 2**k
    if min(h0, w0) < MIN_BASE or min(h0, w0) > MAX_SHORT_BASE or max(h0, w0) > MAX_LONG_BASE:
        return None
    return h0, w0, k


def nearest_valid(h: int, w: int, count: int = 3) -> list[tuple[int, int]]:
    """Valid sizes closest to (h, w), keeping the aspect ratio where possible."""
    candidates = set()
    for k in range(0, 13):
        for s in range(MIN_BASE, MAX_SHORT_BASE + 1):
            short = s * 2**k
            for long_base in range(s, MAX_LONG_BASE + 1):
                long = long_base * 2**k
                if long > 2 * max(h, w) + 64:
                    break
                candidates.add((short, long))
    scored = []
    for short, long in candidates:
        hh, ww = (short, long) if h <= w else (long, short)
        if decompose(hh, ww) is None:
            continue
        scored.append((abs(math.log(hh / h)) + abs(math.log(ww / w)), hh, ww))
    scored.sort()
    return [(hh, ww) for _, hh, ww in scored[:count]]


def check_resolution(h: int, w: int) -> tuple[int, int, int]:
    """decompose() or a PlanError naming the nearest valid sizes."""
    base = decompose(h, w)
    if base is None:
        near = ", ".join(format_resolution(hh, ww) for hh, ww in nearest_valid(h, w))
        raise PlanError(
            f"resolution {format_resolution(h, w)} (WxH) is not base·2^k: both sides must be a "
            f"small base (short side 4..7, long side <= 32) times the same power of two; "
            f"nearest valid sizes: {near}"
        )
    return base


def block_name(h: int, w: int) -> str:
    """Official block names for square blocks (b64); height×width otherwise (b32x64)."""
    return f"b{h}" if h == w else f"b{h}x{w}"


# ----------------------------------------------------------------------------
# The Plan.


@dataclass(frozen=True)
class Plan:
    """A resolved architecture. Construct with `make_plan`; every field is plain data (JSON-able).

    Example:
        ```python
        plan = make_plan("paper256", 256)
        plan.num_ws, plan.block_names[-1], plan.channels[-1]  # 14, 'b256', 64
        ```
    """

    family: str  # "stylegan2", "stylegan3-t", "stylegan3-r" or "dcgan".
    preset: str  # Name of the preset it came from.
    height: int  # Output image height in pixels.
    width: int  # Output image width in pixels.
    base_h: int  # Height of the first (const) block.
    base_w: int  # Width of the first (const) block.
    img_channels: int = 3  # 3 = RGB, 1 = grayscale.
    c_dim: int = 0  # Number of class labels; 0 = unconditional.
    z_dim: int = 512  # Input latent size.
    w_dim: int = 512  # Intermediate latent size.
    mapping_layers: int = 8  # Depth of the mapping network.
    mapping_lr_mult: float = 0.01  # Learning-rate multiplier of the mapping network.
    w_avg_beta: float = 0.995  # Decay of the running w_avg used for truncation.
    channels: tuple[int, ...] = ()  # Feature maps per block, base block first.
    cbase: int = 0  # Channel base the channels came from (0 = an explicit table).
    cmax: int = 0  # Channel cap the channels came from (0 = an explicit table).
    g_architecture: str = "skip"  # Generator: orig | skip | resnet.
    d_architecture: str = "resnet"  # Discriminator: orig | skip | resnet.
    style: str = "modulated"  # Style layer: modulated (StyleGAN2) | adain (StyleGAN1).
    g_input: str = "const"  # First-block input: const (learned) | noconst (dense from w[0]).
    num_fp16_res: int = 0  # Top resolutions run in reduced precision on GPUs; 0 = none.
    fp16_dtype: str = "bf16"  # Reduced precision type: bf16 | fp16.
    conv_clamp: float | None = None  # Clamp conv outputs to ±X; None = off.
    mbstd_group: int = 4  # Minibatch-stddev group size; 0 = whole batch.
    mbstd_channels: int = 1  # Minibatch-stddev feature channels; 0 = off.
    cmap_dim: int | None = None  # Conditional D projection size; None = channels of the last block.
    d_mapping_layers: int = 8  # Depth of D's label mapping (conditional models only).
    # StyleGAN3 generators (families stylegan3-t and stylegan3-r; ignored by the others). Official names in
    # brackets; ganforge.plan_sg3 turns them into the per-layer geometry.
    sg3_layers: int = 14  # Synthesis layers between the Fourier input and ToRGB [num_layers].
    sg3_critical: int = 2  # Critically sampled layers at the end [num_critical].
    sg3_first_cutoff: float = 2.0  # Cutoff f_c of the first layer, cycles per image [first_cutoff].
    sg3_first_stopband: float = 2**2.1  # Minimum stopband f_t of the first layer [first_stopband].
    sg3_last_stopband_rel: float = 2**0.3  # Last layer's minimum stopband / its cutoff [last_stopband_rel].
    sg3_margin: int = 10  # Extra pixels on each side of the inner layers' canvases [margin_size].
    sg3_output_scale: float = 0.25  # Scale of the ToRGB output [output_scale].
    sg3_conv_kernel: int = 3  # Modulated conv kernel: 3 (T) or 1 (R); ToRGB is always 1x1 [conv_kernel].
    sg3_radial_filters: bool = False  # Radially symmetric downsampling filters (R) [use_radial_filters].
    sg3_filter_size: int = 6  # Low-pass filter taps per factor of up/downsampling [filter_size].
    sg3_lrelu_upsampling: int = 2  # Leaky ReLU runs at this multiple of the sampling rate [lrelu_upsampling].
    sg3_cbase: int = 0  # G's channel base: C = min(sg3_cbase/2 / f_c, sg3_cmax) [channel_base]; 0 if not SG3.
    sg3_cmax: int = 0  # G's channel cap [channel_max]; R doubles cbase and cmax (D keeps cbase, cmax).
    magnitude_ema_beta: float = 0.999  # Decay of each layer's input-magnitude average [magnitude_ema_beta].

    # Derived ----------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return len(self.channels)

    @property
    def block_sizes(self) -> list[tuple[int, int]]:
        """(h, w) of every generator block, base first."""
        return [(self.base_h * 2**i, self.base_w * 2**i) for i in range(self.num_blocks)]

    @property
    def block_names(self) -> list[str]:
        return [block_name(h, w) for h, w in self.block_sizes]

    @property
    def num_ws(self) -> int:
        """StyleGAN2: one w per conv (1 in the base block, 2 elsewhere) plus the final ToRGB. StyleGAN3: one for
        the Fourier input, one per layer, one for ToRGB. DCGAN: 0."""
        if self.family == "stylegan2":
            return 2 * self.num_blocks
        if self.is_sg3:
            return self.sg3_layers + 2
        return 0

    @property
    def is_sg3(self) -> bool:
        """A StyleGAN3 generator (stylegan3-t or stylegan3-r); its discriminator is StyleGAN2's."""
        return self.family in _SG3_FAMILIES

    def discriminator_plan(self) -> Plan:
        """The Plan of this model's discriminator: StyleGAN3 models use StyleGAN2's, whose fields they share."""
        return dataclasses.replace(self, family="stylegan2") if self.is_sg3 else self

    @property
    def sg3_geometry(self) -> list[SG3Layer]:
        """The StyleGAN3 synthesis layers (names, channels, sizes, rates, filters' specs), L0 first, ToRGB last."""
        from ganforge.plan_sg3 import layers

        return layers(self)

    def fp16_block(self, index: int) -> bool:
        """Reduced precision for the top `num_fp16_res` blocks, never for the base block."""
        return index >= max(self.num_blocks - self.num_fp16_res, 1)

    @property
    def resolution_text(self) -> str:
        return format_resolution(self.height, self.width)

    @property
    def shape(self) -> list[int]:
        return [self.img_channels, self.height, self.width]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: object, source: str = "the plan") -> Plan:
        """A Plan from untrusted JSON (checkpoint metadata): every field type- and range-checked first."""
        if not isinstance(d, dict):
            raise PlanError(f"{source} is a {type(d).__name__}, not an object of plan fields: the file is damaged")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            shown = sorted(str(k)[:40] for k in unknown)[:5]
            raise PlanError(f"{source} has unknown fields {shown}: it was written by a newer ganforge or is damaged")
        missing = {"family", "preset", "height", "width", "base_h", "base_w", "channels"} - set(d)
        if missing:
            raise PlanError(f"{source} lacks the fields {sorted(missing)}: the file is damaged")
        d = dict(d)
        channels = d["channels"]
        if not isinstance(channels, (list, tuple)) or len(channels) > MAX_BLOCKS:
            raise PlanError(
                f"{source}: channels must be a list of at most {MAX_BLOCKS} block widths: the file is damaged"
            )
        d["channels"] = tuple(channels)
        for f in dataclasses.fields(cls):
            problem = field_type_problem(f.name, d[f.name]) if f.name in d else None
            if problem:
                raise PlanError(f"{source}: {problem}: the file is damaged")
        plan = cls(**d)
        try:
            validate(plan)
        except PlanError as e:
            raise PlanError(f"{source}: {e}") from None
        return plan


def channels_for(
    sizes: list[tuple[int, int]],
    cbase: int,
    cmax: int,
    table: dict[int, int] | None = None,
) -> tuple[int, ...]:
    """Official formula C(r) = min(cbase // r, cmax), r = the block's long side; or a table."""
    out = []
    for h, w in sizes:
        r = max(h, w)
        if table is not None:
            if r not in table:
                have = ", ".join(str(k) for k in sorted(table))
                raise PlanError(
                    f"the channel table has no entry for resolution {r} (block {block_name(h, w)}); "
                    f"it has {have}: give R=C for every block from {max(sizes[0])} to {max(sizes[-1])}"
                )
            c = int(table[r])
        else:
            c = min(cbase // r, cmax)
        if c < 1:
            raise PlanError(
                f"block {block_name(h, w)} would get {c} channels: raise cbase ({cbase}) or give a channel table"
            )
        out.append(c)
    return tuple(out)


_CHOICES = {
    "family": ("stylegan2", *_SG3_FAMILIES, "dcgan"),
    "g_architecture": ("orig", "skip", "resnet"),
    "d_architecture": ("orig", "skip", "resnet"),
    "style": ("modulated", "adain"),
    "g_input": ("const", "noconst"),
    "fp16_dtype": ("bf16", "fp16"),
}


def make_plan(
    preset: str = "config-f",
    resolution: int | str | tuple[int, int] = 1024,
    *,
    family: str = "stylegan2",
    img_channels: int = 3,
    c_dim: int = 0,
    channel_table: dict[int, int] | None = None,
    **overrides,
) -> Plan:
    """Resolve a preset at a resolution, with field overrides (cbase, cmax, z_dim, …); a PlanError says what to change.

    Example:
        ```python
        plan = make_plan("tiny", "64x32", c_dim=3, num_fp16_res=2)  # 64 wide, 32 tall (WxH); a Plan field override
        ```
    """
    if preset not in MODEL_PRESETS:
        raise PlanError(f"unknown model preset {str(preset)[:40]!r}; choose one of: {', '.join(MODEL_PRESETS)}")
    h, w = parse_resolution(resolution)
    if family in _SG3_FAMILIES:
        from ganforge.plan_sg3 import resolution_problem

        problem = resolution_problem(h, w)
        if problem:
            raise PlanError(problem)
    h0, w0, k = check_resolution(h, w)
    p: ModelPreset = model_preset(preset, h, w)
    sizes = [(h0 * 2**i, w0 * 2**i) for i in range(k + 1)]
    for key in ("cbase", "cmax"):
        problem = field_type_problem(key, overrides[key]) if key in overrides else None
        if problem:
            raise PlanError(f"model option {problem}")
    cbase = overrides.pop("cbase", p.cbase)
    cmax = overrides.pop("cmax", p.cmax)
    channels = channels_for(sizes, cbase, cmax, channel_table)
    fields: dict[str, Any] = dict(  # Plan's keyword arguments; each override is type-checked below.
        family=family,
        preset=preset,
        height=h,
        width=w,
        base_h=h0,
        base_w=w0,
        img_channels=img_channels,
        c_dim=c_dim,
        z_dim=p.z_dim,
        w_dim=p.w_dim,
        mapping_layers=p.mapping_layers,
        channels=channels,
        cbase=0 if channel_table else cbase,
        cmax=0 if channel_table else cmax,
        g_architecture=p.g_architecture,
        d_architecture=p.d_architecture,
        num_fp16_res=p.num_fp16_res,
        conv_clamp=p.conv_clamp,
        mbstd_group=p.mbstd_group,
    )
    if family in _SG3_FAMILIES:
        fields.update(sg3_defaults(family, cbase, cmax))
    options = {f.name for f in dataclasses.fields(Plan)} - {
        "height",
        "width",
        "base_h",
        "base_w",
        "channels",
        "preset",
        "cbase",
        "cmax",
    }
    for key, value in overrides.items():
        if key not in options:
            raise PlanError(
                f"unknown model option {key}={str(value)[:40]!r}; valid options: cbase, cmax, "
                + ", ".join(sorted(options))
            )
        problem = field_type_problem(key, value)
        if problem:
            raise PlanError(f"model option {problem}")
        fields[key] = value
    plan = Plan(**fields)
    validate(plan)
    return plan


def sg3_defaults(family: str, cbase: int, cmax: int) -> dict[str, Any]:
    """The official train.py settings of --cfg=stylegan3-t / stylegan3-r that differ from the Plan's defaults:
    a 2-layer mapping with w_avg_beta 0.998; R with 1x1 convolutions, radial filters and twice the channel base
    and cap in G (D keeps `cbase`, `cmax`). Explicit make_plan options override them."""
    r = family == "stylegan3-r"
    return dict(
        mapping_layers=2,
        w_avg_beta=0.998,
        sg3_cbase=cbase * (2 if r else 1),
        sg3_cmax=cmax * (2 if r else 1),
        sg3_conv_kernel=1 if r else 3,
        sg3_radial_filters=r,
    )


# Sane bounds on every numeric Plan field: far above any published model (XXXL: z 1024, 1024 channels,
# 8 mapping layers), far below what would exhaust a machine when a hostile file asks for it.
MAX_BLOCKS = 13  # 4 * 2**12 = 16384 = MAX_SIDE.
BOUNDS: dict[str, tuple[float, float]] = {
    "height": (1, MAX_SIDE),
    "width": (1, MAX_SIDE),
    "base_h": (1, MAX_LONG_BASE),
    "base_w": (1, MAX_LONG_BASE),
    "img_channels": (1, 16),
    "c_dim": (0, 100_000),
    "z_dim": (1, 8192),
    "w_dim": (1, 8192),
    "mapping_layers": (1, 64),
    "mapping_lr_mult": (1e-8, 100.0),
    "w_avg_beta": (0.0, 1.0),
    "cbase": (0, 2**24),
    "cmax": (0, 16384),
    "num_fp16_res": (0, MAX_BLOCKS + 1),
    "conv_clamp": (1e-6, 1e9),
    "mbstd_group": (0, 4096),
    "mbstd_channels": (0, 256),
    "cmap_dim": (1, 16384),
    "d_mapping_layers": (0, 64),
    "sg3_layers": (1, 64),
    "sg3_critical": (0, 63),
    "sg3_first_cutoff": (1e-3, MAX_SIDE / 2),
    "sg3_first_stopband": (1e-3, MAX_SIDE),
    "sg3_last_stopband_rel": (1.0, 64.0),
    "sg3_margin": (0, 256),
    "sg3_output_scale": (1e-6, 1e6),
    "sg3_conv_kernel": (1, 15),
    "sg3_filter_size": (1, 64),
    "sg3_lrelu_upsampling": (1, 16),
    "sg3_cbase": (0, 2**24),
    "sg3_cmax": (0, 16384),
    "magnitude_ema_beta": (0.0, 1.0),
}
MAX_CHANNELS = 16384  # Feature maps of one block.
_FLOAT_FIELDS = (
    "mapping_lr_mult",
    "w_avg_beta",
    "conv_clamp",
    "sg3_first_cutoff",
    "sg3_first_stopband",
    "sg3_last_stopband_rel",
    "sg3_output_scale",
    "magnitude_ema_beta",
)
_BOOL_FIELDS = ("sg3_radial_filters",)
_OPTIONAL_FIELDS = ("conv_clamp", "cmap_dim")


def field_type_problem(name: str, value: object) -> str | None:
    """None when `value` has the JSON type of Plan field `name` (strings where strings, ints where ints and never
    bools, finite floats); else what is wrong, e.g. "z_dim='512' is not a whole number"."""
    if value is None and name in _OPTIONAL_FIELDS:
        return None
    if name == "channels":
        if not isinstance(value, (list, tuple)):
            return f"channels={str(value)[:40]!r} is not a list of whole numbers"
        bad = [c for c in value if isinstance(c, bool) or not isinstance(c, int)]
        return f"channels holds {str(bad[0])[:40]!r}, not a whole number" if bad else None
    if name in _BOOL_FIELDS:
        return None if isinstance(value, bool) else f"{name}={str(value)[:40]!r} is not true or false"
    if name in _CHOICES or name == "preset":
        if not isinstance(value, str) or len(value) > 64:
            return f"{name}={str(value)[:40]!r} is not one of the names it takes"
        return None
    if name in _FLOAT_FIELDS or name in ("cbase", "cmax"):
        if name in _FLOAT_FIELDS:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if ok:
        return None
    kind = "a finite number" if name in _FLOAT_FIELDS else "a whole number"
    return f"{name}={str(value)[:40]!r} is not {kind}"


def _number(x: float) -> str:
    return f"{x:g}" if x != int(x) or abs(x) < 1e6 else f"{int(x):,}"


def validate(plan: Plan) -> None:
    """Raise PlanError with a readable sentence for any inconsistent or out-of-range field."""
    for name, choices in _CHOICES.items():
        value = getattr(plan, name)
        if value not in choices:
            raise PlanError(f"{name}={value!r} is not valid; choose one of: {', '.join(choices)}")
    for name, (lo, hi) in BOUNDS.items():
        value = getattr(plan, name)
        if value is None and name in _OPTIONAL_FIELDS:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (lo <= value <= hi):
            raise PlanError(f"{name} must be a number in {_number(lo)}..{_number(hi)}, got {str(value)[:40]}")
    if not isinstance(plan.sg3_radial_filters, bool):
        raise PlanError(f"sg3_radial_filters={str(plan.sg3_radial_filters)[:40]!r} is not true or false")
    if plan.is_sg3:
        from ganforge.plan_sg3 import resolution_problem, settings_problem

        problem = resolution_problem(plan.height, plan.width) or settings_problem(plan)
        if problem:
            raise PlanError(problem)
    if not 1 <= len(plan.channels) <= MAX_BLOCKS:
        raise PlanError(f"the plan has {len(plan.channels)} blocks; a model has 1..{MAX_BLOCKS}")
    for c in plan.channels:
        if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= MAX_CHANNELS:
            raise PlanError(f"a block of {str(c)[:40]} channels is out of range: each block has 1..{MAX_CHANNELS}")
    if plan.g_input == "noconst" and (plan.base_h % 2 or plan.base_w % 2):
        raise PlanError(
            f"g_input='noconst' grows the first block from a half-size map, so its base "
            f"{plan.base_w}x{plan.base_h} must have even sides; use a const input or another resolution"
        )
    if check_resolution(plan.height, plan.width)[:2] != (plan.base_h, plan.base_w):
        raise PlanError(
            f"the plan's base {plan.base_w}x{plan.base_h} does not fit its size {plan.resolution_text}: "
            f"a plan must come from make_plan (a file holding this one is damaged)"
        )
    if len(plan.channels) != check_resolution(plan.height, plan.width)[2] + 1:
        raise PlanError(
            f"the plan lists {len(plan.channels)} block widths but its size {plan.resolution_text} has "
            f"{check_resolution(plan.height, plan.width)[2] + 1} blocks: a plan must come from make_plan "
            f"(a file holding this one is damaged)"
        )
