"""Fuzzing the official-pickle reader: whatever the bytes, read_official_pkl returns plain data or raises
OfficialPickleError (or a subclass) — never another exception type, and no code runs.

Generators: random bytes, a soup of pickle opcodes naming allowed and forbidden globals (with runs of nesting
opcodes), calls of the tensor stand-in with arbitrary sizes/strides/offsets, mutations of a valid official-layout
snapshot (built with the helpers of test_import_official, mutated mostly where the opcodes are), and the structure
classes that attack CPython itself: nesting deeper than the bound (dict keys, frozensets, memo references), dict
keys and set elements chosen to collide, and shared references that multiply when metadata is walked. Whatever is
accepted must be shallow and use only hash-safe keys. The runs are bounded (max_examples, a generous per-example
deadline) and derandomized, so CI is deterministic and the file takes a few seconds;
GANFORGE_FUZZ_EXAMPLES=5000 runs a longer, random search locally.

Inputs that once escaped as another exception type (or made CPython allocate gigabytes) are pinned in
KNOWN_ESCAPES as regression cases; nothing is skipped, so a new kind of escape fails the run.
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
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_import_official import storage_payload, write_snapshot

from ganforge.modelio import OfficialPickleError, OfficialRecord, read_official_pkl
from ganforge.modelio.untrusted import MAX_DEPTH, MAX_META_NODES, MAX_NUMERIC_KEYS, json_value

EXAMPLES = int(os.environ.get("GANFORGE_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 150,
    deadline=2000,
    derandomize=not EXAMPLES,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ_STRUCTURE = settings(FUZZ, max_examples=EXAMPLES or 60)  # Deep pickles cost more per example.
P61 = 2**61 - 1  # CPython hashes ints modulo this prime (and ints below it as themselves).


# ----------------------------------------------------------------------------
# No code runs: everything that could run code raises a BaseException that no `except Exception` swallows.


class CodeRan(BaseException):
    pass


def _forbidden(name: str):
    def call(*args, **kwargs):
        raise CodeRan(f"{name} was called while reading a pickle")

    return call


@contextlib.contextmanager
def code_cannot_run():
    real_import = builtins.__import__

    def guarded_import(name, *args, **kwargs):
        if name not in sys.modules:
            raise CodeRan(f"import of {name!r} while reading a pickle")
        return real_import(name, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        for name in ("exec", "eval", "compile"):
            mp.setattr(builtins, name, _forbidden(f"builtins.{name}"))
        for name in ("system", "popen", "execv", "execve", "spawnv", "fork"):
            if hasattr(os, name):
                mp.setattr(os, name, _forbidden(f"os.{name}"))
        mp.setattr(subprocess, "Popen", _forbidden("subprocess.Popen"))
        mp.setattr(builtins, "__import__", guarded_import)
        yield


# ----------------------------------------------------------------------------
# The property.

PLAIN = (dict, list, tuple, set, frozenset, str, bytes, int, float, complex, bool, type(None), torch.Tensor, np.ndarray)


def children(x: object) -> list:
    if isinstance(x, OfficialRecord):
        return [x.state]
    if isinstance(x, dict):
        return [*x.keys(), *x.values()]
    return list(x) if isinstance(x, (list, tuple, set, frozenset)) else []


def depth(x: object) -> int:
    """Container nesting levels of a value (a DAG: shared values are measured once)."""
    known: dict[int, int] = {}

    def visit(v: object, level: int) -> int:
        assert level <= MAX_DEPTH + 1, "the reader returned data nested deeper than its bound"
        if id(v) not in known:
            known[id(v)] = 0  # A cycle would stop here (reported as shallow; cycles are refused upstream).
            known[id(v)] = 1 + max((visit(c, level + 1) for c in children(v)), default=-1)
        return known[id(v)]

    return visit(x, 0)


def hostile_key(k: object, level: int = 0) -> bool:
    """A dict key / set element that can be made to collide or nest (the test's own statement of the rule)."""
    if isinstance(k, (float, complex, frozenset)) or (type(k) is int and not -P61 < k < P61):
        return True
    return type(k) is tuple and (level >= 4 or any(hostile_key(v, level + 1) for v in k))


def assert_plain(obj: object) -> None:
    """Only plain data (and OfficialRecords holding plain data) came back, shallow, with hash-safe keys."""
    seen, todo = set(), [obj]
    while todo:
        x = todo.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        assert isinstance(x, OfficialRecord) or type(x) in PLAIN, f"the reader returned a {type(x).__name__}"
        keys = x if isinstance(x, (set, frozenset)) else x.keys() if isinstance(x, dict) else ()
        assert not any(hostile_key(k) for k in keys), "the reader hashed a key that can be made to collide"
        todo.extend(children(x))
    assert depth(obj) <= MAX_DEPTH


def check(data: bytes) -> str:
    """'refused' or 'accepted'; anything else raises."""
    with code_cannot_run():
        try:
            result = read_official_pkl(io.BytesIO(data))
        except OfficialPickleError:
            return "refused"
    assert_plain(result)
    return "accepted"


# ----------------------------------------------------------------------------
# Building pickles.


def obj(value: object) -> bytes:
    """Opcodes that push `value` (a plain Python value), without PROTO and STOP."""
    return pickle.dumps(value, protocol=2)[2:-1]


def call(module: str, name: str, *pushes: bytes) -> bytes:
    """Opcodes that push module.name(*args), each argument given as opcodes."""
    return b"c" + f"{module}\n{name}\n".encode() + b"(" + b"".join(pushes) + b"tR"


def unicode(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(raw)) + raw


@functools.cache
def payload() -> bytes:
    return storage_payload(torch.arange(6, dtype=torch.float32))


@functools.cache
def snapshot() -> bytes:
    """A valid official-layout snapshot (G, D, G_ema, augment_pipe) of tiny ganforge networks."""
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        path, *_ = write_snapshot(Path(tmp))
        return path.read_bytes()


@functools.cache
def hot_positions() -> list[int]:
    """Where the snapshot's opcodes are, outer and nested (the tensor bytes between them are less interesting)."""
    data, hot = snapshot(), []
    for _op, arg, pos in pickletools.genops(data):
        hot.append(pos)
        if isinstance(arg, bytes) and arg[:2] == b"\x80\x02":
            base = data.index(arg, pos)
            stream = io.BytesIO(arg)
            for _ in range(5):
                hot.extend(base + p for _, _, p in pickletools.genops(stream))
    return hot


ALLOWED = [
    ("builtins", "set"),
    ("_codecs", "encode"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch.storage", "_load_from_bytes"),
    ("torch_utils.persistence", "_reconstruct_persistent_obj"),
    ("collections", "OrderedDict"),
    ("dnnlib.util", "EasyDict"),
]
REFUSED = [
    ("os", "system"),
    ("posix", "system"),
    ("builtins", "exec"),
    ("builtins", "eval"),
    ("builtins", "getattr"),
    ("builtins", "__import__"),
    ("subprocess", "Popen"),
    ("torch", "load"),
    ("copyreg", "_reconstructor"),
    ("numpy", "load"),
    ("torch", "Tensor"),
]
WORDS = [
    "class",
    "type",
    "version",
    "module_src",
    "class_name",
    "state",
    "_parameters",
    "_buffers",
    "_modules",
    "G",
    "D",
    "G_ema",
    "augment_pipe",
    "latin1",
    "f4",
    "<f4",
    "storage",
    "cpu",
    "FloatStorage",
    "0",
]

SIMPLE_OPS = [
    b"N",
    b")",
    b"]",
    b"}",
    b"(",
    b"t",
    b"l",
    b"d",
    b"u",
    b"s",
    b"a",
    b"e",
    b"R",
    b"b",
    b"\x81",
    b"\x85",
    b"\x86",
    b"\x87",
    b"0",
    b"1",
    b"2",
    b"\x88",
    b"\x89",
    b"\x8f",
    b"\x90",
    b"\x91",
    b"\x93",
    b"\x94",
    b"\x92",
    b"o",
    b"Q",
    b".",
]


def nesting_run(kind: str, n: int) -> bytes:
    """n levels of nesting around what the stack holds (or around nothing): up to twice the bound."""
    if kind == "tuples":
        return b"\x85" * n
    if kind == "frozensets":
        return b"(" * n + b"\x91" * n
    if kind == "lists":
        return b"(" * n + b"l" * n
    return b"h\x00\x85q\x00" * n  # Each tuple wraps the one stored in memo slot 0, then replaces it there.


tokens = st.one_of(
    st.sampled_from(SIMPLE_OPS),
    st.integers(0, 255).map(lambda i: b"K" + bytes([i])),
    st.integers(-(2**31), 2**31 - 1).map(lambda i: b"J" + struct.pack("<i", i)),
    st.integers(0, 63).map(lambda i: b"q" + bytes([i])),
    st.integers(0, 63).map(lambda i: b"h" + bytes([i])),
    st.floats(allow_nan=True).map(lambda f: b"G" + struct.pack(">d", f)),
    st.one_of(st.sampled_from(WORDS), st.text(max_size=8)).map(unicode),
    st.binary(max_size=16).map(lambda b: b"C" + bytes([len(b)]) + b),
    st.sampled_from(ALLOWED + REFUSED).map(lambda g: b"c" + f"{g[0]}\n{g[1]}\n".encode()),
    st.sampled_from(ALLOWED + REFUSED).map(lambda g: unicode(g[0]) + unicode(g[1]) + b"\x93"),
    st.just(call("torch.storage", "_load_from_bytes", obj(payload()))),
    st.tuples(st.sampled_from(["tuples", "frozensets", "lists", "memo tuples"]), st.integers(1, 2 * MAX_DEPTH)).map(
        lambda run: nesting_run(*run)
    ),
)
huge = st.one_of(
    st.integers(0, 8), st.sampled_from([0, 2**31, 2**62, 2**63, 2**64]), st.integers(0, 2**70), st.just(-1)
)


# ----------------------------------------------------------------------------
# The fuzzers.


@FUZZ
@given(prefix=st.sampled_from([b"", b"\x80\x02", b"\x80\x04", b"\x80\x05"]), body=st.binary(max_size=400))
def test_random_bytes_are_refused_cleanly(prefix, body):
    check(prefix + body)


@FUZZ
@given(ops=st.lists(tokens, max_size=40))
def test_opcode_soup_is_refused_cleanly(ops):
    check(b"\x80\x04" + b"".join(ops) + b".")


shapes = st.integers(0, 4).flatmap(
    lambda n: st.tuples(
        st.lists(huge, min_size=n, max_size=n).map(tuple), st.lists(huge, min_size=n, max_size=n).map(tuple)
    )
)


@FUZZ
@given(
    offset=st.one_of(st.integers(0, 8), huge),
    shape=st.one_of(
        shapes, shapes, st.tuples(st.lists(huge, max_size=3).map(tuple), st.lists(huge, max_size=3).map(tuple))
    ),
    requires_grad=st.sampled_from([False, False, True, 0, None]),
    hooks=st.sampled_from([None, {}, {}, (), "x", {"a": 1}]),
    wrap=st.booleans(),
)
def test_tensor_arguments_are_checked(offset, shape, requires_grad, hooks, wrap):
    size, stride = shape
    storage = call("torch.storage", "_load_from_bytes", obj(payload()))
    tensor = call(
        "torch._utils",
        "_rebuild_tensor_v2",
        storage,
        obj(offset),
        obj(size),
        obj(stride),
        obj(requires_grad),
        obj(hooks),
    )
    if wrap:
        tensor = call("torch._utils", "_rebuild_parameter", tensor, obj(True), obj({}))
    check(b"\x80\x02}" + unicode("t") + tensor + b"s.")


@FUZZ
@given(
    subtype=st.sampled_from([("numpy", "ndarray")] * 3 + [("numpy", "matrix"), ("numpy", "dtype")]),
    args=st.sampled_from([((0,), b"b")] * 3 + [((1,), b"b"), ((0,), b"c"), ((), b"")]),
    version=st.sampled_from([1, 1, 1, 0, 2, None, "1"]),
    shape=st.one_of(st.lists(st.integers(0, 4), max_size=3).map(tuple), st.lists(huge, max_size=3).map(tuple)),
    code=st.sampled_from(["i8", "i8", "f4", "f8", "b1", "O", "U4", "V8"]),
    fortran=st.sampled_from([False, False, True, 0, None]),
    data=st.one_of(st.binary(max_size=64), st.sampled_from([b"\x00" * 16, b"\x00" * 8, [], None])),
    builds=st.integers(0, 2),
)
def test_numpy_array_arguments_are_checked(subtype, args, version, shape, code, fortran, data, builds):
    dtype = call("numpy", "dtype", obj(code), obj(False), obj(True))
    state = b"(" + obj(version) + obj(shape) + dtype + obj(fortran) + obj(data) + b"t"
    ndarray = b"c" + f"{subtype[0]}\n{subtype[1]}\n".encode()
    array = call("numpy._core.multiarray", "_reconstruct", ndarray, *map(obj, args))
    check(b"\x80\x02}" + unicode("a") + array + (state + b"b") * builds + b"s.")


mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate", "int32", "splice"]),
    st.booleans(),  # True: at an opcode (hot position); False: anywhere.
    st.integers(0, 2**32),
    st.binary(min_size=1, max_size=8),
    st.sampled_from([0, 1, 2, 255, 2**31 - 1, 2**32 - 1, 2**16]),
)


def mutate(data: bytearray, kind: str, pos: int, blob: bytes, number: int) -> bytearray:
    if kind == "flip":
        data[pos : pos + len(blob)] = blob
    elif kind == "insert":
        data[pos:pos] = blob
    elif kind == "delete":
        del data[pos : pos + len(blob)]
    elif kind == "truncate":
        del data[pos:]
    elif kind == "int32":
        data[pos + 1 : pos + 5] = struct.pack("<I", number)  # The argument of the opcode at pos.
    else:  # Copy a stretch of opcodes elsewhere.
        data[pos:pos] = data[number % len(data) : number % len(data) + 8 * len(blob)]
    return data


@FUZZ
@given(mutations=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_snapshots_are_refused_cleanly(mutations):
    data, hot = bytearray(snapshot()), hot_positions()
    for kind, at_opcode, index, blob, number in mutations:
        pos = hot[index % len(hot)] if at_opcode else index % len(snapshot())
        data = mutate(data, kind, min(pos, max(len(data) - 1, 0)), blob, number)
    check(bytes(data))


# ----------------------------------------------------------------------------
# Structure classes: nesting past the bound, keys chosen to collide, shared references.

CONTAINERS = ("list", "tuple", "dict-value", "dict-key", "set", "frozenset")


def chain(kinds: list[str], leaf: object) -> object:
    """`leaf` wrapped once per kind, innermost first: a value exactly len(kinds) containers deep."""
    value = leaf
    for kind in kinds:
        value = {
            "list": lambda v: [v],
            "tuple": lambda v: (v,),
            "dict-value": lambda v: {"k": v},
            "dict-key": lambda v: {v: 0},
            "set": lambda v: {v},
            "frozenset": lambda v: frozenset([v]),
        }[kind](value)
    return value


def hashable_chain(kinds: list[str]) -> list[str]:
    """Python cannot hash a list, dict or set: a dict-key, set or frozenset level over one becomes a list level."""
    out, hashable = [], True
    for kind in kinds:
        if kind in ("dict-key", "set", "frozenset") and not hashable:
            kind = "list"
        out.append(kind)
        hashable = hashable and kind in ("tuple", "frozenset")
    return out


def colliding(family: str, n: int) -> list:
    """n dict keys that share one hash (or, for small ints, are the ones a file could pick to crowd a table)."""
    if family == "big ints":
        return [k * P61 + 7 for k in range(1, n + 1)]
    if family == "floats":
        return [m * 2.0 ** (61 * e) for m in range(1, n // 32 + 2) for e in range(-16, 16)][:n]
    if family == "int pairs":
        return [(k, -k) for k in range(n)]
    return [k << 14 for k in range(n)]  # Small ints.


leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=4), st.binary(max_size=4)
)
keys = st.one_of(
    st.text(max_size=4),
    st.integers(-1000, 1000),
    st.integers(P61 - 2, 2**70),
    st.floats(),
    st.none(),
    st.tuples(st.integers(-3, 3), st.text(max_size=2)),
    st.frozensets(st.integers(0, 3), max_size=2),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(keys, inner, max_size=3),
        st.builds(lambda v: [v, v], inner),
    ),
    max_leaves=12,
)


def holds_hostile_key(value: object) -> bool:
    seen, todo = set(), [value]
    while todo:
        x = todo.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        keys_of = x if isinstance(x, (set, frozenset)) else x.keys() if isinstance(x, dict) else ()
        if any(hostile_key(k) for k in keys_of):
            return True
        todo.extend(children(x))
    return False


@FUZZ_STRUCTURE
@given(
    kinds=st.lists(st.sampled_from(CONTAINERS), min_size=MAX_DEPTH - 8, max_size=MAX_DEPTH + 40),
    leaf=leaves,
    protocol=st.sampled_from([2, 4, 5]),
)
def test_nesting_is_bounded(kinds, leaf, protocol):
    kinds = hashable_chain(kinds)
    value = {"v": chain(kinds, leaf)}  # A snapshot is a dict.
    outcome = check(pickle.dumps(value, protocol=protocol))
    if len(kinds) > MAX_DEPTH:
        assert outcome == "refused", f"{len(kinds)} levels were accepted"


MEMO_WRAPS = {  # One level around the previous one, fetched back from memo slot 0; the result is stored there.
    "tuple": b"h\x00\x85q\x000",
    "list": b"]h\x00aq\x000",
    "dict value": b"}Nh\x00sq\x000",
    "dict key": b"}h\x00Nsq\x000",
}


@FUZZ_STRUCTURE
@given(
    levels=st.integers(1, 3 * MAX_DEPTH),
    wraps=st.lists(st.sampled_from(list(MEMO_WRAPS)), min_size=1, max_size=3),
    as_key=st.booleans(),
)
def test_nesting_through_the_memo_is_bounded(levels, wraps, as_key):
    """Each level fetches the previous one back from the memo (GET) and wraps it: 5-8 bytes a level."""
    body = b"".join(MEMO_WRAPS[wraps[i % len(wraps)]] for i in range(levels))
    tail = b"}h\x00Ns." if as_key else b"}Nh\x00s."  # The deepest value as a key or a value of the snapshot dict.
    outcome = check(b"\x80\x02N\x85q\x000" + body + tail)
    total = levels + 2  # The first tuple, the levels, the snapshot dict.
    if total > MAX_DEPTH:
        assert outcome == "refused", f"{total} levels were accepted"
    elif not as_key and "dict key" not in wraps:  # (Keys must also be hashable and shallow.)
        assert outcome == "accepted"


@FUZZ_STRUCTURE
@given(
    family=st.sampled_from(["big ints", "floats", "int pairs", "small ints"]),
    n=st.one_of(st.integers(1, 40), st.integers(MAX_NUMERIC_KEYS - 5, MAX_NUMERIC_KEYS + 300)),
    container=st.sampled_from(["dict", "set"]),
    protocol=st.sampled_from([2, 4]),
)
def test_colliding_keys_are_refused(family, n, container, protocol):
    ks = colliding(family, n)
    value = {k: None for k in ks} if container == "dict" else set(ks)
    outcome = check(pickle.dumps({"v": value}, protocol=protocol))  # A snapshot is a dict.
    expected = "refused" if family in ("big ints", "floats") or len(ks) > MAX_NUMERIC_KEYS else "accepted"
    assert outcome == expected


@FUZZ_STRUCTURE
@given(value=values, protocol=st.sampled_from([2, 4]))
def test_random_structures_with_hostile_keys(value, protocol):
    try:
        data = pickle.dumps({"v": value}, protocol=protocol)
    except (TypeError, ValueError):  # frozenset keys holding NaN and similar: nothing to test.
        return
    outcome = check(data)
    if holds_hostile_key(value):
        assert outcome == "refused"


@FUZZ_STRUCTURE
@given(levels=st.integers(0, 40), leaf=leaves, width=st.integers(1, 3))
def test_metadata_json_counts_every_visit(levels, leaf, width):
    """A list of `width` references to a list of … : width**levels visits, refused past the budget, fast."""
    value = leaf
    for _ in range(levels):
        value = [value] * width
    try:
        out = json_value(value, "training_set_kwargs")
    except OfficialPickleError as e:
        assert "training_set_kwargs" in str(e)
        return
    assert sum(width**i for i in range(levels + 1)) <= MAX_META_NODES
    json.dumps(out, allow_nan=False)


# ----------------------------------------------------------------------------
# Sanity checks of the harness, and the known escapes.


def test_the_valid_snapshot_is_accepted_and_the_guard_works():
    assert check(snapshot()) == "accepted"
    with code_cannot_run(), pytest.raises(CodeRan, match="os.system"):
        os.system("true")
    with pytest.raises(AssertionError, match="collide"):
        assert_plain({1.5: None})
    with pytest.raises(AssertionError, match="deeper"):
        assert_plain(chain(["list"] * (MAX_DEPTH + 2), None))


def _tensor(size: tuple, stride: tuple) -> bytes:
    storage = call("torch.storage", "_load_from_bytes", obj(payload()))
    return (
        b"\x80\x02"
        + call("torch._utils", "_rebuild_tensor_v2", storage, obj(0), obj(size), obj(stride), obj(False), obj({}))
        + b"."
    )


# Inputs that once escaped as another exception type (the comment says which) or made CPython allocate first;
# the reader now refuses each cleanly.
KNOWN_ESCAPES = [
    pytest.param(b"\x80\x02Nr\x00\x00\x00\x10.", id="LONG_BINPUT-index-2^28-memo-bomb"),
    pytest.param(b"\x80\x04\x8e" + b"\xff" * 8 + b".", id="BINBYTES8-length-2^64-1"),  # OverflowError.
    pytest.param(b"\x80\x04\x8d" + b"\xff" * 8 + b".", id="BINUNICODE8-length-2^64-1"),  # OverflowError.
    pytest.param(b"\x80\x04\x95" + b"\xff" * 8 + b".", id="FRAME-length-2^64-1"),  # OverflowError.
    pytest.param(b"\x80\x04\x8e" + struct.pack("<Q", 2**63 - 1) + b".", id="BINBYTES8-length-2^63-1"),
    pytest.param(b"Np99999999999999999999\n.", id="PUT-index-2^66"),  # OverflowError.
    pytest.param(b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b".", id="BINBYTES8-length-2^62"),  # MemoryError.
    pytest.param(b"\x80\x05\x96" + struct.pack("<Q", 2**62) + b".", id="BYTEARRAY8-length-2^62"),  # MemoryError.
    pytest.param(_tensor((0, 2**62, 2**62), (1, 1, 1)), id="empty-tensor-size-(0,2^62,2^62)"),  # RuntimeError.
    pytest.param(b"\x80\x02}N" + b"\x85" * 100_000 + b"Ns.", id="deep-tuple-key"),  # Segfault while hashing.
    pytest.param(b"\x80\x02N\x85q\x000" + b"h\x00\x85q\x000" * 20_000 + b"}h\x00Ns.", id="deep-tuple-via-memo"),
    pytest.param(b"\x80\x02]q\x000]q\x010h\x00h\x01ah\x01N" + b"a.", id="list-changed-after-nesting"),
    pytest.param(b"\x80\x02]2a.", id="list-inside-itself"),
    pytest.param(
        b"\x80\x02}(" + b"".join(obj(k * P61 + 7) + b"N" for k in range(1, 2000)) + b"u.", id="colliding-big-int-keys"
    ),
]


@pytest.mark.parametrize("data", KNOWN_ESCAPES)
def test_known_escapes(data):
    with code_cannot_run(), pytest.raises(OfficialPickleError):
        read_official_pkl(io.BytesIO(data))
