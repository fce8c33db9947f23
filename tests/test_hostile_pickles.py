"""Hostile and damaged official pickles, each loaded in a child process that could crash without taking pytest
down: the child must exit normally (a negative status is a signal: a C stack overflow), refuse every case with
the importer's own sentence, within a time bound per case and a bound on its peak RSS. The child runs under
RLIMIT_AS, so a regression that tries to allocate gigabytes fails instead of swapping the machine.

The files are built here: structure attacks on the restricted unpickler (deep nesting as dict keys, in
frozensets, through memo references; keys chosen to collide in CPython's hash tables), attacks on what the
importer does with the data (shared references in training_set_kwargs, absurd or mistyped init_kwargs, tensors
that do not match), and truncations and bit flips of a real official snapshot.
"""

from __future__ import annotations

import json
import os
import pickletools
import random
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import OFFICIAL_PKLS_SG3, require_shared
from test_import_official import require_official_pkls, write_snapshot

FIX = "the file is damaged or was crafted: use the original snapshot"
CASE_SECONDS = 20.0  # Per case in the child; the hostile classes took from 2 minutes to forever before.
CHILD_SECONDS = 240  # Whole child, interpreter and torch start included.
PEAK_RSS_MIB = 1536  # import torch alone is ~350 MiB; the 6 GB z_dim file must not get near this.
ADDRESS_SPACE = 4 << 30  # RLIMIT_AS of the child.
P61 = 2**61 - 1  # CPython hashes ints modulo this prime.

# The child: loads (and converts) each case, reports outcome, message and seconds, then its peak RSS.
CHILD = r"""
import io, json, resource, sys, time, traceback
resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
from ganforge.modelio import OfficialPickleError, load_official_pkl
from ganforge.modelio.convert import convert_official
from ganforge.resources import peak_rss_gb

def source(case):
    if "flip" not in case and "truncate" not in case:
        return case["path"]
    data = bytearray(open(case["path"], "rb").read())
    for bit in case.get("flip", ()):
        data[bit // 8] ^= 1 << (bit % 8)
    return io.BytesIO(bytes(data[: case.get("truncate")]))

results = []
for case in json.load(open(sys.argv[1])):
    for action in case["actions"]:
        start = time.perf_counter()
        try:
            if action == "load":
                load_official_pkl(source(case))
            else:
                convert_official(case["path"], case["path"] + ".safetensors")
            outcome, message = "accepted", ""
        except OfficialPickleError as e:
            outcome, message = "refused", str(e)
        except BaseException:
            outcome, message = "escaped", traceback.format_exc()
        results.append(dict(name=case["name"], action=action, outcome=outcome, message=message,
                            seconds=time.perf_counter() - start))
print(json.dumps(dict(results=results, peak_rss_mib=peak_rss_gb() * 1024)))
""".replace("ADDRESS_SPACE", str(ADDRESS_SPACE))


def child_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def set_address_limit() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_child(cases: list[dict], tmp_path: Path) -> list[dict]:
    """Run the cases in one child; assert it exited normally within its bounds; return its results."""
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps(cases))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(spec)], capture_output=True, text=True, timeout=CHILD_SECONDS, env=child_env()
    )
    wall = time.perf_counter() - start
    assert proc.returncode == 0, (
        f"the child exited with {proc.returncode} (negative: killed by that signal) after "
        f"{wall:.1f} s:\n{proc.stderr[-3000:]}"
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["peak_rss_mib"] < PEAK_RSS_MIB, f"peak RSS {report['peak_rss_mib']:.0f} MiB"
    for r in report["results"]:
        assert r["outcome"] != "escaped", f"{r['name']} ({r['action']}) escaped:\n{r['message']}"
        assert r["seconds"] < CASE_SECONDS, f"{r['name']} ({r['action']}) took {r['seconds']:.1f} s"
    print(f"child: {wall:.1f} s wall, peak RSS {report['peak_rss_mib']:.0f} MiB")
    for r in report["results"]:
        print(f"  {r['name']:<28} {r['action']:<8} {r['seconds']:6.2f} s  {r['outcome']}: {r['message'][:150]}")
    return report["results"]


def case(name: str, path: Path, actions: tuple[str, ...] = ("load", "convert")) -> dict:
    return dict(name=name, path=str(path), actions=list(actions))


def assert_refused(results: list[dict], expected: dict[str, str]) -> None:
    """Every (name, action) was refused with a message that contains the expected text."""
    for r in results:
        assert r["outcome"] == "refused", f"{r['name']} ({r['action']}) was {r['outcome']}"
        assert expected[r["name"]] in r["message"], f"{r['name']} ({r['action']}): {r['message']}"
        assert "\n" not in r["message"] and len(r["message"]) < 600, r["message"]


# ----------------------------------------------------------------------------
# Structure attacks on the unpickler, as raw opcodes.


def deep_tuple_key(levels: int = 1_000_000) -> bytes:
    """{((…(None,)…),): None}, ~1 MB: hashing the key recursed once per level in C."""
    return b"\x80\x02}N" + b"\x85" * levels + b"Ns."


def deep_frozenset(levels: int = 300_000) -> bytes:
    """frozenset({frozenset({…})}) as a dict key; every level is hashed into the next."""
    return b"\x80\x04}" + b"(" * levels + b"\x91" * levels + b"Ns."


def deep_via_memo(levels: int = 200_000) -> bytes:
    """Each tuple holds the previous one, fetched back from the memo (GET), 5 bytes a level; then a dict key."""
    return b"\x80\x02N\x85q\x000" + b"h\x00\x85q\x000" * levels + b"}h\x00Ns."


def hidden_depth(levels: int = 50_000) -> bytes:
    """Empty lists in the memo, then L0.append(L1), L1.append(L2)…: each append sees an empty child, so counting
    depth at append time alone would miss the chain."""
    put = [b"]r" + struct.pack("<I", i) + b"0" for i in range(levels)]
    get = [b"j" + struct.pack("<I", i) for i in range(levels)]
    links = [get[i] + get[i + 1] + b"a0" for i in range(levels - 1)]
    return b"\x80\x02" + b"".join(put) + b"".join(links) + get[0] + b"."


def batched(opcode: bytes, items: list[bytes], per_batch: int = 1000) -> bytes:
    """MARK, items, opcode per 1000 items: how the pickler writes a big dict (SETITEMS) or list (APPENDS)."""
    return b"".join(b"(" + b"".join(items[i : i + per_batch]) + opcode for i in range(0, len(items), per_batch))


def _long(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def colliding_int_keys(n: int = 100_000) -> bytes:
    """{k·(2**61 - 1) + 7: None}: all 100k keys hash to 7; building the dict took two minutes."""
    return b"\x80\x02}" + batched(b"u", [_long(k * P61 + 7) + b"N" for k in range(1, n + 1)]) + b"."


def many_small_int_keys(n: int = 5000) -> bytes:
    """Small ints hash as themselves: a file can pick ones that crowd one region of a dict's table."""
    return b"\x80\x02}" + batched(b"u", [b"J" + struct.pack("<i", k << 14) + b"N" for k in range(n)]) + b"."


def colliding_float_keys(n: int = 100_000) -> bytes:
    """m·2**(61k) hashes to m for every k: 32 floats share each hash."""
    keys = [m * 2.0 ** (61 * k) for m in range(1, n // 32 + 2) for k in range(-16, 16)][:n]
    assert hash(keys[0]) == hash(keys[1])
    return b"\x80\x02}" + batched(b"u", [b"G" + struct.pack(">d", k) + b"N" for k in keys]) + b"."


def colliding_tuple_keys(n: int = 100_000) -> bytes:
    """(a, b) pairs solved so that every tuple gets the same hash (CPython's xxHash-style tuple hash over the
    ints' own hashes): a dict of them compares every new key with every old one."""
    mask, p1, p2, p5 = 2**64 - 1, 11400714785074694791, 14029467366897019727, 2870177450012600261
    inv_p2, target, keys, a = pow(p2, -1, 2**64), 0x5EED, [], 0
    while len(keys) < n:
        a += 1
        acc = (p5 + a * p2) & mask
        acc = (((acc << 31) | (acc >> 33)) & mask) * p1 & mask
        lane = (target - acc) * inv_p2 & mask  # The hash that b must have.
        b = lane if lane < P61 else lane - 2**64 if lane > 2**64 - P61 else None
        if b is not None and b != -1:
            keys.append((a, b))
    assert len({hash(k) for k in keys[:50]}) == 1
    return b"\x80\x02}" + batched(b"u", [_long(a) + _long(b) + b"\x86N" for a, b in keys]) + b"."


def colliding_set_elements(n: int = 100_000) -> bytes:
    """builtins.set([...]) (the protocol-2 spelling of a set) of ints that all hash to 7."""
    items = batched(b"e", [_long(k * P61 + 7) for k in range(1, n + 1)])
    return b"\x80\x02c__builtin__\nset\n(]" + items + b"tR."


def huge_stack(n: int = 1_000_000) -> bytes:
    """A million values pushed before one APPENDS: the C unpickler keeps them all on its stack."""
    return b"\x80\x02](" + b"N" * n + b"e."


STRUCTURE = {  # name -> (bytes, text the refusal must contain)
    "deep tuple dict key": (deep_tuple_key, "nests values more than 100 levels deep"),
    "deep frozenset": (deep_frozenset, "uses a frozenset as a dict key or set element"),
    "deep tuple via memo GET": (deep_via_memo, "nests values more than 100 levels deep"),
    "hidden depth via memo": (hidden_depth, "changes a list after placing it inside another value"),
    "colliding int keys": (colliding_int_keys, "uses a big int as a dict key or set element"),
    "crowding small int keys": (many_small_int_keys, "more than 1024 integer dict keys or set elements"),
    "colliding float keys": (colliding_float_keys, "uses a float as a dict key or set element"),
    "colliding tuple keys": (colliding_tuple_keys, "more than 1024 integer dict keys or set elements"),
    "colliding set elements": (colliding_set_elements, "uses a big int as a dict key or set element"),
    "a million values on the stack": (huge_stack, "puts more than 100,000 values on the stack at once"),
}


def test_structure_attacks_are_refused_in_bounded_time_and_memory(tmp_path):
    cases = []
    for name, (build, _) in STRUCTURE.items():
        path = tmp_path / (name.replace(" ", "-") + ".pkl")
        path.write_bytes(build())
        cases.append(case(name, path))
    assert (tmp_path / "deep-tuple-dict-key.pkl").stat().st_size > 1_000_000
    results = run_child(cases, tmp_path)
    assert_refused(results, {name: text for name, (_, text) in STRUCTURE.items()})
    assert all(FIX in r["message"] for r in results)


# ----------------------------------------------------------------------------
# Attacks on what the importer does with the data: official-layout snapshots of tiny networks, edited.


def _state(snap: dict, key: str, *path: str) -> dict:
    """The pickled __dict__ of a (sub)module of snapshot entry `key`."""
    state = snap[key].meta["state"]
    for name in path:
        state = state["_modules"][name].meta["state"]
    return state


def _shared_references(snap, _):
    value = ["leaf"]
    for _ in range(40):  # A list of two references to a list of two references … 2^40 leaves, a few hundred bytes.
        value = [value, value]
    snap["training_set_kwargs"] = dict(path="data.zip", nested=value)


def _init_kwarg(*path: str, value):
    def edit(snap, _):
        for key in ("G", "G_ema"):
            kwargs = _state(snap, key)["_init_kwargs"]
            for name in path[:-1]:
                kwargs = kwargs[name]
            kwargs[path[-1]] = value

    return edit


def _huge_channels(snap, reconstruct):
    """16384 feature maps in every block (within the Plan bounds): 10 GB per conv layer if built."""
    _init_kwarg("synthesis_kwargs", "channel_base", value=2**24)(snap, reconstruct)
    _init_kwarg("synthesis_kwargs", "channel_max", value=16384)(snap, reconstruct)


def _drop_w_avg(snap, _):
    del _state(snap, "G", "mapping")["_buffers"]["w_avg"]


def _wrong_shape(snap, _):
    params = _state(snap, "G_ema", "mapping", "fc0")["_parameters"]
    params["weight"] = torch.zeros(params["weight"].shape[0], params["weight"].shape[1] + 1)


def _same_tensors_twice(snap, _):
    snap["G_ema"] = snap["G"]  # One set of bytes, two networks: the copies would double what the file holds.


def _nan_augment_p(snap, _):
    _state(snap, "augment_pipe")["_buffers"]["p"] = torch.tensor(float("nan"))


def _set_state(key: str, field: str, value):
    def edit(snap, _):
        _state(snap, key)[field] = value

    return edit


def _long_string(snap, _):
    snap["training_set_kwargs"] = dict(path="x" * 100_000)


def _numpy_init_kwarg(snap, _):
    _state(snap, "D")["_init_kwargs"]["c_dim"] = np.float64(0.0)


SNAPSHOTS = {  # name -> (edit, text the refusal must contain)
    "2^40 shared references": (_shared_references, "training_set_kwargs holds more than 10,000 values"),
    "metadata string 100k chars": (_long_string, "training_set_kwargs['path'] is a string of 100,000 characters"),
    "z_dim 24000": (_init_kwarg("z_dim", value=24000), "z_dim must be a number in 1..8192, got 24000"),
    "z_dim 8192, small tensors": (
        _init_kwarg("z_dim", value=8192),
        "snapshot G: tensor mapping.fc0.weight has shape [24, 16] but its plan needs [24, 8192]",
    ),
    "16384 channels, small tensors": (
        _huge_channels,
        "snapshot G: tensor synthesis.b4.const has shape [32, 4, 4] but its plan needs [16384, 4, 4]",
    ),
    "mapping num_layers 10**7": (
        _init_kwarg("mapping_kwargs", "num_layers", value=10**7),
        "mapping_layers must be a number in 1..64, got 10000000",
    ),
    "mapping num_layers 1e7": (
        _init_kwarg("mapping_kwargs", "num_layers", value=1e7),
        "G mapping_kwargs num_layers=10000000.0 is not a whole number",
    ),
    "z_dim '512'": (_init_kwarg("z_dim", value="512"), "Generator's init_kwargs z_dim='512' is not a whole number"),
    "z_dim True": (_init_kwarg("z_dim", value=True), "Generator's init_kwargs z_dim=True is not a whole number"),
    "z_dim 512.0": (_init_kwarg("z_dim", value=512.0), "Generator's init_kwargs z_dim=512.0 is not a whole number"),
    "z_dim None": (_init_kwarg("z_dim", value=None), "Generator's init_kwargs z_dim=None is not a whole number"),
    "z_dim [512]": (_init_kwarg("z_dim", value=[512]), "Generator's init_kwargs z_dim=[512] is not a whole number"),
    "conv_clamp 'big'": (
        _init_kwarg("synthesis_kwargs", "conv_clamp", value="big"),
        "G synthesis_kwargs conv_clamp='big' is not a finite number or None",
    ),
    "numpy float c_dim": (_numpy_init_kwarg, "Discriminator's init_kwargs c_dim=0.0 is not a whole number"),
    "mapping_kwargs a list": (
        _init_kwarg("mapping_kwargs", value=[8]),
        "G mapping_kwargs is [8], not a dict of named options",
    ),
    "init_args a string": (_set_state("G", "_init_args", "abc"), "Generator _init_args is 'abc', not a tuple"),
    "parameters a list": (_set_state("D", "_parameters", [1, 2]), "has _parameters of [1, 2], not a dict by name"),
    "missing tensor": (_drop_w_avg, "snapshot G lacks the tensor(s) mapping.w_avg that its plan needs"),
    "wrong-shape tensor": (
        _wrong_shape,
        "snapshot G_ema: tensor mapping.fc0.weight has shape [24, 17] but its plan needs [24, 16]",
    ),
    "one tensor, two networks": (_same_tensors_twice, "snapshot G_ema: tensor "),
    "augment p NaN": (_nan_augment_p, "augment_pipe p=nan is not a probability"),
}


def test_hostile_snapshot_contents_are_refused_before_networks_are_built(tmp_path):
    cases = []
    for i, (name, (edit, _)) in enumerate(SNAPSHOTS.items()):
        folder = tmp_path / f"s{i}"
        folder.mkdir()
        path, *_ = write_snapshot(folder, edit=edit)
        cases.append(case(name, path))
    cases.append(case("valid", write_snapshot(tmp_path)[0]))
    results = run_child(cases, tmp_path)
    valid = [r for r in results if r["name"] == "valid"]
    assert [r["outcome"] for r in valid] == ["accepted", "accepted"]
    assert_refused([r for r in results if r["name"] != "valid"], {k: text for k, (_, text) in SNAPSHOTS.items()})
    assert (
        "shares its data with other tensors"
        in next(r for r in results if r["name"] == "one tensor, two networks")["message"]
    )


# ----------------------------------------------------------------------------
# Damage: truncations and bit flips of a real official snapshot.


def _opcode_positions(data: bytes) -> list[int]:
    """Where the opcodes of the outer pickle and of each tensor storage payload start."""
    positions = []
    for _, arg, pos in pickletools.genops(data):
        positions.append(pos)
        if isinstance(arg, bytes) and arg[:2] == b"\x80\x02":
            base = data.index(arg, pos)
            positions.extend(base + p for _, _, p in pickletools.genops(arg))  # The first of its five pickles.
    return positions


def test_truncated_and_bit_flipped_official_snapshots(tmp_path):
    src = require_official_pkls() / "sg2ada-32px-uncond-skip-resnet.pkl"
    data, rng = src.read_bytes(), random.Random(0)
    hot = _opcode_positions(data)
    offsets = sorted({*range(1, 9), *(rng.randrange(len(data)) for _ in range(24)), *rng.sample(hot, 16)})
    cases = [dict(name=f"truncated at {n}", path=str(src), truncate=n, actions=["load"]) for n in offsets]
    for i in range(36):  # Two thirds of the flips land on opcodes and their arguments, the rest anywhere.
        where = [
            rng.choice(hot) + rng.randrange(4) if i % 3 else rng.randrange(len(data)) for _ in range(rng.randint(1, 4))
        ]
        bits = [8 * min(p, len(data) - 1) + rng.randrange(8) for p in where]
        cases.append(dict(name=f"bits flipped {bits}", path=str(src), flip=bits, actions=["load"]))
    results = run_child(cases, tmp_path)
    truncated = [r for r in results if r["name"].startswith("truncated")]
    assert len(truncated) >= 40 and all(r["outcome"] == "refused" and "damaged" in r["message"] for r in truncated)
    flipped = [r for r in results if r["name"].startswith("bits")]
    assert {r["outcome"] for r in flipped} <= {"accepted", "refused"}
    assert sum(r["outcome"] == "refused" for r in flipped) >= 10  # The opcode flips must mostly be caught.
    assert all("\n" not in r["message"] for r in flipped)


@pytest.mark.parametrize("name", ["sg3t-32px-uncond-fp32", "sg3repo-stylegan2-32px-cond3-noaug"])
def test_truncated_and_bit_flipped_stylegan3_repository_snapshots(tmp_path, name):
    """The StyleGAN3 repository's files: other defaults, and (StyleGAN3) NumPy arrays in the module state."""
    folder = require_shared(OFFICIAL_PKLS_SG3, "manifest.json", "the damage tests start from the official pickles")
    src = folder / f"{name}.pkl"
    data, rng = src.read_bytes(), random.Random(1)
    hot = _opcode_positions(data)
    offsets = sorted({*(rng.randrange(len(data)) for _ in range(6)), *rng.sample(hot, 6)})
    cases = [dict(name=f"truncated at {n}", path=str(src), truncate=n, actions=["load"]) for n in offsets]
    for _ in range(12):
        bits = [8 * min(rng.choice(hot) + rng.randrange(4), len(data) - 1) + rng.randrange(8) for _ in range(2)]
        cases.append(dict(name=f"bits flipped {bits}", path=str(src), flip=bits, actions=["load"]))
    results = run_child(cases, tmp_path)
    truncated = [r for r in results if r["name"].startswith("truncated")]
    assert all(r["outcome"] == "refused" and "damaged" in r["message"] for r in truncated)
    assert all("\n" not in r["message"] for r in results)


# ----------------------------------------------------------------------------
# The command line: one line on stderr, exit status 1, no traceback.


@pytest.mark.parametrize("name", ["deep tuple dict key", "z_dim '512'"])
def test_convert_command_prints_one_error_line(tmp_path, name):
    if name in STRUCTURE:
        src = tmp_path / "hostile.pkl"
        src.write_bytes(STRUCTURE[name][0]())
    else:
        src, *_ = write_snapshot(tmp_path, edit=SNAPSHOTS[name][0])
    expected = (STRUCTURE.get(name) or SNAPSHOTS[name])[1]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "ganforge", "convert", str(src), str(tmp_path / "out.safetensors")],
        capture_output=True,
        text=True,
        timeout=CHILD_SECONDS,
        env=child_env(),
        preexec_fn=set_address_limit,
    )
    assert proc.returncode == 1, f"exit status {proc.returncode}:\n{proc.stderr[-3000:]}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "out.safetensors").exists()
    assert time.perf_counter() - start < CHILD_SECONDS
