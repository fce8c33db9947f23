"""The safe importer on pickles of the official StyleGAN3 repository: reference outputs, and no code from the file runs.

The StyleGAN3 repository writes snapshots like StyleGAN2-ADA's (the same persistence records and class names),
with differences the importer must see: its `networks_stylegan2.py` has other defaults (FP16 in 4 resolutions,
conv_clamp 256, w_avg_beta 0.998) and takes the synthesis options as top-level keywords; its StyleGAN3
generator maps onto ganforge's StyleGAN3 networks and keeps NumPy arrays (sizes) in its modules' state. The
official pickles live in `shared/anchors/official-pkls-sg3` (NVIDIA-licensed test data, never copied into
ganforge); the other tests build their own files.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import OFFICIAL_PKLS_SG3, require_shared
from test_import_official import as_official, no_code_runs, official_globals, perturbed, write_snapshot

import ganforge
from ganforge.modelio import (
    OfficialPickleError,
    OfficialRecord,
    UnsafePickleError,
    load_official_pkl,
    read_official_pkl,
)
from ganforge.modelio.checkpoint import open_checkpoint
from ganforge.modelio.convert import convert_official
from ganforge.modelio.official import SG3_GEOMETRY, check_geometry, generator_options, make_plans
from ganforge.modelio.untrusted import refusing_damage
from ganforge.models.stylegan3 import plan_from_sg3_kwargs

SG2 = "sg3repo-stylegan2-32px-cond3-noaug"  # networks_stylegan2.Generator of the StyleGAN3 repository.
SG3T = "sg3t-32px-uncond-fp32"  # networks_stylegan3.Generator, --cfg=stylegan3-t.
ATOL = 1e-4  # Absolute, on O(1) outputs: float32 reordering is ~3e-6, the smallest ingredient 3.6e-3.


@pytest.fixture(scope="module")
def pkls() -> Path:
    path = require_shared(OFFICIAL_PKLS_SG3, "manifest.json", "the reference tests compare against official pickles")
    # Building a StyleGAN3 network designs its filters with SciPy, imported on first use: SciPy's own code, not
    # the pickle's, so it is imported before the guards watch.
    import scipy.signal  # noqa: F401

    return path


@pytest.fixture(scope="module")
def manifest(pkls) -> dict:
    return {c["case"]["name"]: c for c in json.loads((pkls / "manifest.json").read_text())["cases"]}


def max_err(ours: torch.Tensor, ref: np.ndarray) -> float:
    theirs = torch.from_numpy(ref)
    assert ours.shape == theirs.shape, f"shape {list(ours.shape)} vs reference {list(theirs.shape)}"
    return float((ours - theirs).abs().max())


def generator_outputs(G, ref) -> dict[str, torch.Tensor]:
    """The reference computations that need only G_ema (noise_mode='const', as the .npz was made)."""
    z, c = torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"])
    c = c if c.shape[1] else None  # ganforge takes None for an unconditional model; official takes [N, 0].
    with torch.no_grad():
        return {
            "ws": G.mapping(z, c),
            "ws_psi07": G.mapping(z, c, truncation_psi=0.7),
            "img": G(z, c, noise_mode="const"),
            "img_psi07": G(z, c, truncation_psi=0.7, noise_mode="const"),
        }


# ----------------------------------------------------------------------------
# StyleGAN2 from the StyleGAN3 repository: every reference array, through each way in.


@pytest.fixture(scope="module")
def sg2_snapshot(pkls):
    with no_code_runs():
        return load_official_pkl(pkls / f"{SG2}.pkl")


def test_sg2_reference_outputs(sg2_snapshot, pkls):
    snap, ref = sg2_snapshot, np.load(pkls / f"{SG2}.npz")
    z, c = torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"])
    out = generator_outputs(snap.G_ema, ref)
    with torch.no_grad():
        out["img_noise_none"] = snap.G_ema(z, c, noise_mode="none")
        out["img_G"] = snap.G(z, c, noise_mode="const")
        out["d_logits"] = snap.D(torch.from_numpy(ref["img"]), c)
        out["d_logits_psi07"] = snap.D(torch.from_numpy(ref["img_psi07"]), c)
    errors = {k: max_err(v, ref[k]) for k, v in out.items()}
    assert max(errors.values()) < ATOL, errors


def test_sg2_defaults_of_the_stylegan3_repository(sg2_snapshot, manifest):
    snap, m = sg2_snapshot, manifest[SG2]
    plan = snap.plan
    assert snap.repository == "stylegan3" and snap.d_plan is plan
    assert "num_fp16_res" not in m["init_kwargs"]["G"] and "conv_clamp" not in m["init_kwargs"]["G"]
    assert (plan.num_fp16_res, plan.conv_clamp, plan.w_avg_beta) == (4, 256.0, 0.998)
    assert (plan.mapping_layers, plan.c_dim, plan.z_dim, plan.w_dim) == (8, 3, 64, 64)
    assert plan.num_ws == m["verify"]["num_ws"]
    assert list(plan.channels) == list(m["verify"]["block_channels"].values())
    assert snap.augment_p is None and snap.training_set_kwargs == m["verify"]["training_set_kwargs"]
    assert set(snap.sources) == {s["sha256"] for s in m["pickle"]["embedded_sources"]}
    counts = {k: sum(p.numel() for p in getattr(snap, k).parameters()) for k in ("G", "D")}
    assert counts == m["verify"]["num_params"]


def test_sg2_through_load_generator_and_convert(pkls, tmp_path):
    ref = np.load(pkls / f"{SG2}.npz")
    with no_code_runs():
        direct = ganforge.load_generator(pkls / f"{SG2}.pkl")
        dest = convert_official(pkls / f"{SG2}.pkl", tmp_path / "sg2.safetensors")
    assert open_checkpoint(dest).meta["source"]["format"] == "stylegan3-pkl"
    converted = ganforge.load_generator(dest)
    for G in (direct, converted):
        errors = {k: max_err(v, ref[k]) for k, v in generator_outputs(G, ref).items()}
        assert max(errors.values()) < ATOL, errors


# ----------------------------------------------------------------------------
# StyleGAN3-T: plain records (NumPy arrays included), then every reference array through each way in.


def test_sg3t_reads_as_plain_records(pkls, manifest):
    with no_code_runs():
        data = read_official_pkl(pkls / f"{SG3T}.pkl")
    assert sorted(data) == sorted(manifest[SG3T]["pickle"]["top_level_keys"])
    G = data["G_ema"]
    assert isinstance(G, OfficialRecord) and G.init_kwargs == manifest[SG3T]["init_kwargs"]["G"]
    size = G.modules["synthesis"].modules["input"].state["size"]
    assert type(size) is np.ndarray and size.dtype == np.int64 and size.tolist() == [36, 36]
    assert not size.flags.writeable
    names = G.modules["synthesis"].state["layer_names"]
    assert names == [layer["name"] for layer in manifest[SG3T]["verify"]["layers"]]


@pytest.fixture(scope="module")
def sg3t_snapshot(pkls):
    with no_code_runs():
        return load_official_pkl(pkls / f"{SG3T}.pkl")


def transformed(G, ref) -> torch.Tensor:
    """G_ema(z) with the stored inverse transform in synthesis.input.transform (as gen_images.py sets it)."""
    identity = G.synthesis.input.transform.clone()
    G.synthesis.input.transform.copy_(torch.from_numpy(ref["transform"]))
    try:
        with torch.no_grad():
            return G(torch.from_numpy(ref["z"]), None)
    finally:
        G.synthesis.input.transform.copy_(identity)


def test_sg3t_reference_outputs(sg3t_snapshot, pkls):
    snap, ref = sg3t_snapshot, np.load(pkls / f"{SG3T}.npz")
    z = torch.from_numpy(ref["z"])
    out = generator_outputs(snap.G_ema, ref)
    with torch.no_grad():
        out["img_G"] = snap.G(z, None)
        out["d_logits"] = snap.D(torch.from_numpy(ref["img"]), None)
        out["d_logits_psi07"] = snap.D(torch.from_numpy(ref["img_psi07"]), None)
    out["img_transformed"] = transformed(snap.G_ema, ref)
    errors = {k: max_err(v, ref[k]) for k, v in out.items()}
    assert max(errors.values()) < ATOL, errors
    assert torch.equal(snap.G_ema.synthesis.input.transform, torch.eye(3))


def test_sg3t_plan(sg3t_snapshot, manifest):
    snap, m = sg3t_snapshot, manifest[SG3T]
    plan, kw = snap.plan, m["init_kwargs"]["G"]
    assert plan.family == "stylegan3-t" and snap.d_plan is plan and snap.repository == "stylegan3"
    assert (plan.sg3_cbase, plan.sg3_cmax, plan.cbase, plan.cmax) == (512, 32, 512, 32)
    assert (plan.mapping_layers, plan.w_avg_beta, plan.magnitude_ema_beta) == (2, 0.998, kw["magnitude_ema_beta"])
    assert (plan.num_fp16_res, plan.conv_clamp, plan.sg3_conv_kernel, plan.sg3_radial_filters) == (0, None, 3, False)
    assert plan.num_ws == m["verify"]["num_ws"] and plan.mbstd_group == 4
    assert [layer.name for layer in plan.sg3_geometry] == [layer["name"] for layer in m["verify"]["layers"]]
    assert snap.augment_p == pytest.approx(m["verify"]["augment_p"], abs=1e-7)
    counts = {k: sum(p.numel() for p in getattr(snap, k).parameters()) for k in ("G", "D")}
    assert counts == m["verify"]["num_params"]


def test_sg3t_through_load_generator_and_convert(pkls, tmp_path):
    ref = np.load(pkls / f"{SG3T}.npz")
    with no_code_runs():
        direct = ganforge.load_generator(pkls / f"{SG3T}.pkl")
        dest = convert_official(pkls / f"{SG3T}.pkl", tmp_path / "sg3t.safetensors")
    assert open_checkpoint(dest).meta["source"]["format"] == "stylegan3-pkl"
    converted = ganforge.load_generator(dest)
    for G in (direct, converted):
        out = {**generator_outputs(G, ref), "img_transformed": transformed(G, ref)}
        errors = {k: max_err(v, ref[k]) for k, v in out.items()}
        assert max(errors.values()) < ATOL, errors


OFFICIAL_SG3_NAMES = {
    "StyleGAN3Generator": "Generator",
    "StyleGAN3Synthesis": "SynthesisNetwork",
    "StyleGAN3Mapping": "MappingNetwork",
}


def write_sg3_snapshot(tmp_path: Path, init_kwargs: dict) -> tuple[Path, torch.nn.Module]:
    """An official-layout networks_stylegan3 snapshot (G_ema alone) of a fresh ganforge StyleGAN3 generator, its
    input and layers recording their geometry as the official modules do. Returns (path, G)."""
    plan = plan_from_sg3_kwargs(init_kwargs)
    G = perturbed(ganforge.build_generator(plan))
    with official_globals() as (reconstruct, _):
        rec = as_official(G, reconstruct, init_kwargs, class_name="Generator")
        for r in _records(rec):
            r.meta["class_name"] = OFFICIAL_SG3_NAMES.get(r.meta["class_name"], r.meta["class_name"])
            if r.meta["class_name"] == "FullyConnectedLayer":
                r.meta["state"]["in_features"] = 1
        layers = rec.meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]
        first = plan.sg3_geometry[0]
        size, rate, bandwidth = np.asarray([first.in_size] * 2), float(first.in_rate), first.in_cutoff
        layers["input"].meta["state"].update(size=size, sampling_rate=rate, bandwidth=bandwidth)
        for spec in plan.sg3_geometry:
            state = layers[spec.name].meta["state"]
            for attr, name in SG3_GEOMETRY.items():
                value = getattr(spec, name)
                state[attr] = np.asarray([value] * 2) if attr.endswith("_size") else value
            state["padding"] = list(spec.padding)
        path = tmp_path / "network-snapshot-sg3.pkl"
        path.write_bytes(pickle.dumps(dict(G_ema=rec, augment_pipe=None), protocol=4))
    return path, G


@pytest.mark.parametrize("family", ["stylegan3-t", "stylegan3-r"])
def test_stylegan3_layout_round_trips(tmp_path, family):
    r = family == "stylegan3-r"
    init_kwargs = dict(
        z_dim=16,
        w_dim=16,
        mapping_kwargs={"num_layers": 1},
        channel_base=1024 * (2 if r else 1),
        channel_max=32 * (2 if r else 1),
        magnitude_ema_beta=0.99,
        **(dict(conv_kernel=1, use_radial_filters=True) if r else {}),
        c_dim=2,
        img_resolution=16,
        img_channels=3,
    )
    path, G = write_sg3_snapshot(tmp_path, init_kwargs)
    with no_code_runs():
        snap = load_official_pkl(path)
    plan = snap.plan
    assert plan.family == family and (plan.num_fp16_res, plan.conv_clamp) == (4, 256.0)  # The official defaults.
    assert (plan.sg3_conv_kernel, plan.sg3_radial_filters) == ((1, True) if r else (3, False))
    assert (plan.mapping_layers, plan.sg3_cbase, plan.cbase) == (1, init_kwargs["channel_base"], 1024)  # D: G's / 2.
    z, c = torch.randn(3, 16), torch.eye(2)[[0, 1, 0]]
    with torch.no_grad():
        assert torch.equal(snap.G_ema(z, c), G(z, c))


# Same-length byte edits of the official file (its frames stay valid): a class, an option, a layer attribute.
SG3T_EDITS = [
    (b"SynthesisInput", b"SynthesisInpvt", UnsafePickleError, r"class 'SynthesisInpvt' is not an official"),
    (b"magnitude_ema_beta", b"magnitude_ema_bet4", OfficialPickleError, r"has option magnitude_ema_bet4=0\.99"),
    (b"in_half_width", b"in_half_widtX", OfficialPickleError, r"L0_36_32 records in_half_width=None, but its init"),
]


@pytest.mark.parametrize("old, new, error, message", SG3T_EDITS, ids=["class", "option", "geometry"])
def test_edited_sg3t_files_are_refused_in_one_sentence(pkls, old, new, error, message):
    data = (pkls / f"{SG3T}.pkl").read_bytes()
    assert old in data and len(old) == len(new)
    with no_code_runs(), pytest.raises(error, match=message) as info:
        load_official_pkl(io.BytesIO(data.replace(old, new)))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("conv_kernel", "3", r"conv_kernel='3' is not a whole number"),
        ("use_radial_filters", 1, r"use_radial_filters=1 is not True or False"),
        ("first_cutoff", float("inf"), r"first_cutoff=inf is not a finite number"),
        ("conv_clamp", "256", r"conv_clamp='256' is not a finite number or None"),
        ("fused_modconv_default", True, r"option fused_modconv_default=True, which the official StyleGAN3 gen"),
        ("num_layers", 0, r"sg3_layers"),
    ],
)
def test_bad_stylegan3_options_are_refused_in_one_sentence(pkls, key, value, message):
    data = read_official_pkl(pkls / f"{SG3T}.pkl")
    data["G_ema"].state["_init_kwargs"][key] = value
    with pytest.raises(OfficialPickleError, match=message) as info, refusing_damage("reading the snapshot"):
        generator_options(data["G_ema"])
        make_plans(data["G_ema"], data["D"])
    assert "\n" not in str(info.value)


def test_layers_recorded_otherwise_than_the_plan_lays_them_out_are_refused(pkls, sg3t_snapshot):
    data = read_official_pkl(pkls / f"{SG3T}.pkl")
    check_geometry(data["G_ema"], sg3t_snapshot.plan, "snapshot G_ema")  # As recorded: accepted.
    layer = data["G_ema"].modules["synthesis"].modules["L5_52_32"]
    layer.state["in_cutoff"] *= 1.001
    with pytest.raises(OfficialPickleError, match=r"^snapshot G_ema layer L5_52_32 records in_cutoff=4\.004"):
        check_geometry(data["G_ema"], sg3t_snapshot.plan, "snapshot G_ema")
    data = read_official_pkl(pkls / f"{SG3T}.pkl")
    data["G_ema"].modules["synthesis"].modules["input"].state["size"] = np.asarray([36, 37])
    with pytest.raises(OfficialPickleError, match=r"^snapshot G_ema input records size=array\(\[36, 37\]\), but"):
        check_geometry(data["G_ema"], sg3t_snapshot.plan, "snapshot G_ema")


# ----------------------------------------------------------------------------
# NumPy arrays: only plain numeric arrays, under either NumPy's module names.


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_numpy_arrays_round_trip(protocol):
    value = {"size": np.asarray([36, 52]), "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "s": np.float32(2)}
    with no_code_runs():
        out = read_official_pkl(io.BytesIO(pickle.dumps(value, protocol=protocol)))
    assert out["size"].tolist() == [36, 52] and np.array_equal(out["f"], value["f"]) and out["s"] == 2.0


def test_numpy1_array_spelling_is_accepted():
    data = pickle.dumps({"size": np.asarray([36, 36])}, protocol=2)
    new, old = b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n"
    assert new in data
    assert read_official_pkl(io.BytesIO(data.replace(new, old)))["size"].tolist() == [36, 36]


def _array_pickle(state: bytes, subtype: bytes = b"cnumpy\nndarray\n", args: bytes = b"K\x00\x85C\x01b") -> bytes:
    """numpy's _reconstruct(subtype, (0,), b'b') followed by BUILD with `state` (opcodes of a tuple)."""
    return b"\x80\x02cnumpy._core.multiarray\n_reconstruct\n" + subtype + args + b"\x87R" + state + b"b."


def _dtype(code: str) -> bytes:
    return b"cnumpy\ndtype\nX" + len(code).to_bytes(4, "little") + code.encode() + b"\x89\x88\x87R"


@pytest.mark.parametrize(
    "data, message",
    [
        (_array_pickle(b"(K\x01K\x02\x85" + _dtype("O") + b"\x89]t"), r"numpy.dtype\('O'\)"),
        (_array_pickle(b"(K\x01K\x02\x85" + _dtype("i8") + b"\x89C\x04abcdt"), r"holds 4 bytes"),
        (_array_pickle(b"(K\x01K\x02\x85" + _dtype("i8") + b"\x89]t"), r"raw bytes only"),
        (_array_pickle(b"(K\x02K\x00\x85" + _dtype("i8") + b"\x89C\x00t"), r"BUILD opcode"),
        (_array_pickle(b"(K\x01K\x00\x85" + _dtype("i8") + b"\x89C\x00t", subtype=b"cnumpy\nmatrix\n"), r"matrix"),
        (_array_pickle(b"(K\x01K\x00\x85" + _dtype("i8") + b"\x89C\x00t", args=b"K\x01\x85C\x01b"), r"_reconstruct"),
        (b"\x80\x02cnumpy\nndarray\nK\x02\x85R.", r"calls numpy.ndarray directly"),
        (b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R.", r"has no data"),
        (pickle.dumps(np.asarray([36, 36]), protocol=5), r"numpy._core.numeric._frombuffer"),
    ],
    ids=["object-dtype", "short-data", "list-data", "version-2", "subtype", "shape", "ndarray-call", "no-state", "p5"],
)
def test_hostile_numpy_arrays_are_refused(data, message):
    with no_code_runs(), pytest.raises(OfficialPickleError, match=message):
        read_official_pkl(io.BytesIO(data))


# ----------------------------------------------------------------------------
# StyleGAN3-repository records written here from ganforge networks: its signature, defaults and refusals.


def _records(p):
    """A Persistent (test_import_official's official-layout record) and every one below it."""
    yield p
    for child in p.meta["state"]["_modules"].values():
        yield from _records(child)


def stylegan3_repository(**g_kwargs):
    """An edit for write_snapshot: the networks as the StyleGAN3 repository's networks_stylegan2.py writes them
    (FullyConnectedLayers record in_features; G takes its synthesis options as top-level keywords)."""

    def edit(snap, _reconstruct):
        for key in ("G", "D", "G_ema"):
            for rec in _records(snap[key]):
                if rec.meta["class_name"] == "FullyConnectedLayer":
                    rec.meta["state"]["in_features"] = 1
        kwargs = snap["G_ema"].meta["state"]["_init_kwargs"]  # G's too: write_snapshot gives both one dict.
        kwargs.update(kwargs.pop("synthesis_kwargs"), **{"fused_modconv_default": "inference_only", **g_kwargs})

    return edit


def test_stylegan3_repository_layout_round_trips(tmp_path):
    path, G, D, G_ema = write_snapshot(tmp_path, c_dim=3, edit=stylegan3_repository())
    with no_code_runs():
        snap = load_official_pkl(path)
    assert snap.repository == "stylegan3" and snap.plan.conv_clamp == 64.0 and snap.plan.num_fp16_res == 1
    assert snap.plan.w_avg_beta == 0.998  # Not in the kwargs: the StyleGAN3 repository's default.
    z, c = torch.randn(4, 16), torch.eye(3)[[0, 1, 2, 0]]
    with torch.no_grad():
        assert torch.equal(snap.G_ema(z, c, noise_mode="const"), G_ema(z, c, noise_mode="const"))


def test_absent_precision_options_take_the_stylegan3_repository_defaults(tmp_path):
    def drop(snap, reconstruct):
        stylegan3_repository()(snap, reconstruct)
        for key in ("G_ema", "D"):
            kwargs = snap[key].meta["state"]["_init_kwargs"]
            del kwargs["num_fp16_res"], kwargs["conv_clamp"]

    path, *_ = write_snapshot(tmp_path, edit=drop)
    snap = load_official_pkl(path)
    assert (snap.plan.num_fp16_res, snap.plan.conv_clamp) == (4, 256.0) and snap.d_plan is snap.plan


@pytest.mark.parametrize(
    "g_kwargs, message",
    [
        (dict(fused_modconv_default="sometimes"), r"fused_modconv_default='sometimes' is not True, False or"),
        (dict(fused_modconv_default=1), r"fused_modconv_default=1 is not True, False or 'inference_only'"),
        (dict(num_fp16_res="4"), r"num_fp16_res='4' is not a whole number"),
        (dict(conv_clamp=float("nan")), r"conv_clamp=nan is not a finite number or None"),
        (dict(use_magic=True), r"has option use_magic=True, which ganforge does not know"),
        (dict(use_noise=False), r"use_noise=False: ganforge networks only support the official default True"),
        (dict(synthesis_kwargs={}), r"has option synthesis_kwargs=\{\}, which ganforge does not know"),
    ],
)
def test_bad_stylegan3_repository_options_are_refused_in_one_sentence(tmp_path, g_kwargs, message):
    path, *_ = write_snapshot(tmp_path, edit=stylegan3_repository(**g_kwargs))
    with no_code_runs(), pytest.raises(OfficialPickleError, match=message) as info:
        load_official_pkl(path)
    assert "\n" not in str(info.value)


def test_top_level_synthesis_options_without_the_stylegan3_repository_are_refused(tmp_path):
    def flatten(snap, _):
        kwargs = snap["G_ema"].meta["state"]["_init_kwargs"]
        kwargs.update(kwargs.pop("synthesis_kwargs"))

    path, *_ = write_snapshot(tmp_path, edit=flatten)
    with pytest.raises(OfficialPickleError, match=r"option 'channel_base' is not an official StyleGAN2-ADA option"):
        load_official_pkl(path)


def test_unknown_class_in_a_stylegan3_module_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    src = f"open({str(marker)!r}, 'w').close()\nclass SynthesisLayerX: pass\n"

    def evil(snap, reconstruct):
        stylegan3_repository()(snap, reconstruct)
        layer = snap["G_ema"].meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]["b4"]
        layer.meta.update(class_name="SynthesisLayerX", module_src=src)

    path, *_ = write_snapshot(tmp_path, edit=evil)
    with no_code_runs(), pytest.raises(UnsafePickleError, match=r"class 'SynthesisLayerX' is not an official"):
        load_official_pkl(path)
    assert not marker.exists()
