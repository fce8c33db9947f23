"""Import official StyleGAN2-ADA and StyleGAN3-repository network pickles (`network-snapshot-*.pkl`) without
running their code.

`read_official_pkl` returns the pickle as plain data (OfficialRecords for the networks, see
ganforge.modelio.unpickler); `load_official_pkl` maps the records onto ganforge networks: a Plan from
each network's `init_kwargs`, and a state dict with the official dotted names loaded strictly.

Two codebases wrote such files with the same class names. StyleGAN2-ADA's `training/networks.py`, and the
StyleGAN3 repository, whose `networks_stylegan2.py` re-releases that StyleGAN2 with other defaults (FP16 in the
4 highest resolutions, conv_clamp 256, w_avg_beta 0.998; the Generator takes its synthesis options as top-level
keywords) next to `networks_stylegan3.py`. A record tree comes from the StyleGAN3 repository when its
FullyConnectedLayers record `in_features` (every G has them in its mapping, every D in its epilogue); which
defaults fill the options absent from `init_kwargs` follows from that. A StyleGAN3 generator (its synthesis
network has an `input`) becomes a stylegan3-t or stylegan3-r Plan, and every layer's recorded geometry (sizes,
sampling rates, cutoffs, filter taps, padding) must equal the one that Plan lays out.

Everything in the file is untrusted. Every init_kwargs value is type-checked here and range-checked by
`make_plan` before any network exists; the networks that the Plans describe are then built on the meta
device, and only when the file holds exactly their tensors (names, shapes, floating dtypes, each with bytes of
its own) are real networks built, so memory follows the file's size, not its claims. Any failure becomes one
OfficialPickleError sentence.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NoReturn, TypeVar

import numpy as np
import torch
from torch import nn

from ganforge import build_discriminator, build_generator, netcheck
from ganforge.modelio.unpickler import OfficialPickleError, OfficialRecord, unpickle_snapshot
from ganforge.modelio.untrusted import FIX, brief, json_value, refusing_damage
from ganforge.models.discriminator import Discriminator
from ganforge.models.generator import Generator
from ganforge.models.stylegan3 import StyleGAN3Generator, sg3_plan_options
from ganforge.plan import Plan, PlanError, make_plan

NETWORKS = {"G": "Generator", "D": "Discriminator", "G_ema": "Generator", "augment_pipe": "AugmentPipe"}
ADA, SG3_REPO = "stylegan2-ada", "stylegan3"  # The repository whose code wrote a record tree.
# Official constructor signatures, to name positional init_args. StyleGAN2-ADA's Generator takes a
# synthesis_kwargs dict; the StyleGAN3 repository's Generators take **synthesis_kwargs instead.
G_PARAMS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
G3_PARAMS = G_PARAMS[:-1]
D_PARAMS = (
    "c_dim",
    "img_resolution",
    "img_channels",
    "architecture",
    "channel_base",
    "channel_max",
    "num_fp16_res",
    "conv_clamp",
    "cmap_dim",
    "block_kwargs",
    "mapping_kwargs",
    "epilogue_kwargs",
)
# Official options that ganforge fixes: each must be absent or have its official default.
FIXED = {
    "activation": "lrelu",
    "resample_filter": [1, 3, 3, 1],
    "kernel_size": 3,
    "use_noise": True,
    "embed_features": None,
    "layer_features": None,
}
IGNORED = {"fp16_channels_last", "channels_last", "freeze_layers"}  # Memory layout / training only.
# Defaults of the options a Plan needs, by repository (the StyleGAN3 repository's networks_stylegan2.py differs).
MAPPING_DEFAULTS: dict[str, dict[str, Any]] = {
    ADA: {"num_layers": 8, "lr_multiplier": 0.01, "w_avg_beta": 0.995},
    SG3_REPO: {"num_layers": 8, "lr_multiplier": 0.01, "w_avg_beta": 0.998},
}
SYNTHESIS_DEFAULTS: dict[str, dict[str, Any]] = {
    ADA: {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 0, "conv_clamp": None, "architecture": "skip"},
    SG3_REPO: {
        "channel_base": 32768,
        "channel_max": 512,
        "num_fp16_res": 4,
        "conv_clamp": 256,
        "architecture": "skip",
        "fused_modconv_default": True,  # Fused or grouped modulated convolution: the same result either way.
    },
}
D_PRECISION_DEFAULTS: dict[str, dict[str, Any]] = {
    ADA: {"num_fp16_res": 0, "conv_clamp": None},
    SG3_REPO: {"num_fp16_res": 4, "conv_clamp": 256},
}
# networks_stylegan3.Generator's options besides G3_PARAMS (synthesis and layer options, passed flat) and its
# mapping options, by the type they take. Their defaults and Plan fields are ganforge.models.stylegan3's.
SG3_KINDS = {
    **dict.fromkeys(("channel_base", "channel_max", "num_layers", "num_critical", "margin_size"), "int"),
    **dict.fromkeys(("num_fp16_res", "conv_kernel", "filter_size", "lrelu_upsampling"), "int"),
    **dict.fromkeys(("first_cutoff", "first_stopband", "last_stopband_rel", "output_scale"), "number"),
    "magnitude_ema_beta": "number",
    "conv_clamp": "number or None",
    "use_radial_filters": "bool",
}
SG3_MAPPING_KINDS = {"num_layers": "int", "lr_multiplier": "number", "w_avg_beta": "number"}
# What each official StyleGAN3 SynthesisLayer records about itself -> the field of ganforge's layer geometry.
SG3_GEOMETRY = {
    "is_critically_sampled": "is_critical",
    "use_fp16": "use_fp16",
    "in_size": "in_size",
    "out_size": "out_size",
    "in_sampling_rate": "in_rate",
    "out_sampling_rate": "out_rate",
    "tmp_sampling_rate": "tmp_rate",
    "in_cutoff": "in_cutoff",
    "out_cutoff": "out_cutoff",
    "in_half_width": "in_half_width",
    "out_half_width": "out_half_width",
    "conv_kernel": "conv_kernel",
    "up_factor": "up",
    "down_factor": "down",
    "up_taps": "up_taps",
    "down_taps": "down_taps",
    "down_radial": "down_radial",
    "padding": "padding",
}
SHARED_FIELDS = ("resolution", "img_channels", "c_dim", "cbase", "cmax", "num_fp16_res", "conv_clamp")
MAX_NUMBER = 2**63  # Any int or float beyond this in init_kwargs is absurd; make_plan applies the real bounds.


@dataclass
class OfficialSnapshot:
    """An official snapshot as ganforge networks (eval mode, CPU, requires_grad off); absent parts are None."""

    G: Generator | StyleGAN3Generator | None
    D: Discriminator | None
    G_ema: Generator | StyleGAN3Generator | None
    plan: Plan | None  # G_ema's (else G's) Plan, with D's settings when G and D share channels and precision.
    d_plan: Plan | None  # D's Plan: the same object as `plan` unless D was built with other channel settings.
    augment_p: float | None  # The ADA probability in augment_pipe's `p` buffer; None without augment_pipe.
    training_set_kwargs: dict | None
    repository: str  # Whose code wrote the networks: "stylegan2-ada" or "stylegan3" (its networks_stylegan2.py).
    source_fingerprint: str  # sha256 over the sorted sha256s of the embedded module sources (never run).
    sources: dict[str, list[str]] = field(default_factory=dict)  # Source sha256 -> classes pickled from it.


# ----------------------------------------------------------------------------
# Reading.


def _unpickle(path: str | os.PathLike | BinaryIO) -> tuple[Any, dict[str, set[str]]]:
    if not isinstance(path, (str, os.PathLike)):  # An open binary file.
        return unpickle_snapshot(path)
    try:
        with open(path, "rb") as f:
            return unpickle_snapshot(f)
    except FileNotFoundError:
        raise
    except OSError as e:  # A folder, no permission, a read error: not the file's contents, but no traceback either.
        reason = (e.strerror or type(e).__name__).lower()
        raise OfficialPickleError(f"cannot read {path}: {reason}: give a readable network-snapshot-*.pkl") from None


def _read(path: str | os.PathLike | BinaryIO) -> tuple[dict, dict[str, set[str]]]:
    data, sources = _unpickle(path)
    if not isinstance(data, dict):
        raise OfficialPickleError(
            f"the pickle holds a {type(data).__name__}, not the dict of an official network "
            f"snapshot (G, D, G_ema, augment_pipe)"
        )
    for key, class_name in NETWORKS.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, OfficialRecord) or value.class_name != class_name):
            got = value.class_name if isinstance(value, OfficialRecord) else type(value).__name__
            raise OfficialPickleError(f"snapshot entry {key!r} is a {got}, expected an official {class_name}")
    return data, sources


def read_official_pkl(path: str | os.PathLike | BinaryIO) -> dict[str, Any]:
    """The snapshot dict as plain data: OfficialRecords for G, D, G_ema, augment_pipe; builds no module."""
    with refusing_damage("reading the snapshot"):
        return _read(path)[0]


def fingerprint(sources: dict[str, set[str]]) -> str:
    return hashlib.sha256("\n".join(sorted(sources)).encode()).hexdigest()


# ----------------------------------------------------------------------------
# Typed reads of init_kwargs values: the types the official constructors take, nothing coerced.

_REQUIRED = object()


def _get(kw: dict, key: str, what: str, default: Any) -> Any:
    if key in kw:
        return kw[key]
    if default is _REQUIRED:
        raise OfficialPickleError(
            f"the {what} are incomplete (no {key}): the snapshot was not written by the official code"
        )
    return default


def _refuse_value(what: str, key: str, value: object, expected: str) -> None:
    raise OfficialPickleError(f"{what} {key}={brief(value)} is not {expected}: {FIX}")


def _int(kw: dict, key: str, what: str, default: Any = _REQUIRED) -> int:
    value = _get(kw, key, what, default)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_NUMBER:
        _refuse_value(what, key, value, "a whole number")
    return value


def _number(kw: dict, key: str, what: str, default: Any = _REQUIRED, optional: bool = False) -> float | None:
    value = _get(kw, key, what, default)
    if value is None and optional:
        return None
    finite = isinstance(value, float) and math.isfinite(value) and abs(value) <= MAX_NUMBER
    if isinstance(value, bool) or not (finite or (isinstance(value, int) and abs(value) <= MAX_NUMBER)):
        _refuse_value(what, key, value, "a finite number" + (" or None" if optional else ""))
    return float(value)


def _text(kw: dict, key: str, what: str, default: Any = _REQUIRED) -> str:
    value = _get(kw, key, what, default)
    if not isinstance(value, str) or len(value) > 64:
        _refuse_value(what, key, value, "a short string")
    return value


def _mapping(value: object, what: str) -> dict:
    """A *_kwargs dict (None = empty) whose keys are all strings."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise OfficialPickleError(f"{what} is {brief(value)}, not a dict of named options: {FIX}")
    return value


# ----------------------------------------------------------------------------
# Which repository's code wrote a network.


def _records(rec: OfficialRecord) -> list[OfficialRecord]:
    """rec and every module record below it, each once (flatten_record refuses a tree that repeats one)."""
    out, seen, todo = [], set(), [rec]
    while todo:
        r = todo.pop()
        if id(r) in seen:
            continue
        seen.add(id(r))
        out.append(r)
        modules = r.state.get("_modules")
        if isinstance(modules, dict):
            todo.extend(m for m in modules.values() if isinstance(m, OfficialRecord))
    return out


def repository(rec: OfficialRecord) -> str:
    """SG3_REPO when the StyleGAN3 repository's code wrote the network (its FullyConnectedLayers record
    `in_features`; StyleGAN2-ADA's do not), else ADA. It decides the defaults of absent init_kwargs."""
    fcs = [r for r in _records(rec) if r.class_name == "FullyConnectedLayer"]
    return SG3_REPO if any("in_features" in r.state for r in fcs) else ADA


# ----------------------------------------------------------------------------
# init_kwargs -> make_plan options.


def _call_kwargs(rec: OfficialRecord, params: tuple[str, ...], var_kwargs: bool = False) -> dict:
    """init_args and init_kwargs by parameter name; with `var_kwargs`, names outside `params` are kept (the
    constructor's **kwargs) for the caller to check, else refused."""
    args, kwargs = rec.state.get("_init_args"), rec.state.get("_init_kwargs")
    if args is not None and not isinstance(args, (tuple, list)):
        raise OfficialPickleError(f"{rec.class_name} _init_args is {brief(args)}, not a tuple: {FIX}")
    args = tuple(args or ())
    if len(args) > len(params):
        raise OfficialPickleError(
            f"{rec.class_name} was built with {len(args)} positional arguments; the official "
            f"signature has {len(params)}"
        )
    kwargs = _mapping(kwargs, f"{rec.class_name} _init_kwargs")
    for key in kwargs:
        if key not in params and not var_kwargs:
            raise OfficialPickleError(
                f"{rec.class_name} option {brief(key)} is not an official StyleGAN2-ADA option, and the networks "
                f"carry no sign of the StyleGAN3 repository's code: {FIX}"
            )
    return {**dict(zip(params, args)), **kwargs}


def _options(kwargs: object, known: dict[str, Any], what: str) -> dict:
    """Check a nested *_kwargs dict: fixed options at their defaults, no unknown keys; fill defaults."""
    kwargs = _mapping(kwargs, what)
    for key, value in kwargs.items():
        if key in FIXED and value != FIXED[key]:
            raise OfficialPickleError(
                f"{what}.{key}={brief(value)}: ganforge networks only support the official "
                f"default {FIXED[key]!r}, so this snapshot cannot be imported"
            )
        if key not in FIXED and key not in IGNORED and key not in known:
            raise OfficialPickleError(
                f"{what} has option {key}={brief(value)}, which ganforge does not know: the "
                f"snapshot was made by modified networks code and cannot be imported"
            )
    return {**known, **{k: v for k, v in kwargs.items() if k in known}}


def _synthesis_kwargs(rec: OfficialRecord, repo: str) -> tuple[dict, dict, str]:
    """(init_kwargs by name, synthesis options with their defaults, how errors name them) of a StyleGAN2 G."""
    if repo == ADA:
        kw, where = _call_kwargs(rec, G_PARAMS), "G synthesis_kwargs"
        return kw, _options(kw.get("synthesis_kwargs"), SYNTHESIS_DEFAULTS[ADA], where), where
    kw, where = _call_kwargs(rec, G3_PARAMS, var_kwargs=True), "Generator's init_kwargs"
    synth = _options({k: v for k, v in kw.items() if k not in G3_PARAMS}, SYNTHESIS_DEFAULTS[SG3_REPO], where)
    fused = synth["fused_modconv_default"]
    if not (isinstance(fused, bool) or (isinstance(fused, str) and fused == "inference_only")):
        _refuse_value(where, "fused_modconv_default", fused, "True, False or 'inference_only'")
    return kw, synth, where


def generator_options(rec: OfficialRecord) -> dict:
    """make_plan options from an official Generator's init_kwargs (StyleGAN2 or 3), every value type-checked."""
    if is_stylegan3(rec):
        return stylegan3_options(rec)
    repo, g = repository(rec), "Generator's init_kwargs"
    kw, synth, s = _synthesis_kwargs(rec, repo)
    mapping = _options(kw.get("mapping_kwargs"), MAPPING_DEFAULTS[repo], "G mapping_kwargs")
    m = "G mapping_kwargs"
    return dict(
        resolution=_int(kw, "img_resolution", g),
        img_channels=_int(kw, "img_channels", g),
        c_dim=_int(kw, "c_dim", g),
        z_dim=_int(kw, "z_dim", g),
        w_dim=_int(kw, "w_dim", g),
        mapping_layers=_int(mapping, "num_layers", m),
        mapping_lr_mult=_number(mapping, "lr_multiplier", m),
        w_avg_beta=_number(mapping, "w_avg_beta", m),
        cbase=_int(synth, "channel_base", s),
        cmax=_int(synth, "channel_max", s),
        num_fp16_res=_int(synth, "num_fp16_res", s),
        conv_clamp=_number(synth, "conv_clamp", s, optional=True),
        g_architecture=_text(synth, "architecture", s),
    )


def is_stylegan3(rec: OfficialRecord) -> bool:
    """A networks_stylegan3.Generator: its synthesis network starts from Fourier features (`input`)."""
    synthesis = _section(rec, "_modules", "").get("synthesis")
    return isinstance(synthesis, OfficialRecord) and "input" in _section(synthesis, "_modules", "synthesis")


def _typed(kw: dict, key: str, kind: str, what: str) -> Any:
    if kind == "int":
        return _int(kw, key, what)
    if kind == "number":
        return _number(kw, key, what)
    if kind == "number or None":
        return _number(kw, key, what, optional=True)
    if not isinstance(kw[key], bool):
        _refuse_value(what, key, kw[key], "True or False")
    return kw[key]


def _checked(kwargs: dict, kinds: dict[str, str], what: str) -> dict:
    """The options in `kwargs`, each of the type `kinds` gives it; an option `kinds` does not name is refused."""
    for key, value in kwargs.items():
        if key not in kinds:
            raise OfficialPickleError(
                f"{what} has option {key}={brief(value)}, which the official StyleGAN3 generator does not take: "
                f"the snapshot was made by modified networks code and cannot be imported"
            )
    return {key: _typed(kwargs, key, kinds[key], what) for key in kwargs}


def stylegan3_options(rec: OfficialRecord) -> dict:
    """make_plan options (family stylegan3-t or stylegan3-r) from a networks_stylegan3.Generator's init_kwargs."""
    kw, g = _call_kwargs(rec, G3_PARAMS, var_kwargs=True), "Generator's init_kwargs"
    top = {key: _int(kw, key, g) for key in G3_PARAMS if key != "mapping_kwargs"}
    synthesis = _checked({k: v for k, v in kw.items() if k not in G3_PARAMS}, SG3_KINDS, g)
    mapping = _checked(_mapping(kw.get("mapping_kwargs"), "G mapping_kwargs"), SG3_MAPPING_KINDS, "G mapping_kwargs")
    options = sg3_plan_options({**top, **synthesis, "mapping_kwargs": mapping})
    options["resolution"] = top["img_resolution"]  # Square, as plan_from_options takes it.
    return options


def discriminator_options(rec: OfficialRecord) -> dict:
    """make_plan options from an official Discriminator's init_kwargs, every value type-checked."""
    kw, d = _call_kwargs(rec, D_PARAMS), "Discriminator's init_kwargs"
    precision = D_PRECISION_DEFAULTS[repository(rec)]
    _options(kw.get("block_kwargs"), {}, "D block_kwargs")
    m, e = "D mapping_kwargs", "D epilogue_kwargs"
    mapping = _options(kw.get("mapping_kwargs"), {"num_layers": 8, "lr_multiplier": 0.01}, m)
    if _number(mapping, "lr_multiplier", m) != 0.01:
        raise OfficialPickleError(
            f"D mapping_kwargs.lr_multiplier={mapping['lr_multiplier']!r}: ganforge's "
            f"discriminator label mapping uses the official 0.01"
        )
    epi = _options(kw.get("epilogue_kwargs"), {"mbstd_group_size": 4, "mbstd_num_channels": 1}, e)
    cmap_dim = None if kw.get("cmap_dim") is None else _int(kw, "cmap_dim", d)
    mbstd_group = 0 if epi["mbstd_group_size"] is None else _int(epi, "mbstd_group_size", e)  # None: whole batch.
    return dict(
        resolution=_int(kw, "img_resolution", d),
        img_channels=_int(kw, "img_channels", d),
        c_dim=_int(kw, "c_dim", d),
        cbase=_int(kw, "channel_base", d, 32768),
        cmax=_int(kw, "channel_max", d, 512),
        num_fp16_res=_int(kw, "num_fp16_res", d, precision["num_fp16_res"]),
        conv_clamp=_number(kw, "conv_clamp", d, precision["conv_clamp"], optional=True),
        d_architecture=_text(kw, "architecture", d, "resnet"),
        cmap_dim=cmap_dim,
        d_mapping_layers=_int(mapping, "num_layers", m),
        mbstd_group=mbstd_group,
        mbstd_channels=_int(epi, "mbstd_num_channels", e),
    )


def plan_from_options(options: dict) -> Plan:
    opts = dict(options)
    res = opts.pop("resolution")
    if opts.get("num_fp16_res"):
        opts.setdefault("fp16_dtype", "fp16")  # Official reduced precision is float16 (GPU only; CPU runs fp32).
    try:
        return make_plan("config-f", (res, res), **opts)
    except PlanError as e:
        raise OfficialPickleError(f"the snapshot's settings do not make a ganforge Plan: {e}") from None


def make_plans(g_rec: OfficialRecord | None, d_rec: OfficialRecord | None) -> tuple[Plan | None, Plan | None]:
    """(G plan, D plan): one shared Plan when G and D agree on resolution, channels and precision."""
    g = None if g_rec is None else generator_options(g_rec)
    d = None if d_rec is None else discriminator_options(d_rec)
    if g is None or d is None:
        one = g or d
        plan = plan_from_options(one) if one else None
        return (plan if g else None), (plan if d else None)
    if all(g[k] == d[k] for k in SHARED_FIELDS):
        plan = plan_from_options({**g, **d})
        return plan, plan
    return plan_from_options(g), plan_from_options({**g, **d})


# ----------------------------------------------------------------------------
# Records -> tensors, checked against the Plan before any real network exists.


def _section(rec: OfficialRecord, key: str, prefix: str) -> dict:
    value = rec.state.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise OfficialPickleError(
            f"module {prefix.rstrip('.') or rec.class_name} has {key} of {brief(value)}, not a dict by name: {FIX}"
        )
    return value


def flatten_record(rec: OfficialRecord, prefix: str = "", _seen: set[int] | None = None) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers of a record tree under official dotted names."""
    _seen = set() if _seen is None else _seen
    if id(rec) in _seen:  # Official networks never share a submodule; a crafted file could loop or explode.
        raise OfficialPickleError(
            f"module {prefix.rstrip('.')!r} appears twice in the network tree: not an official snapshot"
        )
    _seen.add(id(rec))
    skip = rec.state.get("_non_persistent_buffers_set") or set()
    if not isinstance(skip, (set, frozenset)):
        raise OfficialPickleError(
            f"module {prefix.rstrip('.') or rec.class_name} has a _non_persistent_buffers_set "
            f"of {brief(skip)}, not a set: {FIX}"
        )
    out: dict[str, torch.Tensor] = {}
    buffers = _section(rec, "_buffers", prefix)
    items = list(_section(rec, "_parameters", prefix).items()) + [(k, v) for k, v in buffers.items() if k not in skip]
    for name, value in items:
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise OfficialPickleError(f"{prefix}{name} in {rec.class_name} is a {type(value).__name__}, not a tensor")
        out[prefix + name] = value
    for name, child in _section(rec, "_modules", prefix).items():
        if child is None:
            continue
        if not isinstance(child, OfficialRecord):
            raise OfficialPickleError(f"submodule {prefix}{name} is a {type(child).__name__}, not a network module")
        out.update(flatten_record(child, f"{prefix}{name}.", _seen))
    return out


def check_tensors(tensors: dict[str, torch.Tensor], plan: Plan, net: str, what: str) -> None:
    """The file's tensors must be exactly those of the network `plan` builds (from the meta device)."""
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    problem = netcheck.shape_mismatch(netcheck.expected_shapes(plan, net), found, what)
    if problem:
        raise OfficialPickleError(problem)
    for name, t in tensors.items():
        if not t.dtype.is_floating_point:
            raise OfficialPickleError(f"{what}: tensor {name} holds {t.dtype} values, not floating-point: {FIX}")


def check_owned(networks: dict[str, dict[str, torch.Tensor]]) -> None:
    """Each tensor needs bytes of its own in the file. Official snapshots store every tensor in its own storage;
    many views of one storage (or one tensor reached twice) would let a small file fill the networks with
    gigabytes when they are copied into real parameters."""
    used: dict[int, int] = {}
    for key, tensors in networks.items():
        for name, t in tensors.items():
            storage = t.untyped_storage()
            used[storage.data_ptr()] = used.get(storage.data_ptr(), 0) + t.numel() * t.element_size()
            if t.numel() and used[storage.data_ptr()] > storage.nbytes():
                raise OfficialPickleError(
                    f"snapshot {key}: tensor {name} shares its data with other tensors, which "
                    f"official snapshots never do: {FIX}"
                )


_Net = TypeVar("_Net", bound=nn.Module)


def _load(model: _Net, tensors: dict[str, torch.Tensor]) -> _Net:
    model.load_state_dict(tensors, strict=True)
    return model.eval().requires_grad_(False)


def _same(recorded: object, planned: object) -> bool:
    """A layer attribute as the official code recorded it (NumPy arrays and lists included) vs ganforge's."""
    if isinstance(recorded, np.ndarray):
        recorded = recorded.tolist()
        planned = [planned] * 2 if type(planned) is int else planned  # Sizes are recorded as [width, height].
    if isinstance(planned, bool) or isinstance(recorded, bool):
        return recorded is planned
    if isinstance(planned, (int, float)) and isinstance(recorded, (int, float)):
        return math.isclose(recorded, planned, rel_tol=1e-9, abs_tol=1e-12)
    return isinstance(recorded, list) and isinstance(planned, (list, tuple)) and recorded == list(planned)


def _refuse_geometry(what: str, module: str, attr: str, recorded: object, planned: object) -> NoReturn:
    raise OfficialPickleError(
        f"{what} {module} records {attr}={brief(recorded)}, but its init_kwargs lay it out with {planned!r}: the "
        f"snapshot was made by modified networks code and cannot be imported"
    )


def check_geometry(rec: OfficialRecord, plan: Plan, what: str) -> None:
    """The file's StyleGAN3 input and layers sample, filter and pad as the Plan's do: ganforge lays them out from
    init_kwargs alone, so a file whose modules record another layout was made by other networks code."""
    modules = _section(_section(rec, "_modules", "")["synthesis"], "_modules", "synthesis")
    layers = plan.sg3_geometry
    first = layers[0]  # The Fourier features are what the first layer takes in.
    for attr, planned in (("size", first.in_size), ("sampling_rate", first.in_rate), ("bandwidth", first.in_cutoff)):
        if not _same(recorded := modules["input"].state.get(attr), planned):
            _refuse_geometry(what, "input", attr, recorded, planned)
    for spec in layers:
        layer = modules[spec.name]  # The names were checked with the tensors.
        for attr, field_name in SG3_GEOMETRY.items():
            if not _same(recorded := layer.state.get(attr), planned := getattr(spec, field_name)):
                _refuse_geometry(what, f"layer {spec.name}", attr, recorded, planned)


def _generator(plan: Plan, tensors: dict[str, torch.Tensor]) -> Generator | StyleGAN3Generator:
    G = build_generator(plan)
    assert isinstance(G, (Generator, StyleGAN3Generator))  # Official plans are StyleGAN2 or StyleGAN3.
    return _load(G, tensors)


def _discriminator(plan: Plan, tensors: dict[str, torch.Tensor]) -> Discriminator:
    D = build_discriminator(plan)  # StyleGAN2's, also for a StyleGAN3 Plan.
    assert isinstance(D, Discriminator)
    return _load(D, tensors)


def _augment_p(rec: OfficialRecord | None) -> float | None:
    p = _section(rec, "_buffers", "augment_pipe").get("p") if rec is not None else None
    if not (isinstance(p, torch.Tensor) and p.numel() == 1 and p.dtype.is_floating_point):
        return None
    value = float(p.reshape(-1)[0])
    if not 0 <= value <= 1:  # NaN fails too.
        raise OfficialPickleError(f"augment_pipe p={value} is not a probability: {FIX}")
    return value


def _plans(data: dict) -> dict[str, Plan | None]:
    """The Plan of each network in the snapshot (None where absent); G's own Plan when it differs from G_ema."""
    gens = {k: data.get(k) for k in ("G", "G_ema")}
    main = gens["G_ema"] or gens["G"]
    plan, d_plan = make_plans(main, data.get("D"))
    plans = {"D": d_plan, "main": plan}
    for key, rec in gens.items():
        same = rec is main or (
            rec is not None and main is not None and generator_options(rec) == generator_options(main)
        )
        plans[key] = None if rec is None else plan if same else make_plans(rec, None)[0]
    return plans


def load_official_pkl(path: str | os.PathLike | BinaryIO) -> OfficialSnapshot:
    """Read an official snapshot safely and rebuild G, D, G_ema as ganforge networks."""
    with refusing_damage("reading the snapshot"):
        data, sources = _read(path)
        plans = _plans(data)
        present = {k: plan for k in ("G", "D", "G_ema") if (plan := plans[k]) is not None}
        tensors = {k: flatten_record(data[k]) for k in present}
        for key, found in tensors.items():
            check_tensors(found, present[key], "D" if key == "D" else "G", f"snapshot {key}")
            if key != "D" and present[key].is_sg3:
                check_geometry(data[key], present[key], f"snapshot {key}")
        check_owned(tensors)
        tsk = data.get("training_set_kwargs")
        augment_p = _augment_p(data.get("augment_pipe"))
        training_set_kwargs = json_value(tsk, "training_set_kwargs") if isinstance(tsk, dict) else None
        # Only now, with every name, shape and byte accounted for, are real networks allocated.
        G, G_ema = (_generator(present[k], tensors[k]) if k in present else None for k in ("G", "G_ema"))
        D = _discriminator(present["D"], tensors["D"]) if "D" in present else None
    return OfficialSnapshot(
        G=G,
        D=D,
        G_ema=G_ema,
        plan=plans["main"],
        d_plan=plans["D"],
        augment_p=augment_p,
        training_set_kwargs=training_set_kwargs,
        repository=next((repository(data[k]) for k in ("G_ema", "G", "D") if k in present), ADA),
        source_fingerprint=fingerprint(sources),
        sources={k: sorted(v) for k, v in sorted(sources.items())},
    )
