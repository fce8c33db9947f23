"""The safe importer of official StyleGAN2-ADA pickles: reference outputs, and no code from the file runs.

The official pickles live in `shared/anchors/official-pkls` beside the repository (NVIDIA-licensed test
data, never copied into ganforge); those tests skip when the folder is absent. Every other test builds
its own pickles: snapshots in the official layout written from ganforge networks, and malicious files.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import io
import json
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import OFFICIAL_PKLS, require_shared

from ganforge import netcheck
from ganforge.modelio import (
    OfficialPickleError,
    OfficialRecord,
    UnsafePickleError,
    load_official_pkl,
    read_official_pkl,
)
from ganforge.models.discriminator import Discriminator
from ganforge.models.generator import Generator
from ganforge.plan import make_plan

PKL_DIR = OFFICIAL_PKLS
CASES = ("sg2ada-32px-uncond-skip-resnet", "sg2ada-64px-cond5-fp16")
REL_TOL = 1e-5  # max|ours - reference| / max|reference|.


def require_official_pkls() -> Path:
    return require_shared(OFFICIAL_PKLS, "manifest.json", "the reference tests compare against the official pickles")


@pytest.fixture(scope="session")
def official_pkls() -> Path:
    return require_official_pkls()


needs_pkls = pytest.mark.usefixtures("official_pkls")


# ----------------------------------------------------------------------------
# "No code ran": exec/eval/compile raise, and an audit hook records what the interpreter was asked to do.

WATCHED = (
    "exec",
    "compile",
    "import",
    "os.system",
    "os.exec",
    "os.spawn",
    "os.posix_spawn",
    "os.fork",
    "subprocess.Popen",
    "pickle.find_class",
    "ctypes.",
    "code.__new__",
    "function.__new__",
)
_events: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _events is not None and event.startswith(WATCHED):
        _events.append(event)


_hooked = False


def _forbidden(name: str):
    def call(*args, **kwargs):
        raise AssertionError(f"{name} was called while loading a pickle")

    return call


@functools.cache
def _warm_meta_device() -> None:
    """The importer builds networks on the meta device first; torch imports its meta kernels (and dynamo) lazily
    on first use, which is torch's own code, not the pickle's: import them before the guard watches."""
    plan = make_plan("tiny", 16, cbase=256, cmax=32)
    netcheck.expected_shapes(plan, "G"), netcheck.expected_shapes(plan, "D")


@contextlib.contextmanager
def no_code_runs():
    """Fail if loading execs, compiles or imports anything, or starts a process."""
    global _events, _hooked
    _warm_meta_device()
    if not _hooked:  # Audit hooks are permanent for the process; this one is inert outside the guard.
        sys.addaudithook(_audit)
        _hooked = True
    before = set(sys.modules)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("exec", "eval", "compile"):
            mp.setattr(builtins, name, _forbidden(f"builtins.{name}"))
        mp.setattr(os, "system", _forbidden("os.system"))
        mp.setattr(subprocess, "Popen", _forbidden("subprocess.Popen"))
        _events = events = []
        try:
            yield
        finally:
            _events = None
    assert not events, f"the interpreter was asked to do {sorted(set(events))} while loading"
    new = sorted(set(sys.modules) - before)
    assert not new, f"loading imported modules {new}"
    for m in sys.modules:
        assert not m.startswith(("torch_utils", "training", "dnnlib", "_imported_module_")), m


# ----------------------------------------------------------------------------
# The official pickles and their reference outputs.


@pytest.fixture(scope="module")
def manifest() -> dict:
    return {c["case"]["name"]: c for c in json.loads((PKL_DIR / "manifest.json").read_text())["cases"]}


@pytest.fixture(scope="module")
def snapshots() -> dict:
    out = {}
    for case in CASES:
        with no_code_runs():
            out[case] = load_official_pkl(PKL_DIR / f"{case}.pkl")
    return out


def rel_err(a: torch.Tensor, b: np.ndarray) -> float:
    b = torch.from_numpy(b)
    assert a.shape == b.shape, f"shape {list(a.shape)} vs reference {list(b.shape)}"
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@needs_pkls
@pytest.mark.parametrize("case", CASES)
def test_reference_outputs(case, snapshots):
    snap, ref = snapshots[case], np.load(PKL_DIR / f"{case}.npz")
    z, c = torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"])
    c = c if c.shape[1] else None  # ganforge takes None for an unconditional model; official takes [N, 0].
    with torch.no_grad():
        out = {
            "ws": snap.G_ema.mapping(z, c),
            "ws_psi07": snap.G_ema.mapping(z, c, truncation_psi=0.7),
            "img": snap.G_ema(z, c, noise_mode="const", force_fp32=True),
            "img_noise_none": snap.G_ema(z, c, noise_mode="none", force_fp32=True),
            "img_G": snap.G(z, c, noise_mode="const", force_fp32=True),
            "d_logits": snap.D(torch.from_numpy(ref["img"]), c, force_fp32=True),
        }
    errors = {k: rel_err(v, ref[k]) for k, v in out.items()}
    assert max(errors.values()) < REL_TOL, errors


@needs_pkls
@pytest.mark.parametrize("case", CASES)
def test_snapshot_metadata(case, snapshots, manifest):
    snap, m = snapshots[case], manifest[case]
    assert snap.augment_p == pytest.approx(m["verify"]["augment_p"], abs=1e-7)
    assert snap.training_set_kwargs == m["verify"]["training_set_kwargs"]
    cfg, plan = m["case"], snap.plan
    assert snap.d_plan is plan
    assert (plan.height, plan.width, plan.z_dim, plan.w_dim, plan.c_dim) == (cfg["res"],) * 2 + (
        cfg["z_dim"],
        cfg["w_dim"],
        cfg["c_dim"],
    )
    assert (plan.mapping_layers, plan.num_fp16_res, plan.mbstd_group) == (cfg["map"], cfg["num_fp16_res"], cfg["mbstd"])
    assert plan.conv_clamp == cfg["conv_clamp"]
    assert (plan.g_architecture, plan.d_architecture) == (cfg["G_arch"], cfg["D_arch"])
    assert list(plan.channels) == list(m["block_channels"]["G"].values())
    assert plan.num_ws == m["num_ws"]
    assert set(snap.sources) == {s["sha256"] for s in m["pickle"]["embedded_sources"]}
    for net in (snap.G, snap.D, snap.G_ema):
        assert not net.training
        assert all(not p.requires_grad and p.device.type == "cpu" for p in net.parameters())
    counts = {k: sum(p.numel() for p in getattr(snap, k).parameters()) for k in ("G", "D")}
    assert counts == m["verify"]["num_params"]


@needs_pkls
@pytest.mark.parametrize("case", CASES)
def test_read_official_pkl_returns_plain_records(case, manifest):
    with no_code_runs():
        data = read_official_pkl(PKL_DIR / f"{case}.pkl")
    assert sorted(data) == manifest[case]["pickle"]["top_level_keys"]
    for key in ("G", "G_ema", "D"):
        assert isinstance(data[key], OfficialRecord)
    assert data["G_ema"].init_kwargs == manifest[case]["init_kwargs"]["G"]
    assert data["D"].init_kwargs == manifest[case]["init_kwargs"]["D"]
    assert type(data["G_ema"].init_kwargs["synthesis_kwargs"]) is dict  # EasyDict became a plain dict.
    w_avg = [data[k].modules["mapping"].buffers["w_avg"] for k in ("G", "G_ema")]
    assert torch.equal(*w_avg)
    assert type(data["training_set_kwargs"]) is dict


# ----------------------------------------------------------------------------
# Snapshots in the official layout, written here from ganforge networks (no shared folder needed).

OFFICIAL_NAME = {"MinibatchStd": "MinibatchStdLayer"}


@contextlib.contextmanager
def official_globals():
    """Modules named like the official ones, registered only while pickling (so pickle can name them)."""

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("never called")

    class EasyDict(dict):
        pass

    _reconstruct_persistent_obj.__module__, _reconstruct_persistent_obj.__qualname__ = (
        "torch_utils.persistence",
        "_reconstruct_persistent_obj",
    )
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    names = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")
    mods = {name: types.ModuleType(name) for name in names}
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    mods["dnnlib.util"].EasyDict = EasyDict
    assert not set(mods) & set(sys.modules)
    sys.modules.update(mods)
    try:
        yield _reconstruct_persistent_obj, EasyDict
    finally:
        for name in mods:
            del sys.modules[name]


class Persistent:
    """Pickles as torch_utils.persistence._reconstruct_persistent_obj(meta), like the official Decorator."""

    def __init__(self, reconstruct, meta: dict):
        self.reconstruct, self.meta = reconstruct, meta

    def __reduce__(self):
        return self.reconstruct, (self.meta,)


def as_official(
    module: torch.nn.Module,
    reconstruct,
    init_kwargs: dict | None = None,
    class_name: str | None = None,
    src: str = "# networks.py\n",
) -> Persistent:
    state = {
        "training": False,
        "_parameters": OrderedDict(module._parameters),
        "_buffers": OrderedDict(module._buffers),
        "_non_persistent_buffers_set": set(),
        "_forward_hooks": OrderedDict(),
        "_modules": {n: as_official(m, reconstruct, src=src) for n, m in module._modules.items()},
        "_init_args": (),
        "_init_kwargs": init_kwargs or {},
        "weight_gain": np.float64(0.25),
        "conv_clamp": None,
    }
    name = class_name or OFFICIAL_NAME.get(type(module).__name__, type(module).__name__)
    return Persistent(reconstruct, dict(type="class", version=6, module_src=src, class_name=name, state=state))


def official_kwargs(EasyDict, plan, d_cbase: int | None = None) -> tuple[dict, dict]:
    res, cbase, ch = plan.height, 256, plan.img_channels
    synthesis = EasyDict(channel_base=cbase, channel_max=32, num_fp16_res=plan.num_fp16_res, conv_clamp=plan.conv_clamp)
    if plan.g_architecture != "skip":  # train.py passes the default implicitly; other values are explicit
        synthesis["architecture"] = plan.g_architecture
    g = dict(
        z_dim=plan.z_dim,
        w_dim=plan.w_dim,
        mapping_kwargs=EasyDict(num_layers=plan.mapping_layers),
        synthesis_kwargs=synthesis,
        c_dim=plan.c_dim,
        img_resolution=res,
        img_channels=ch,
    )
    d = dict(
        block_kwargs=EasyDict(),
        mapping_kwargs=EasyDict(),
        epilogue_kwargs=EasyDict(mbstd_group_size=2),
        channel_base=d_cbase or cbase,
        channel_max=32,
        num_fp16_res=plan.num_fp16_res,
        conv_clamp=plan.conv_clamp,
        c_dim=plan.c_dim,
        img_resolution=res,
        img_channels=ch,
    )
    if plan.d_architecture != "resnet":
        d["architecture"] = plan.d_architecture
    return g, d


def perturbed(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module.eval()


def write_snapshot(
    tmp_path: Path,
    c_dim: int = 0,
    d_cbase: int | None = None,
    protocol: int = 4,
    g_kwargs: dict | None = None,
    edit=None,
    arch: tuple[str, str] = ("skip", "resnet"),
    img_channels: int = 3,
    mapping_layers: int = 2,
):
    """An official-layout snapshot of fresh ganforge networks; `edit(snap, reconstruct)` may change it first.

    Returns (path, G, D, G_ema)."""
    common = dict(
        c_dim=c_dim,
        img_channels=img_channels,
        g_architecture=arch[0],
        d_architecture=arch[1],
        num_fp16_res=1,
        conv_clamp=64.0,
        mbstd_group=2,
    )
    plan = make_plan("tiny", 16, cbase=256, cmax=32, z_dim=16, w_dim=24, mapping_layers=mapping_layers, **common)
    d_plan = make_plan("tiny", 16, cbase=d_cbase or 256, cmax=32, **common)
    G, G_ema, D = perturbed(Generator(plan)), perturbed(Generator(plan)), perturbed(Discriminator(d_plan))
    with official_globals() as (reconstruct, EasyDict):
        g_kw, d_kw = official_kwargs(EasyDict, plan, d_cbase)
        g_kw.update(g_kwargs or {})
        aug = as_official(torch.nn.Module(), reconstruct, class_name="AugmentPipe", src="# augment.py\n")
        aug.meta["state"]["_buffers"]["p"] = torch.tensor(0.25)
        snap = dict(
            training_set_kwargs=dict(path="data.zip", resolution=16),
            augment_pipe=aug,
            G=as_official(G, reconstruct, g_kw),
            D=as_official(D, reconstruct, d_kw),
            G_ema=as_official(G_ema, reconstruct, g_kw),
        )
        if edit is not None:
            edit(snap, reconstruct)
        path = tmp_path / "network-snapshot-000000.pkl"
        path.write_bytes(pickle.dumps(snap, protocol=protocol))
    return path, G, D, G_ema


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("c_dim", [0, 3])
def test_roundtrip_official_layout(tmp_path, protocol, c_dim):
    path, G, D, G_ema = write_snapshot(tmp_path, c_dim=c_dim, protocol=protocol)
    with no_code_runs():
        snap = load_official_pkl(path)
    z, c = torch.randn(4, 16), (torch.eye(3)[[0, 1, 2, 0]] if c_dim else None)
    with torch.no_grad():
        for ours, theirs in ((snap.G, G), (snap.G_ema, G_ema)):
            assert torch.equal(ours(z, c, noise_mode="const"), theirs(z, c, noise_mode="const"))
        img = G_ema(z, c, noise_mode="const")
        assert torch.equal(snap.D(img, c), D(img, c))
    assert snap.augment_p == 0.25 and snap.training_set_kwargs == dict(path="data.zip", resolution=16)
    assert snap.plan.conv_clamp == 64.0 and snap.plan.fp16_dtype == "fp16" and snap.plan.mbstd_group == 2
    assert snap.d_plan is snap.plan and len(snap.sources) == 2 and len(snap.source_fingerprint) == 64


@pytest.mark.parametrize("arch", [("orig", "orig"), ("resnet", "skip"), ("skip", "resnet")])
@pytest.mark.parametrize("img_channels,c_dim,mapping_layers", [(1, 0, 1), (3, 4, 5)])
def test_every_architecture_option_converts(tmp_path, arch, img_channels, c_dim, mapping_layers):
    path, G, D, G_ema = write_snapshot(
        tmp_path, c_dim=c_dim, arch=arch, img_channels=img_channels, mapping_layers=mapping_layers
    )
    snap = load_official_pkl(path)
    assert (snap.plan.g_architecture, snap.plan.d_architecture, snap.plan.img_channels) == (*arch, img_channels)
    assert snap.plan.mapping_layers == mapping_layers and (snap.plan.z_dim, snap.plan.w_dim) == (16, 24)
    z, c = torch.randn(4, 16), (torch.eye(c_dim)[[0, 1, 2, 3]] if c_dim else None)
    with torch.no_grad():
        img = G_ema(z, c, noise_mode="const")
        assert torch.equal(snap.G_ema(z, c, noise_mode="const"), img)
        assert torch.equal(snap.D(img, c), D(img, c))


def test_different_g_and_d_channels_give_two_plans(tmp_path):
    path, G, D, _ = write_snapshot(tmp_path, d_cbase=128)
    snap = load_official_pkl(path)
    assert snap.plan.channels == G.plan.channels and snap.d_plan.channels == D.plan.channels
    assert snap.plan.channels != snap.d_plan.channels and snap.d_plan.mbstd_group == 2
    img = torch.randn(2, 3, 16, 16)
    assert torch.equal(snap.D(img), D(img))


def test_missing_tensor_is_named(tmp_path):
    def drop(snap, _):
        del snap["G"].meta["state"]["_modules"]["mapping"].meta["state"]["_buffers"]["w_avg"]

    path, *_ = write_snapshot(tmp_path, edit=drop)
    with pytest.raises(OfficialPickleError, match=r"^snapshot G lacks the tensor\(s\) mapping\.w_avg that its plan"):
        load_official_pkl(path)


def test_shared_submodule_is_refused(tmp_path):
    def share(snap, _):
        mods = snap["D"].meta["state"]["_modules"]
        mods["again"] = mods["b4"]

    path, *_ = write_snapshot(tmp_path, edit=share)
    with pytest.raises(OfficialPickleError, match=r"'again' appears twice"):
        load_official_pkl(path)


def test_missing_init_kwarg_is_named(tmp_path):
    def drop(snap, _):
        del snap["G_ema"].meta["state"]["_init_kwargs"]["z_dim"]

    path, *_ = write_snapshot(tmp_path, edit=drop)
    with pytest.raises(OfficialPickleError, match=r"Generator's init_kwargs are incomplete .*z_dim"):
        load_official_pkl(path)


def test_numpy1_scalar_spelling_is_accepted():
    data = pickle.dumps({"gain": np.float64(0.5)}, protocol=2)
    assert b"cnumpy._core.multiarray\nscalar\n" in data
    data = data.replace(b"cnumpy._core.multiarray\nscalar\n", b"cnumpy.core.multiarray\nscalar\n")
    assert read_official_pkl(io.BytesIO(data)) == {"gain": 0.5}


def test_unsupported_option_is_named(tmp_path):
    path, *_ = write_snapshot(tmp_path, g_kwargs=dict(synthesis_kwargs=dict(channel_base=256, use_noise=False)))
    with pytest.raises(OfficialPickleError, match=r"use_noise=False"):
        load_official_pkl(path)


def test_unknown_class_record_is_refused_and_its_source_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    src = f"open({str(marker)!r}, 'w').close()\nclass Evil: pass\n"

    def evil(snap, reconstruct):
        snap["G"] = as_official(torch.nn.Module(), reconstruct, class_name="Evil", src=src)

    path, *_ = write_snapshot(tmp_path, edit=evil)
    with no_code_runs(), pytest.raises(UnsafePickleError, match=r"class 'Evil' is not an official"):
        read_official_pkl(path)
    assert not marker.exists()


# ----------------------------------------------------------------------------
# Malicious and malformed pickles.


class RunsCommand:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def call_global(module: str, name: str, *args) -> bytes:
    """A protocol-2 pickle that calls module.name(*args) when a plain unpickler loads it."""
    body = pickle.dumps(args, protocol=2)[2:-1]  # The args tuple, without PROTO and STOP.
    return b"\x80\x02" + pickle.GLOBAL + f"{module}\n{name}\n".encode() + body + pickle.REDUCE + pickle.STOP


def _text(s: str) -> bytes:
    b = s.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(b)) + b


def test_os_system_via_reduce_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G": RunsCommand(f"touch {marker}")}))
    for load in (read_official_pkl, load_official_pkl):
        with no_code_runs(), pytest.raises(UnsafePickleError, match=r"(posix|os|nt)\.system"):
            load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "module, name",
    [
        ("os", "system"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("__builtin__", "eval"),
        ("subprocess", "Popen"),
        ("torch", "load"),
        ("pickle", "loads"),
        ("torch_utils.persistence", "persistent_class"),
        ("numpy", "load"),
        ("copyreg", "_reconstructor"),
        ("torch.storage", "_load_from_bytes_unsafe"),
        ("dnnlib.tflib.network", "Network"),
    ],
)
def test_globals_outside_the_allow_list_are_refused(tmp_path, module, name):
    marker = tmp_path / "pwned"
    data = call_global(module, name, f"open({str(marker)!r}, 'w').close()")
    with no_code_runs(), pytest.raises(UnsafePickleError, match=rf"{name}"):
        read_official_pkl(io.BytesIO(data))
    assert not marker.exists()


def storage_payload(t: torch.Tensor) -> bytes:
    """The nested torch.save bytes that torch writes for the storage of `t` in a plain pickle."""
    return next(
        arg
        for op, arg, _ in pickletools.genops(pickle.dumps(t, protocol=4))
        if op.name == "BINBYTES" and arg[:2] == b"\x80\x02"
    )


def test_nested_storage_payload_is_restricted_too(tmp_path):
    marker = tmp_path / "pwned"
    data = call_global("torch.storage", "_load_from_bytes", pickle.dumps(RunsCommand(f"touch {marker}"), protocol=2))
    with no_code_runs(), pytest.raises(UnsafePickleError, match=r"system in a tensor storage payload"):
        read_official_pkl(io.BytesIO(data))
    assert not marker.exists()


@pytest.mark.parametrize("state", [b"}" + _text("x") + b"K\x01s", b"N}" + _text("fn") + b"K\x01s\x86"])
def test_build_on_allowed_objects_is_refused(state):
    for target in (b"ccollections\nOrderedDict\n)R", b"cnumpy\ndtype\n", b"cdnnlib.util\nEasyDict\n)\x81"):
        data = b"\x80\x02" + target + state + pickle.BUILD + pickle.STOP
        with pytest.raises(UnsafePickleError, match=r"BUILD opcode"):
            read_official_pkl(io.BytesIO(data))


def test_build_on_a_tensor_is_refused():
    data = pickle.dumps(torch.zeros(3), protocol=2)[:-1] + b"}" + pickle.BUILD + pickle.STOP
    with pytest.raises(UnsafePickleError, match=r"BUILD opcode"):
        read_official_pkl(io.BytesIO(data))


def test_object_dtype_and_persistent_ids_are_refused():
    with pytest.raises(UnsafePickleError, match=r"numpy.dtype\('O'\)"):
        read_official_pkl(io.BytesIO(call_global("numpy", "dtype", "O", False, True)))
    with pytest.raises(UnsafePickleError, match=r"persistent id"):
        read_official_pkl(io.BytesIO(b"\x80\x02" + _text("x") + b"Q."))


@pytest.mark.parametrize("size, stride", [((1000,), (1,)), ((10**6, 10**6), (0, 0)), ((2,), (7,))])
def test_tensor_larger_than_its_storage_is_refused(size, stride):
    def body(value) -> bytes:  # A protocol-2 pickle of `value` without PROTO and STOP.
        return pickle.dumps(value, protocol=2)[2:-1]

    storage = b"ctorch.storage\n_load_from_bytes\n" + body((storage_payload(torch.zeros(4)),)) + pickle.REDUCE
    args = storage + body(0) + body(size) + body(stride) + pickle.NEWFALSE + b"ccollections\nOrderedDict\n)R"
    data = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(" + args + pickle.TUPLE + pickle.REDUCE + pickle.STOP
    with pytest.raises(OfficialPickleError, match=r"does not fit its storage"):
        read_official_pkl(io.BytesIO(data))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_data_and_tensors_round_trip(protocol):
    base = torch.randn(5, 6)
    obj = {
        "t": base,
        "view": base[1:, ::2],
        "half": torch.randn(3).half(),
        "p": torch.nn.Parameter(torch.ones(2)),
        "n": np.float64(0.125),
        "i": np.int64(-3),
        "s": {1, 2},
        "od": OrderedDict(a=1),
        "l": [1, (2, "x")],
    }
    with no_code_runs():
        out = read_official_pkl(io.BytesIO(pickle.dumps(obj, protocol=protocol)))
    assert torch.equal(out["t"], base) and torch.equal(out["view"], base[1:, ::2])
    assert out["half"].dtype == torch.float16 and torch.equal(out["half"], obj["half"])
    assert type(out["p"]) is torch.Tensor and torch.equal(out["p"], torch.ones(2))
    assert (out["n"], out["i"], out["s"], out["od"], out["l"]) == (0.125, -3, {1, 2}, {"a": 1}, [1, (2, "x")])
    assert type(out["od"]) is dict


def test_not_a_snapshot_gives_a_clear_error():
    with pytest.raises(OfficialPickleError, match=r"not the dict of an official network snapshot"):
        load_official_pkl(io.BytesIO(pickle.dumps([1, 2])))
    with pytest.raises(OfficialPickleError, match=r"damaged"):
        read_official_pkl(io.BytesIO(b"\x80\x04garbage"))
