"""Typed training configuration: preset defaults < TOML file < command line.

The resolved config is printed at start and saved with the run (`config.json`) and in every
checkpoint, so `--resume latest` continues with the same settings.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ganforge.config import PRESETS
from ganforge.errors import GanforgeError


class ConfigError(GanforgeError, ValueError):
    """An invalid training option; the message names the option and the fix."""


_NUMBER = (int, float)
_KINDS = {"str": str, "int": int, "float": _NUMBER, "bool": bool, "None": type(None), "dict": dict,
          "tuple[int, int]": (tuple, list)}
_KIND_WORDS = {"str": "a string", "int": "a whole number", "float": "a number", "bool": "true or false",
               "None": "nothing", "dict": "a table", "tuple[int, int]": "two whole numbers"}


@dataclass
class TrainConfig:
    # Main.
    data: str = ""  # Dataset folder or zip (prepared, or any folder of same-size images).
    outdir: str = "runs"  # Parent directory of run directories.
    run_name: str | None = None  # Run directory name; None = <preset>-<resolution>-<data name>.
    family: str = "stylegan2"  # stylegan2 | dcgan.
    preset: str = "tiny"  # Capacity/training preset (see `ganforge inspect`).
    resolution: str = "auto"  # WxH, R, or auto = taken from the data.
    cond: bool = False  # Train with the dataset's class labels.
    patch_d: bool = False  # DCGAN only: fully convolutional PatchGAN discriminator.
    model: dict = field(default_factory=dict)  # Plan overrides: cbase, cmax, z_dim, g_architecture, …
    kimg: float = 25000.0  # Length of the run in thousands of real images shown to D.
    batch: int | None = None  # Global batch size; None = preset.
    batch_gpu: int | None = None  # Images per forward/backward pass per process (gradient accumulation); None = all.
    seed: int = 0  # Seeds data order, latents and noise (with rank and step).
    device: str = "auto"  # auto | cpu | cuda | cuda:N.
    # Hyperparameters.
    g_lr: float | str | None = None  # G learning rate or schedule ('0.002,0.0002@10000'); None = preset.
    d_lr: float | str | None = None  # D learning rate or schedule; None = G's.
    d_lr_mult: float = 1.0  # D learning rate = d_lr × this.
    gamma: float | str | None = None  # R1 weight or schedule ('linear:10,5@5000'); None = preset; 0 = off.
    r1_interval: int = 16  # Lazy R1: every N D steps.
    pl_weight: float | None = None  # Path-length weight; None = preset; 0 = off.
    pl_interval: int = 4  # Lazy path length: every N G steps.
    pl_batch_shrink: int = 2  # Path-length batch = batch // this.
    pl_decay: float = 0.01  # Decay of the path-length mean.
    style_mixing: float | str | None = None  # Style-mixing probability or schedule; None = preset; 0 = off.
    ema_kimg: float | None = None  # G EMA half-life in kimg; None = preset.
    ema_rampup: float | None = -1.0  # EMA ramp-up ratio; -1 = preset; None = off.
    mirror: bool = False  # Add x-flipped copies of the data.
    aug: str = "ada"  # ada (adaptive p) | fixed (constant --aug-p) | diffaugment | none.
    aug_pipe: str = "bgc"  # ADA op groups (official --augpipe): blit, geom, color, bg, bgc, bgcf, bgcfn, bgcfnc.
    aug_p: float = 0.0  # Initial (ada) or constant (fixed) augmentation probability.
    ada_target: float | str = 0.6  # ADA target for E[sign(D(real))], or a schedule.
    ada_kimg: float | None = None  # kimg for p to move by 1; None = 500 (100 with --init, as official).
    diffaugment: str = "color,translation,cutout"  # DiffAugment policy.
    # Transfer and freezing.
    init: str | None = None  # Start a new run from these weights (a checkpoint, e.g. from `ganforge transfer`).
    freeze: str = ""  # Frozen parts: mapping, G<=512, D<256, G:b64 … (comma-separated).
    freeze_d: int = 0  # FreezeD: freeze the first N discriminator blocks from the input.
    unfreeze_every: float = 0.0  # Gradual unfreezing: release one resolution every N kimg; 0 = never.
    unfreeze_order: str = "top-down"  # top-down | bottom-up.
    # Performance.
    # auto: the Plan's top num_fp16_res resolutions in bf16 on GPUs that support it (else fp16) and on CPUs with
    # bf16 instructions (avx512_bf16 / amx_bf16; else fp32); fp32 master weights everywhere. | bf16 | fp16 | fp32.
    precision: str = "auto"
    compile: bool = False  # torch.compile the main phases (G main, D main); regularization runs eager.
    workers: int = 2  # DataLoader worker processes.
    deterministic: bool = False  # Deterministic algorithms (reproducible, slower).
    memory_check: bool = True  # Refuse a start whose estimated peak memory does not fit the device.
    # I/O.
    snap: float = 50.0  # kimg between checkpoints and sample grids.
    tick: float = 4.0  # kimg between progress lines and stats.
    keep: int = 3  # Checkpoints kept (the newest).
    resume: str | None = None  # latest | PATH to a checkpoint.
    grid: tuple[int, int] = (8, 4)  # Sample grid columns × rows.
    metrics: str = ""  # Metrics at every snapshot, e.g. fid50k_full (comma-separated); "" = none.
    metrics_num_gen: int | None = None  # Generated images per snapshot metric; None = the metric's own (50k).
    detector_inception: str | None = None  # FID Inception TorchScript file; None = package / cache.
    tensorboard: bool = True  # Write TensorBoard scalars and images.
    # Divergence guard.
    max_failures: int = 3  # Rollbacks before giving up.
    rollback_lr_mult: float = 0.5  # Multiply learning rates by this after a rollback; 1 = keep.

    def resolved(self) -> TrainConfig:
        """Fill preset defaults; validate."""
        if self.preset not in PRESETS:
            raise ConfigError(f"--preset {self.preset!r} is unknown; choose one of: {', '.join(PRESETS)}")
        p = PRESETS[self.preset]
        c = dataclasses.replace(self)
        c.batch = c.batch or p.batch
        c.g_lr = c.g_lr if c.g_lr is not None else p.lr
        c.d_lr = c.d_lr if c.d_lr is not None else c.g_lr
        c.gamma = c.gamma if c.gamma is not None else p.gamma
        c.pl_weight = c.pl_weight if c.pl_weight is not None else p.pl_weight
        c.style_mixing = c.style_mixing if c.style_mixing is not None else p.style_mixing
        c.ema_kimg = c.ema_kimg if c.ema_kimg is not None else p.ema_kimg
        if c.ema_rampup == -1.0:
            c.ema_rampup = p.ema_rampup
        c.validate()
        return c

    def validate(self) -> None:
        self._check_types()
        checks = [
            (self.family in ("stylegan2", "dcgan"), "--family must be stylegan2 or dcgan"),
            (self.batch is None or self.batch >= 1, f"--batch must be >= 1, got {self.batch}"),
            (self.batch_gpu is None or self.batch_gpu >= 1, f"--batch-gpu must be >= 1, got {self.batch_gpu}"),
            (self.kimg > 0, f"--kimg must be > 0, got {self.kimg}"),
            (self.snap > 0, f"--snap must be > 0 kimg, got {self.snap}"),
            (self.tick > 0, f"--tick must be > 0 kimg, got {self.tick}"),
            (self.keep >= 1, f"--keep must be >= 1, got {self.keep}"),
            (self.precision in ("auto", "bf16", "fp16", "fp32"), "--precision must be auto, bf16, fp16 or fp32"),
            (self.r1_interval >= 1 and self.pl_interval >= 1, "regularization intervals must be >= 1"),
            (self.unfreeze_order in ("top-down", "bottom-up"), "--unfreeze-order must be top-down or bottom-up"),
            (self.aug in ("ada", "fixed", "diffaugment", "none", "noaug"),
             f"--aug {self.aug!r}: choose ada, fixed, diffaugment or none"),
            (self.aug_p >= 0, f"--aug-p must be >= 0, got {self.aug_p}"),
            (self.freeze_d >= 0 and self.unfreeze_every >= 0, "--freeze-d and --unfreeze-every must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        from ganforge.train.schedule import ScheduleError, parse_schedule

        bounds = {"g_lr": (0, None), "d_lr": (0, None), "gamma": (0, None), "style_mixing": (0, 1),
                  "ada_target": (0, 1)}
        for name, (lo, hi) in bounds.items():
            value = getattr(self, name)
            if value is None:
                continue
            try:
                sched = parse_schedule(value, f"--{name.replace('_', '-')}")
            except ScheduleError as e:
                raise ConfigError(str(e)) from None
            for _, v in sched.points:
                if v < lo or (hi is not None and v > hi):
                    rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
                    raise ConfigError(f"--{name.replace('_', '-')} value {v:g} is out of range: it must be {rng}")

    def _check_types(self) -> None:
        """Every value of its declared JSON kind (TOML and checkpoints are untrusted), numbers finite."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kinds = [_KINDS[k.strip()] for k in str(f.type).split("|")]
            ok = any(isinstance(value, k) and not (isinstance(value, bool) and k in (int, _NUMBER)) for k in kinds)
            flag = f"--{f.name.replace('_', '-')}"
            if not ok:
                wanted = " or ".join(_KIND_WORDS[k.strip()] for k in str(f.type).split("|") if k.strip() != "None")
                raise ConfigError(f"{flag} {value!r}: give {wanted}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{flag} {value}: give a finite number")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed {self.seed} is out of range: use 0..4294967295")
        if self.kimg > 1e9 or self.snap > 1e9 or self.tick > 1e9:
            raise ConfigError("--kimg, --snap and --tick must be at most 1e9 kimg")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["grid"] = list(self.grid)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; valid keys: {', '.join(sorted(names))}")
        d = dict(d)
        if "grid" in d:
            d["grid"] = tuple(d["grid"])
        return cls(**d)


def load_config_file(path: str | Path) -> dict:
    """A TOML (or JSON) file of TrainConfig keys (dashes or underscores); [model] holds Plan overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix == ".json":
        raw = json.loads(text)
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    return {k.replace("-", "_"): v for k, v in raw.items()}


def merge(file_values: dict, cli_values: dict) -> TrainConfig:
    """Precedence: CLI (only options given) > file > defaults (preset values fill in at resolve time)."""
    merged = {**file_values, **{k: v for k, v in cli_values.items() if v is not None}}
    return TrainConfig.from_dict(merged)
