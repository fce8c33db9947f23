"""Import official StyleGAN2-ADA network pickles (`network-snapshot-*.pkl`) without running their code.

`read_official_pkl` returns the pickle as plain data (OfficialRecords for the networks, see
ganforge.tools.unpickler); `load_official_pkl` maps the records onto ganforge networks: a Plan from
each network's `init_kwargs`, and a state dict with the official dotted names loaded strictly.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import torch
from torch import nn

from ganforge.models.discriminator import Discriminator
from ganforge.models.generator import Generator
from ganforge.plan import Plan, PlanError, make_plan
from ganforge.tools.unpickler import OfficialPickleError, OfficialRecord, unpickle_snapshot

NETWORKS = {"G": "Generator", "D": "Discriminator", "G_ema": "Generator", "augment_pipe": "AugmentPipe"}
# Official constructor signatures (training/networks.py), to name positional init_args.
G_PARAMS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
D_PARAMS = ("c_dim", "img_resolution", "img_channels", "architecture", "channel_base", "channel_max", "num_fp16_res",
            "conv_clamp", "cmap_dim", "block_kwargs", "mapping_kwargs", "epilogue_kwargs")
# Official options that ganforge fixes: each must be absent or have its official default.
FIXED = {"activation": "lrelu", "resample_filter": [1, 3, 3, 1], "kernel_size": 3, "use_noise": True,
         "embed_features": None, "layer_features": None}
IGNORED = {"fp16_channels_last", "channels_last", "freeze_layers"}  # Memory layout / training only.
SHARED_FIELDS = ("resolution", "img_channels", "c_dim", "cbase", "cmax", "num_fp16_res", "conv_clamp")


@dataclass
class OfficialSnapshot:
    """An official snapshot as ganforge networks (eval mode, CPU, requires_grad off); absent parts are None."""

    G: Generator | None
    D: Discriminator | None
    G_ema: Generator | None
    plan: Plan | None  # G_ema's (else G's) Plan, with D's settings when G and D share channels and precision.
    d_plan: Plan | None  # D's Plan: the same object as `plan` unless D was built with other channel settings.
    augment_p: float | None  # The ADA probability in augment_pipe's `p` buffer; None without augment_pipe.
    training_set_kwargs: dict | None
    source_fingerprint: str  # sha256 over the sorted sha256s of the embedded module sources (never run).
    sources: dict[str, list[str]] = field(default_factory=dict)  # Source sha256 -> classes pickled from it.


# ----------------------------------------------------------------------------
# Reading.


def _read(path: str | os.PathLike | BinaryIO) -> tuple[dict, dict[str, set[str]]]:
    if hasattr(path, "read"):
        data, sources = unpickle_snapshot(path)
    else:
        with open(path, "rb") as f:
            data, sources = unpickle_snapshot(f)
    if not isinstance(data, dict):
        raise OfficialPickleError(f"the pickle holds a {type(data).__name__}, not the dict of an official network "
                                  f"snapshot (G, D, G_ema, augment_pipe)")
    for key, class_name in NETWORKS.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, OfficialRecord) or value.class_name != class_name):
            got = value.class_name if isinstance(value, OfficialRecord) else type(value).__name__
            raise OfficialPickleError(f"snapshot entry {key!r} is a {got}, expected an official {class_name}")
    return data, sources


def read_official_pkl(path: str | os.PathLike | BinaryIO) -> dict[str, Any]:
    """The snapshot dict as plain data: OfficialRecords for G, D, G_ema, augment_pipe; builds no module."""
    return _read(path)[0]


def fingerprint(sources: dict[str, set[str]]) -> str:
    return hashlib.sha256("\n".join(sorted(sources)).encode()).hexdigest()


# ----------------------------------------------------------------------------
# init_kwargs -> make_plan options.


def _call_kwargs(rec: OfficialRecord, params: tuple[str, ...]) -> dict:
    args = rec.init_args
    if len(args) > len(params):
        raise OfficialPickleError(f"{rec.class_name} was built with {len(args)} positional arguments; the official "
                                  f"signature has {len(params)}")
    return {**dict(zip(params, args)), **rec.init_kwargs}


def _options(kwargs: dict | None, known: dict[str, Any], what: str) -> dict:
    """Check a nested *_kwargs dict: fixed options at their defaults, no unknown keys; fill defaults."""
    kwargs = dict(kwargs or {})
    for key, value in kwargs.items():
        if key in FIXED and value != FIXED[key]:
            raise OfficialPickleError(f"{what}.{key}={value!r}: ganforge networks only support the official "
                                      f"default {FIXED[key]!r}, so this snapshot cannot be imported")
        if key not in FIXED and key not in IGNORED and key not in known:
            raise OfficialPickleError(f"{what} has option {key}={value!r}, which ganforge does not know: the snapshot "
                                      f"was made by modified networks code and cannot be imported")
    return {**known, **{k: v for k, v in kwargs.items() if k in known}}


def _clamp(value) -> float | None:
    return None if value is None else float(value)


def generator_options(rec: OfficialRecord) -> dict:
    """make_plan options from an official Generator's init_kwargs."""
    kw = _call_kwargs(rec, G_PARAMS)
    for key in kw:
        if key not in G_PARAMS:
            raise OfficialPickleError(f"Generator option {key!r} is not an official StyleGAN2-ADA option (StyleGAN3 "
                                      f"snapshots are not supported)")
    mapping = _options(kw.get("mapping_kwargs"), {"num_layers": 8, "lr_multiplier": 0.01, "w_avg_beta": 0.995},
                       "G mapping_kwargs")
    synth = _options(kw.get("synthesis_kwargs"), {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 0,
                     "conv_clamp": None, "architecture": "skip"}, "G synthesis_kwargs")
    return dict(resolution=int(kw["img_resolution"]), img_channels=int(kw["img_channels"]), c_dim=int(kw["c_dim"]),
                z_dim=int(kw["z_dim"]), w_dim=int(kw["w_dim"]), mapping_layers=int(mapping["num_layers"]),
                mapping_lr_mult=float(mapping["lr_multiplier"]), w_avg_beta=mapping["w_avg_beta"],
                cbase=int(synth["channel_base"]), cmax=int(synth["channel_max"]),
                num_fp16_res=int(synth["num_fp16_res"]), conv_clamp=_clamp(synth["conv_clamp"]),
                g_architecture=synth["architecture"])


def discriminator_options(rec: OfficialRecord) -> dict:
    """make_plan options from an official Discriminator's init_kwargs."""
    kw = _call_kwargs(rec, D_PARAMS)
    for key in kw:
        if key not in D_PARAMS:
            raise OfficialPickleError(f"Discriminator option {key!r} is not an official StyleGAN2-ADA option")
    _options(kw.get("block_kwargs"), {}, "D block_kwargs")
    mapping = _options(kw.get("mapping_kwargs"), {"num_layers": 8, "lr_multiplier": 0.01}, "D mapping_kwargs")
    if mapping["lr_multiplier"] != 0.01:
        raise OfficialPickleError(f"D mapping_kwargs.lr_multiplier={mapping['lr_multiplier']!r}: ganforge's "
                                  f"discriminator label mapping uses the official 0.01")
    epi = _options(kw.get("epilogue_kwargs"), {"mbstd_group_size": 4, "mbstd_num_channels": 1}, "D epilogue_kwargs")
    return dict(resolution=int(kw["img_resolution"]), img_channels=int(kw["img_channels"]), c_dim=int(kw["c_dim"]),
                cbase=int(kw.get("channel_base", 32768)), cmax=int(kw.get("channel_max", 512)),
                num_fp16_res=int(kw.get("num_fp16_res", 0)), conv_clamp=_clamp(kw.get("conv_clamp")),
                d_architecture=kw.get("architecture", "resnet"), cmap_dim=kw.get("cmap_dim"),
                d_mapping_layers=int(mapping["num_layers"]), mbstd_group=int(epi["mbstd_group_size"] or 0),
                mbstd_channels=int(epi["mbstd_num_channels"]))


def plan_from_options(options: dict) -> Plan:
    opts = dict(options)
    res = opts.pop("resolution")
    if opts.get("num_fp16_res"):
        opts.setdefault("fp16_dtype", "fp16")  # Official reduced precision is float16 (GPU only; CPU runs fp32).
    try:
        return make_plan("config-f", (res, res), **opts)
    except PlanError as e:
        raise OfficialPickleError(f"the snapshot's settings do not make a ganforge Plan: {e}") from None


def _checked(options_fn, rec: OfficialRecord | None) -> dict | None:
    if rec is None:
        return None
    try:
        return options_fn(rec)
    except OfficialPickleError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        why = f"{type(e).__name__}: {e}"
        raise OfficialPickleError(f"the {rec.class_name}'s init_kwargs are incomplete or malformed ({why}): the "
                                  f"snapshot was not written by the official code") from None


def make_plans(g_rec: OfficialRecord | None, d_rec: OfficialRecord | None) -> tuple[Plan | None, Plan | None]:
    """(G plan, D plan): one shared Plan when G and D agree on resolution, channels and precision."""
    g = _checked(generator_options, g_rec)
    d = _checked(discriminator_options, d_rec)
    if g is None or d is None:
        plan = plan_from_options(g or d) if (g or d) else None
        return (plan if g else None), (plan if d else None)
    if all(g[k] == d[k] for k in SHARED_FIELDS):
        plan = plan_from_options({**g, **d})
        return plan, plan
    return plan_from_options(g), plan_from_options({**g, **d})


# ----------------------------------------------------------------------------
# Records -> state dicts -> modules.


def flatten_record(rec: OfficialRecord, prefix: str = "", _seen: set[int] | None = None) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers of a record tree under official dotted names."""
    _seen = set() if _seen is None else _seen
    if id(rec) in _seen:  # Official networks never share a submodule; a crafted file could loop or explode.
        raise OfficialPickleError(f"module {prefix.rstrip('.')!r} appears twice in the network tree: not an official "
                                  f"snapshot")
    _seen.add(id(rec))
    skip = rec.state.get("_non_persistent_buffers_set") or set()
    out: dict[str, torch.Tensor] = {}
    items = list(rec.parameters.items()) + [(k, v) for k, v in rec.buffers.items() if k not in skip]
    for name, value in items:
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise OfficialPickleError(f"{prefix}{name} in {rec.class_name} is a {type(value).__name__}, not a tensor")
        out[prefix + name] = value
    for name, child in rec.modules.items():
        if child is None:
            continue
        if not isinstance(child, OfficialRecord):
            raise OfficialPickleError(f"submodule {prefix}{name} is a {type(child).__name__}, not a network module")
        out.update(flatten_record(child, f"{prefix}{name}.", _seen))
    return out


def _listing(names: list[str], limit: int = 12) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_record(model: nn.Module, rec: OfficialRecord, what: str) -> nn.Module:
    """Strictly load a record tree into a ganforge module; mismatches are listed by name."""
    tensors = flatten_record(rec)
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    shapes = [f"{k} {list(tensors[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
              if k in tensors and tensors[k].shape != v.shape]
    problems = [f"{label}: {_listing(names)}" for label, names in
                (("missing", missing), ("unexpected", unexpected), ("shape (snapshot vs ganforge)", shapes)) if names]
    if problems:
        raise OfficialPickleError(f"{what} does not match the ganforge network built from its init_kwargs ("
                                  + "; ".join(problems) + "): the snapshot was made by modified networks code")
    model.load_state_dict(tensors, strict=True)
    return model.eval().requires_grad_(False)


def _check_stylegan2(rec: OfficialRecord, what: str) -> None:
    synthesis = rec.modules.get("synthesis")
    if isinstance(synthesis, OfficialRecord) and "input" in synthesis.modules:
        raise OfficialPickleError(f"{what} is a StyleGAN3 generator (synthesis.input); ganforge imports "
                                  f"StyleGAN2-ADA snapshots only")


def _augment_p(rec: OfficialRecord | None) -> float | None:
    p = rec.buffers.get("p") if rec is not None else None
    return float(p.reshape(-1)[0]) if isinstance(p, torch.Tensor) and p.numel() == 1 else None


def load_official_pkl(path: str | os.PathLike | BinaryIO) -> OfficialSnapshot:
    """Read an official StyleGAN2-ADA snapshot safely and rebuild G, D, G_ema as ganforge networks."""
    data, sources = _read(path)
    gens = {k: data.get(k) for k in ("G", "G_ema")}
    for key, rec in gens.items():
        if rec is not None:
            _check_stylegan2(rec, key)
    main = gens["G_ema"] or gens["G"]
    plan, d_plan = make_plans(main, data.get("D"))
    nets: dict[str, nn.Module | None] = {}
    for key, rec in gens.items():
        same = rec is main or (rec is not None and _checked(generator_options, rec) == generator_options(main))
        p = plan if same else make_plans(rec, None)[0]
        nets[key] = load_record(Generator(p), rec, f"snapshot {key}") if rec is not None else None
    d_rec = data.get("D")
    nets["D"] = load_record(Discriminator(d_plan), d_rec, "snapshot D") if d_rec is not None else None
    tsk = data.get("training_set_kwargs")
    return OfficialSnapshot(
        G=nets["G"], D=nets["D"], G_ema=nets["G_ema"], plan=plan, d_plan=d_plan,
        augment_p=_augment_p(data.get("augment_pipe")),
        training_set_kwargs=dict(tsk) if isinstance(tsk, dict) else None,
        source_fingerprint=fingerprint(sources), sources={k: sorted(v) for k, v in sorted(sources.items())},
    )
