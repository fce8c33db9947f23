"""The training configuration: one typed schema for the command line, TOML files, --dry-run and config.json.

Every option is one field of TrainConfig, declared with `opt(default, help, group, ...)`: its type comes from
the annotation, its range and choices from the metadata. `ganforge train`'s options are generated from these
fields, TOML keys are the field names (dashes or underscores), and `to_dict()` writes the same keys, so a
--dry-run or a run's config.json can be passed back with --config. Precedence: command line > TOML file >
preset (recipe and capacity, filled in once the data's size and the number of processes are known).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ganforge.config import MODEL_PRESETS
from ganforge.errors import GanforgeError
from ganforge.training.recipes import RECIPES


class ConfigError(GanforgeError, ValueError):
    """An invalid training option; the message names the option and the fix."""


MAIN, MODEL, HYPER, AUG, TRANSFER, PERF, IO = (
    "Main",
    "Model",
    "Hyperparameters",
    "Augmentation",
    "Transfer and freezing",
    "Performance",
    "Input/output",
)
FAMILIES = ("stylegan2", "stylegan3-t", "stylegan3-r", "dcgan")
SG3_FAMILIES = ("stylegan3-t", "stylegan3-r")
PRESET_NAMES = tuple(RECIPES) + tuple(n for n in MODEL_PRESETS if n not in RECIPES)
ARCHS = ("orig", "skip", "resnet")


@dataclass(frozen=True)
class Opt:
    """How one option is shown and checked."""

    help: str
    group: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    lo: float | None = None  # Inclusive bounds for numbers (and every value of a schedule).
    hi: float | None = None
    schedule: bool = False  # A number or a schedule string ('0.002,0.0002@10000', 'linear:10,5@5000').
    none_means: str | None = None  # What an unset (None) value means, for --help.
    cli: bool = True  # Has a command-line flag.


def opt(default: Any, help: str, group: str, **kwargs) -> Any:
    """A TrainConfig field: its default and how it is shown and checked (see Opt)."""
    factory = {"default_factory": (lambda: default)} if isinstance(default, (list, dict)) else {"default": default}
    return field(**factory, metadata={"opt": Opt(help, group, **kwargs)})


@dataclass
class TrainConfig:
    """Every training option, typed and checked; unset values (None) come from the preset at the data's size.

    Example:
        ```python
        from ganforge import TrainConfig
        from ganforge.training.loop import train

        cfg = TrainConfig(data="faces-256.zip", preset="paper256", kimg=1000, g_lr="0.0025,0.001@500")
        state = train(cfg)  # Checks cfg (cfg.resolved()), then fills the preset from the data.
        ```
    """

    # Main.
    data: str = opt("", "Dataset folder or zip (see `ganforge dataset prepare`).", MAIN, metavar="PATH")
    outdir: str = opt("runs", "Parent folder of run folders.", MAIN, metavar="DIR")
    run_name: str | None = opt(None, "Run folder name.", MAIN, none_means="FAMILY-PRESET-WxH-DATA")
    preset: str = opt("auto", "Training recipe and capacity (see the list above).", MAIN, choices=PRESET_NAMES)
    family: str = opt(
        "stylegan2",
        "Model family: stylegan2, stylegan3-t / stylegan3-r (StyleGAN3 G, StyleGAN2 D; --gamma required) or dcgan.",
        MAIN,
        choices=FAMILIES,
    )
    resolution: str = opt(
        "auto", "Model size, WxH or R; it must be the data's (auto = the data's).", MAIN, metavar="WxH|auto"
    )
    kimg: float = opt(25000.0, "Length of the run in thousands of real images shown to D.", MAIN, lo=0.001, hi=1e9)
    batch: int | None = opt(None, "Global batch size.", MAIN, lo=1, hi=1 << 20, none_means="preset")
    batch_gpu: int | None = opt(
        None,
        "Images per pass per process; smaller than the per-process batch = "
        "gradient accumulation (same batch, less memory).",
        PERF,
        lo=1,
        hi=1 << 20,
        none_means="the whole per-process batch",
    )
    cond: bool = opt(False, "Train with the dataset's class labels.", MAIN)
    seed: int = opt(0, "Random seed (data order, latents, noise).", MAIN, lo=0, hi=2**32 - 1)
    device: str = opt("auto", "auto, cpu, cuda or cuda:N.", MAIN)
    resume: str | None = opt(None, "Continue a run: latest or a checkpoint path.", MAIN, metavar="latest|PATH")
    # Model (the names `ganforge inspect` uses).
    model: str | None = opt(
        None,
        "Capacity preset, overriding the --preset's.",
        MODEL,
        choices=tuple(MODEL_PRESETS),
        none_means="the preset's",
    )
    cbase: int | None = opt(
        None, "Channel base: C(r) = min(cbase // r, cmax).", MODEL, lo=1, hi=2**24, none_means="preset"
    )
    cmax: int | None = opt(None, "Channel cap.", MODEL, lo=1, hi=16384, none_means="preset")
    channels: str | dict | None = opt(
        None,
        "Per-resolution channels, e.g. 4=512,8=512,16=256 (every block).",
        MODEL,
        metavar="R=C,...",
        none_means="cbase/cmax",
    )
    z_dim: int | None = opt(None, "Latent z size.", MODEL, lo=1, hi=8192, none_means="preset")
    w_dim: int | None = opt(None, "Latent w size.", MODEL, lo=1, hi=8192, none_means="preset")
    map: int | None = opt(None, "Mapping network depth.", MODEL, lo=1, hi=64, none_means="preset")
    g_arch: str | None = opt(None, "Generator architecture.", MODEL, choices=ARCHS, none_means="preset")
    d_arch: str | None = opt(None, "Discriminator architecture.", MODEL, choices=ARCHS, none_means="preset")
    style: str = opt(
        "modulated", "Style layer: modulated (StyleGAN2) or adain (StyleGAN1).", MODEL, choices=("modulated", "adain")
    )
    input: str = opt(
        "const", "First block input: const (learned) or noconst (dense from w).", MODEL, choices=("const", "noconst")
    )
    fp16_res: int | None = opt(None, "Top resolutions in reduced precision.", MODEL, lo=0, hi=14, none_means="preset")
    conv_clamp: float | str | None = opt(
        None, "Clamp conv outputs to ±X, or none.", MODEL, metavar="X|none", none_means="preset"
    )
    mbstd_group: int | None = opt(
        None, "Minibatch-stddev group size (0 = whole batch).", MODEL, lo=0, hi=4096, none_means="preset"
    )
    patch_d: bool = opt(False, "DCGAN: fully convolutional PatchGAN discriminator.", MODEL)
    # Hyperparameters.
    loss: str = opt(
        "auto",
        "Recipe of the loss: stylegan2 (non-saturating logistic, lazy R1 and path length) or "
        "dcgan (the classic: BCE, Adam 2e-4 with β1 0.5, no regularization, no augmentation); auto = "
        "dcgan for --family dcgan.",
        HYPER,
        choices=("auto", "stylegan2", "dcgan"),
    )
    beta1: float | None = opt(None, "Adam β1.", HYPER, lo=0, hi=0.9999, none_means="0, or 0.5 with the dcgan loss")
    beta2: float | None = opt(None, "Adam β2.", HYPER, lo=0, hi=0.9999, none_means="0.99, or 0.999 with the dcgan loss")
    g_lr: float | str | None = opt(
        None,
        "G learning rate, or a schedule: 0.002,0.0002@10000.",
        HYPER,
        lo=0,
        hi=10,
        schedule=True,
        none_means="preset",
    )
    d_lr: float | str | None = opt(
        None,
        "D learning rate or schedule.",
        HYPER,
        lo=0,
        hi=10,
        schedule=True,
        none_means="G's; 0.002 for StyleGAN3",
    )
    d_lr_mult: float = opt(1.0, "D learning rate multiplier (2 = D at twice G's rate).", HYPER, lo=0, hi=1000)
    gamma: float | str | None = opt(
        None,
        "R1 weight (0 = off), or a schedule: linear:10,5@5000.",
        HYPER,
        lo=0,
        hi=1e6,
        schedule=True,
        none_means="preset; required for StyleGAN3",
    )
    r1_interval: int = opt(16, "Lazy R1: every N D steps.", HYPER, lo=1, hi=10000)
    pl_weight: float | None = opt(None, "Path-length weight (0 = off).", HYPER, lo=0, hi=1e4, none_means="preset")
    pl_interval: int = opt(4, "Lazy path length: every N G steps.", HYPER, lo=1, hi=10000)
    pl_batch_shrink: int = opt(2, "Path-length batch = batch // this.", HYPER, lo=1, hi=1024)
    pl_decay: float = opt(0.01, "Decay of the path-length mean.", HYPER, lo=0, hi=1)
    style_mixing: float | str | None = opt(
        None,
        "Style-mixing probability (0 = off), or a schedule.",
        HYPER,
        lo=0,
        hi=1,
        schedule=True,
        none_means="preset",
    )
    ema_kimg: float | None = opt(None, "G EMA half-life in kimg.", HYPER, lo=0, hi=1e9, none_means="preset")
    ema_rampup: float | None = opt(None, "EMA ramp-up ratio (0 = off).", HYPER, lo=0, hi=100, none_means="preset")
    blur_init_sigma: float | None = opt(
        None,
        "σ in pixels of the Gaussian blur of every image D sees at the start, fading linearly to 0 over "
        "--blur-fade-kimg (official StyleGAN3-R); 0 = off.",
        HYPER,
        lo=0,
        hi=1000,
        none_means="10 for stylegan3-r (0 with --init), else 0",
    )
    blur_fade_kimg: float | None = opt(
        None, "kimg over which D's blur fades out.", HYPER, lo=0, hi=1e9, none_means="batch·200/32"
    )
    # Augmentation.
    mirror: bool = opt(False, "Add x-flipped copies of the data.", AUG)
    aug: str | None = opt(
        None,
        "Augmentation.",
        AUG,
        choices=("ada", "fixed", "diffaugment", "none", "noaug"),
        none_means="ada, or none with the dcgan loss",
    )
    aug_pipe: str = opt(
        "bgc",
        "ADA op groups (official --augpipe).",
        AUG,
        choices=("blit", "geom", "color", "filter", "noise", "cutout", "bg", "bgc", "bgcf", "bgcfn", "bgcfnc"),
    )
    aug_p: float = opt(0.0, "Initial (ada) or constant (fixed) augmentation probability.", AUG, lo=0, hi=1)
    ada_target: float | str = opt(
        0.6, "ADA target for E[sign(D(real))], or a schedule.", AUG, lo=0, hi=1, schedule=True
    )
    ada_kimg: float | None = opt(
        None, "ADA speed: kimg for p to move by 1.", AUG, lo=0.001, hi=1e9, none_means="500, or 100 with --init"
    )
    diffaugment: str = opt("color,translation,cutout", "DiffAugment policy.", AUG)
    # Transfer and freezing.
    init: str | None = opt(
        None, "Start from these weights (e.g. `ganforge transfer` output).", TRANSFER, metavar="PATH"
    )
    freeze: str = opt("", "Frozen parts: mapping, G<=512, D<256, G:b64, G, D (comma-separated).", TRANSFER)
    freeze_d: int = opt(0, "FreezeD: freeze the first N D blocks.", TRANSFER, lo=0, hi=64)
    unfreeze_every: float = opt(0.0, "Release one frozen resolution every N kimg (0 = never).", TRANSFER, lo=0, hi=1e9)
    unfreeze_order: str = opt("top-down", "Order of gradual unfreezing.", TRANSFER, choices=("top-down", "bottom-up"))
    # Performance.
    precision: str = opt(
        "auto",
        "auto = bf16 (fp16 where the GPU lacks bf16) in the top fp16-res resolutions on GPUs and bf16 CPUs, else fp32.",
        PERF,
        choices=("auto", "bf16", "fp16", "fp32"),
    )
    compile: bool = opt(False, "torch.compile the main phases (eager fallback).", PERF)
    workers: int = opt(2, "Data loader processes.", PERF, lo=0, hi=64)
    deterministic: bool = opt(False, "Deterministic algorithms (reproducible, slower).", PERF)
    memory_check: bool = opt(True, "Refuse to start when the estimated peak memory does not fit.", PERF)
    # Input/output.
    snap: float = opt(50.0, "kimg between checkpoints and sample grids.", IO, lo=0.001, hi=1e9)
    tick: float = opt(4.0, "kimg between progress lines and stats.", IO, lo=0.001, hi=1e9)
    keep: int = opt(3, "Good checkpoints to keep.", IO, lo=1, hi=1_000_000)
    grid: str = opt("8x4", "Sample grid, COLSxROWS.", IO, metavar="COLSxROWS")
    metrics: str = opt("", "Metrics at every snapshot, e.g. fid50k_full.", IO)
    metrics_num_gen: int | None = opt(
        None, "Generated images per snapshot metric.", IO, lo=1, hi=1_000_000, none_means="the metric's own"
    )
    detector_inception: str | None = opt(
        None, "FID Inception TorchScript file.", IO, metavar="PATH", none_means="package or cache"
    )
    detector_vgg: str | None = opt(
        None, "VGG16 TorchScript file (vgg16.pt) for pr50k3_full and ppl_*.", IO, metavar="PATH", none_means="cache"
    )
    tensorboard: bool = opt(True, "Write TensorBoard logs.", IO)
    # Divergence guard.
    max_failures: int = opt(3, "Rollbacks before giving up.", IO, lo=0, hi=1000)
    rollback_lr_mult: float = opt(0.5, "Learning-rate factor after a rollback.", IO, lo=1e-6, hi=1)

    # ------------------------------------------------------------------------
    def resolved(self) -> TrainConfig:
        """Check every value (type, range, choices, schedules); returns a copy. Preset values stay unset until
        `with_recipe` knows the data's size."""
        c = dataclasses.replace(self)
        for f in dataclasses.fields(c):
            setattr(c, f.name, check_value(f, getattr(c, f.name)))
        c.grid_size  # noqa: B018 - parses and checks the grid text.
        return c

    @property
    def grid_size(self) -> tuple[int, int]:
        """(columns, rows) of the sample grid."""
        parts = str(self.grid).lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ConfigError(f"--grid {self.grid!r}: write COLSxROWS, e.g. 8x4")
        cols, rows = (int(p) for p in parts)
        if not (1 <= cols <= 64 and 1 <= rows <= 64):
            raise ConfigError(f"--grid {self.grid}: each side must be 1..64")
        return cols, rows

    def to_dict(self) -> dict:
        """The TOML keys and values (pass back with --config)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Keys with dashes or underscores; unknown keys are refused with the nearest valid one."""
        values = {str(k).replace("-", "_"): v for k, v in values.items()}
        values = {
            **_legacy_model_table(values.pop("model", None) if isinstance(values.get("model"), dict) else None),
            **values,
        }
        if isinstance(values.get("grid"), (list, tuple)) and len(values["grid"]) == 2:  # Older config.json files.
            values["grid"] = "x".join(str(v) for v in values["grid"])
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise ConfigError(unknown_key_sentence(unknown[0]))
        return cls(**values)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}
# Plan names of an older `[model]` table -> today's keys.
_LEGACY_MODEL_KEYS = {
    "g_input": "input",
    "mapping_layers": "map",
    "g_architecture": "g_arch",
    "d_architecture": "d_arch",
    "num_fp16_res": "fp16_res",
    "channel_table": "channels",
}


def _legacy_model_table(table: dict | None) -> dict:
    return {_LEGACY_MODEL_KEYS.get(k, k): v for k, v in (table or {}).items()}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def unknown_key_sentence(key: str) -> str:
    near = difflib.get_close_matches(key, list(FIELDS), n=1, cutoff=0.5)
    hint = f"did you mean {near[0]}?" if near else "see `ganforge train --help` for the options"
    return f"unknown option {str(key)[:60]!r}: {hint}"


# ----------------------------------------------------------------------------
# Checking one value against its field.

_KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", dict: "a table"}


def _kinds(f: dataclasses.Field) -> list[type]:
    names = [k.strip() for k in str(f.type).split("|")]
    table = {"bool": bool, "int": int, "float": float, "str": str, "dict": dict, "None": type(None)}
    return [table[n] for n in names]


def _is(value: object, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_value(f: dataclasses.Field, value: Any) -> Any:
    """The value, type- and range-checked (a sentence naming the option otherwise)."""
    o: Opt = f.metadata["opt"]
    kinds = _kinds(f)
    name = flag(f.name)
    if value is None and type(None) in kinds:
        return None
    if not any(_is(value, k) for k in kinds):
        wanted = " or ".join(_KIND_WORDS[k] for k in kinds if k in _KIND_WORDS)
        return _fail(f"{name} {_shown(value)}: give {wanted}")
    if isinstance(value, float) and not math.isfinite(value):
        return _fail(f"{name} {value}: give a finite number")
    if o.choices is not None and value not in o.choices:
        return _fail(f"{name} {_shown(value)} is not one of: {', '.join(o.choices)}")
    if o.schedule:
        return _check_schedule(name, value, o)
    if f.name == "channels":
        return parse_channel_table(value)
    if f.name == "conv_clamp":
        return _check_clamp(value)
    if _is(value, float) and not _in_range(value, o):
        return _fail(f"{name} {value}: give a number in {_bounds(o)}")
    return value


def _shown(value: object) -> str:
    """A value as the user typed it: strings quoted, everything cut to 60 characters."""
    return repr(str(value)[:60]) if isinstance(value, str) else str(value)[:60]


def _in_range(value: float, o: Opt) -> bool:
    return (o.lo is None or value >= o.lo) and (o.hi is None or value <= o.hi)


def _bounds(o: Opt) -> str:
    def num(x: float | None) -> str:
        if x is None:
            return "any"
        return f"{int(x):,}" if float(x).is_integer() and abs(x) >= 10_000 else f"{x:g}"

    return f"{num(o.lo)}..{num(o.hi)}"


def _fail(message: str):
    raise ConfigError(message)


def _check_schedule(name: str, value: float | str, o: Opt) -> float | str:
    from ganforge.training.schedule import ScheduleError, parse_schedule

    if isinstance(value, str):
        try:
            value = float(value)  # A plain number stays a number.
        except ValueError:
            pass
    try:
        sched = parse_schedule(value, name)
    except ScheduleError as e:
        raise ConfigError(str(e)) from None
    for _, v in sched.points:
        if not _in_range(v, o):
            raise ConfigError(f"{name} value {v:g} is out of range: give values in {_bounds(o)}")
    return value


def _check_clamp(value: float | str) -> float | str:
    if isinstance(value, str):
        if value.strip().lower() == "none":
            return "none"
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"--conv-clamp {str(value)[:40]!r}: give a number or none") from None
    if not (math.isfinite(value) and 0 < value <= 1e9):
        raise ConfigError(f"--conv-clamp {value}: give a number in 0..1e9 (exclusive of 0), or none")
    return float(value)


def parse_channel_table(value: str | dict) -> dict[str, int]:
    """'4=512,8=512,16=256' or a table {4: 512, "8": 512} -> {"4": 512, "8": 512, ...} (JSON keys)."""
    if isinstance(value, str):
        pairs = [p.split("=", 1) for p in value.replace(" ", "").split(",") if p]
        if any(len(p) != 2 for p in pairs):
            raise ConfigError(f"--channels {value[:60]!r}: write R=C pairs, e.g. 4=512,8=512,16=256")
        value = dict(pairs)
    table = {}
    for res, ch in value.items():
        try:
            r, c = int(res), int(ch)
        except (TypeError, ValueError):
            raise ConfigError(f"--channels entry {str(res)[:20]}={str(ch)[:20]}: both must be whole numbers") from None
        if not (1 <= r <= 16384 and 1 <= c <= 16384) or isinstance(ch, (bool, float)):
            raise ConfigError(f"--channels entry {res}={ch}: resolutions and channels are whole numbers 1..16384")
        table[str(r)] = c
    if not table:
        raise ConfigError("--channels is empty: write R=C pairs, e.g. 4=512,8=512,16=256")
    return table


# ----------------------------------------------------------------------------
# Files.


def load_config_file(path) -> dict:
    """The keys of a TOML (or JSON, e.g. a run's config.json) file; checked when the config is built."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist: check --config")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
        raw = raw.get("config", raw) if isinstance(raw, dict) else raw  # A run's config.json holds {"config": …}.
    else:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # Python 3.10
            import tomli as tomllib
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} does not hold a table of options")
    return {str(k).replace("-", "_"): v for k, v in raw.items()}


def merge(file_values: dict, cli_values: dict) -> TrainConfig:
    """Precedence: command line (options given) > file > defaults (presets fill in later)."""
    return TrainConfig.from_dict({**file_values, **{k: v for k, v in cli_values.items() if v is not None}})


# ----------------------------------------------------------------------------
# Presets: the recipe and capacity fill what the user left unset.


T = TypeVar("T")


def filled(value: T | None, name: str) -> T:
    """A setting that `with_preset` fills in from the data's size (None only before it ran)."""
    if value is None:
        raise ConfigError(f"{flag(name)} has no value yet: the config needs with_preset() (the data's size) first")
    return value


def with_preset(cfg: TrainConfig, height: int, width: int, gpus: int = 1) -> TrainConfig:
    """A copy with every unset training value taken from the preset at this size and process count.

    A recipe preset (auto, stylegan2, paper256 …) brings its capacity and its settings; a capacity-only preset
    (config-f, XL …) takes the settings of `auto`. The user's values always win.
    """
    from ganforge.training.recipes import recipe_for

    is_recipe = cfg.preset in RECIPES
    recipe = recipe_for(cfg.preset if is_recipe else "auto", height, width, gpus)
    c = dataclasses.replace(cfg)
    c.model = cfg.model or (recipe.model if is_recipe else cfg.preset)
    c.batch = cfg.batch or recipe.batch
    c.g_lr = recipe.lr if cfg.g_lr is None else cfg.g_lr
    c.d_lr = c.g_lr if cfg.d_lr is None else cfg.d_lr
    c.gamma = recipe.gamma if cfg.gamma is None else cfg.gamma
    c.pl_weight = recipe.pl_weight if cfg.pl_weight is None else cfg.pl_weight
    c.style_mixing = recipe.style_mixing if cfg.style_mixing is None else cfg.style_mixing
    c.ema_kimg = recipe.ema_kimg if cfg.ema_kimg is None else cfg.ema_kimg
    c.ema_rampup = recipe.ema_rampup if cfg.ema_rampup is None else cfg.ema_rampup
    if cfg.mbstd_group is None and recipe.mbstd_group is not None:
        c.mbstd_group = recipe.mbstd_group
    if cfg.batch is None and cfg.batch_gpu is None and recipe.ref_gpus:  # Official: batch_gpu = batch // ref_gpus.
        c.batch_gpu = max(min(c.batch // recipe.ref_gpus, c.batch // gpus), 1)
    c.loss = cfg.loss if cfg.loss != "auto" else ("dcgan" if cfg.family == "dcgan" else "stylegan2")
    classic = (
        {
            "g_lr": DCGAN_LR,
            "gamma": 0.0,
            "pl_weight": 0.0,
            "style_mixing": 0.0,
            "ema_kimg": 0.0,
            "aug": "none",
            "beta1": 0.5,
            "beta2": 0.999,
        }
        if c.loss == "dcgan"
        else {"aug": "ada", "beta1": 0.0, "beta2": 0.99}
    )
    if cfg.aug is None and recipe.aug is not None:
        c.aug = recipe.aug
    for key, value in classic.items():  # The loss recipe decides what the user and a recipe preset left unset.
        if getattr(cfg, key) is None and not (key == "aug" and recipe.aug is not None):
            setattr(c, key, value)
    if c.loss == "dcgan" and cfg.d_lr is None:
        c.d_lr = c.g_lr
    if cfg.family in SG3_FAMILIES:
        _sg3_recipe(cfg, c, gpus)
    c.blur_init_sigma = _given(cfg.blur_init_sigma, 10.0 if cfg.family == "stylegan3-r" and not cfg.init else 0.0)
    c.blur_fade_kimg = _given(cfg.blur_fade_kimg, filled(c.batch, "batch") * 200 / 32)
    return c


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


def _sg3_recipe(cfg: TrainConfig, c: TrainConfig, gpus: int) -> None:
    """The official StyleGAN3 train.py settings of --cfg=stylegan3-t / stylegan3-r in place of the recipe's:
    G lr 0.0025 and D lr 0.002, no path length or style mixing, EMA batch·10/32 kimg with ramp-up 0.05; `auto`
    means its defaults, batch 32 and config-f capacity (cbase 32768, cmax 512). γ has no default (`require_gamma`).
    What the user gave wins."""
    if cfg.preset == "auto":
        c.model = cfg.model or "stylegan2"
        c.batch = cfg.batch or 32
        if cfg.mbstd_group is None:
            c.mbstd_group = min(c.batch // gpus, 4)
    batch = filled(c.batch, "batch")
    c.g_lr = SG3_G_LR if cfg.g_lr is None else cfg.g_lr
    c.d_lr = SG3_D_LR if cfg.d_lr is None else cfg.d_lr
    c.gamma = cfg.gamma
    c.pl_weight = _given(cfg.pl_weight, 0.0)
    c.style_mixing = 0.0 if cfg.style_mixing is None else cfg.style_mixing
    c.ema_kimg = _given(cfg.ema_kimg, batch * 10 / 32)
    c.ema_rampup = _given(cfg.ema_rampup, 0.05)


def require_gamma(cfg: TrainConfig) -> None:
    """StyleGAN3 runs need an explicit --gamma, as the official train.py does: its best value depends on the data."""
    if cfg.family in SG3_FAMILIES and cfg.gamma is None:
        raise ConfigError(
            f"--family {cfg.family} needs --gamma (the R1 weight; the official StyleGAN3 train.py requires it too): "
            "its recommended configs (batch 32) use 0.5 at 128 px, 2 at 256, 8 at 512 and 32 at 1024 "
            "(×4 per doubling of the resolution), e.g. --gamma 2 for 256x256 data"
        )


def sg3_magnitude_ema_beta(batch: int) -> float:
    """Decay of StyleGAN3's input-magnitude averages per step: a half-life of 20k images (official train.py)."""
    return 0.5 ** (batch / (20 * 1e3))


SG3_G_LR, SG3_D_LR = 0.0025, 0.002  # Official StyleGAN3 train.py: --glr for stylegan3-t/-r and --dlr.


DCGAN_LR = 0.0002  # Radford et al. 2016: Adam, lr 2e-4, β1 0.5.
