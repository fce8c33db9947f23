"""A restricted unpickler for official StyleGAN2-ADA and StyleGAN3 network pickles that never runs code from the file.

In the official code every network module of a `network-snapshot-*.pkl` is rebuilt by
`torch_utils.persistence._reconstruct_persistent_obj(meta)`, which `exec()`s the Python source stored in
`meta["module_src"]`. Here every global the file names is looked up in an explicit allow-list of
ganforge's own stand-ins, anything else raises UnsafePickleError, and the stand-ins check their
arguments and return data: an OfficialRecord (class name, state; the source is only hashed) for each
persistent object, tensors decoded from the nested legacy `torch.save` storage streams by a second
restricted unpickler, dicts for EasyDict/OrderedDict, Python numbers for NumPy scalars and read-only NumPy
arrays for the numeric arrays that StyleGAN3 modules keep (sizes). BUILD (`__setstate__`) is refused on every
object the stand-ins create, except the empty state of a dict, the plain numeric state of a NumPy dtype and the
(shape, dtype, bytes) state of a NumPy array. One pass after loading leaves only plain data: dicts, lists,
tuples, sets, tensors, numbers, strings, numeric NumPy arrays and OfficialRecords.

Before any of that, `untrusted.prescan` walks the opcodes of every pickle (the outer one and each storage
payload) without building anything, and refuses nesting, hash-collision keys and sizes that would crash or
stall CPython's own unpickler; the stand-ins repeat the key rule on the real values they hash.
"""

from __future__ import annotations

import collections
import hashlib
import io
import math
import pickle
import re
from collections.abc import Callable
from typing import Any, BinaryIO, Literal, NoReturn

import numpy as np
import torch

from ganforge.modelio import untrusted
from ganforge.modelio.untrusted import FIX, MAX_DEPTH, OfficialPickleError, UnsafePickleError, brief, prescan

__all__ = ["OfficialPickleError", "OfficialRecord", "SnapshotUnpickler", "UnsafePickleError", "prescan"]

# Classes of the official networks: StyleGAN2-ADA's training/networks.py and training/augment.py, and the
# StyleGAN3 repository's networks_stylegan2.py, networks_stylegan3.py (adds SynthesisInput) and augment.py.
KNOWN_CLASSES = frozenset(
    {
        "Generator",
        "MappingNetwork",
        "SynthesisNetwork",
        "SynthesisBlock",
        "SynthesisLayer",
        "ToRGBLayer",
        "FullyConnectedLayer",
        "Conv2dLayer",
        "Discriminator",
        "DiscriminatorBlock",
        "DiscriminatorEpilogue",
        "MinibatchStdLayer",
        "AugmentPipe",
        "SynthesisInput",
    }
)
PERSISTENCE_VERSION = 6  # torch_utils.persistence._version in every official release.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER (legacy, non-zip format).
LEGACY_PROTOCOL = 1001
STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
NUMPY_SCALAR_CODES = re.compile(r"b1|[iu][1248]|f[248]|c(8|16)")
MAX_TENSOR_DIMS = 16  # Official tensors have at most 4.


def _refuse_state(obj: object, state: object) -> NoReturn:
    raise UnsafePickleError(
        f"the pickle tries to set the state of a {type(obj).__name__} (BUILD opcode), which an "
        f"official network snapshot never does: the file was crafted or corrupted"
    )


# ----------------------------------------------------------------------------
# Objects the stand-ins create. Each refuses BUILD unless its state is harmless.


def _check_key(key: object) -> None:
    if untrusted.key_class(key) == untrusted.BAD:
        raise OfficialPickleError(untrusted.bad_key_message(untrusted.describe_key(key)))


class _EmptyState(dict):
    """A dict stand-in: built empty (pickles fill it item by item), every key checked before it is hashed."""

    def __init__(self, *args, **kwargs):
        if args or kwargs:  # dict(...) would hash the arguments' keys in C, past the key check.
            raise UnsafePickleError(
                f"{type(self).__name__} called with arguments; official snapshots build it empty: {FIX}"
            )
        super().__init__()

    def __setitem__(self, key, value) -> None:
        _check_key(key)
        super().__setitem__(key, value)

    def __setstate__(self, state: object) -> None:  # Old pickles BUILD an empty state; anything else is refused.
        if state:
            _refuse_state(self, state)


class EasyDict(_EmptyState, dict):
    """Stand-in for dnnlib.util.EasyDict (a plain `dict` after loading)."""


class _OrderedDict(_EmptyState, collections.OrderedDict):
    """Stand-in for collections.OrderedDict (a plain `dict` after loading)."""


class _Sealed:
    """Base of the stand-in objects: no __dict__, BUILD refused."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        _refuse_state(self, state)


class _StandIn(_Sealed):
    """An allow-listed global: calls ganforge's own function, and names the global in errors."""

    __slots__ = ("qualname", "fn")

    def __init__(self, qualname: str, fn):
        self.qualname, self.fn = qualname, fn

    def __call__(self, *args):
        try:
            return self.fn(*args)
        except TypeError as e:  # Wrong number or kind of arguments: a crafted file, not an official one.
            raise OfficialPickleError(
                f"malformed call to {self.qualname} in the pickle ({brief(str(e))}): {FIX}"
            ) from None


class _Box(_Sealed):
    __slots__ = ("flat",)

    def __init__(self, flat):
        self.flat = flat


class _Storage(_Box):  # A decoded storage, as a flat tensor.
    __slots__ = ()


class _TensorBox(_Box):  # A rebuilt tensor, boxed so that no opcode can reach torch's own __setstate__.
    __slots__ = ()


class _StorageType(_Sealed):  # A storage class named inside a storage payload (never called).
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class _DType(_Sealed):
    """A NumPy dtype for numeric scalars only: its code ('f8') and byte order."""

    __slots__ = ("code", "order")

    def __init__(self, code: str):
        self.code = code
        self.order: Literal["<", ">", "="] = "="  # '|' (not applicable) is kept as native.

    def __setstate__(self, state: object) -> None:
        """numpy's dtype state (version, byte order, subarray, names, fields, size, alignment, flags[, meta])."""
        if not (
            isinstance(state, tuple)
            and len(state) in (8, 9)
            and all(v is None for v in state[2:5] + state[8:])
            and state[0] in (3, 4)
            and state[1] in ("<", ">", "|", "=")
        ):
            _refuse_state(self, state)
        self.order = "=" if state[1] == "|" else state[1]

    def numpy(self) -> np.dtype:
        return np.dtype(self.code).newbyteorder(self.order)


class _ArrayType(_Sealed):
    """Stand-in for numpy.ndarray: only the type argument of _reconstruct, never called itself."""

    __slots__ = ()

    def __call__(self, *args):
        raise UnsafePickleError(f"the pickle calls numpy.ndarray directly, which official snapshots never do: {FIX}")


class _ArrayBox(_Sealed):
    """An empty array from numpy's _reconstruct; its BUILD state (version 1, shape, dtype, fortran order, raw bytes)
    fills it. After loading it becomes a read-only ndarray with its own copy of the bytes."""

    __slots__ = ("array",)

    def __init__(self):
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if self.array is not None or not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            _refuse_state(self, state)
        _, shape, dtype, fortran, data = state
        shape = _int_tuple(shape, "array shape")
        if any(v >= 2**40 for v in shape):
            raise OfficialPickleError(f"a NumPy array of shape {list(shape)} is absurd: {FIX}")
        if not isinstance(dtype, _DType) or not isinstance(fortran, bool) or not isinstance(data, bytes):
            raise UnsafePickleError(
                f"a NumPy array in the pickle has state {brief(state)}; official snapshots hold numeric arrays of "
                f"raw bytes only: {FIX}"
            )
        dt = dtype.numpy()
        if len(data) != math.prod(shape) * dt.itemsize:
            raise OfficialPickleError(
                f"a NumPy array of shape {list(shape)} ({dt}) holds {len(data)} bytes: the file is truncated or damaged"
            )
        flat = np.frombuffer(data, dtype=dt).copy()
        self.array = flat.reshape(shape, order="F" if fortran else "C")
        self.array.flags.writeable = False


class OfficialRecord(_Sealed):
    """One official network module as data: its class name, constructor arguments and state.

    `state` is the module's __dict__ as pickled (`_parameters`, `_buffers`, `_modules`, plain
    attributes); `source_sha256` identifies the embedded source file, which is never run.
    """

    __slots__ = ("class_name", "state", "source_sha256", "version")

    def __init__(self, class_name: str, state: dict, source_sha256: str, version: int):
        self.class_name, self.state, self.source_sha256, self.version = class_name, state, source_sha256, version

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})

    @property
    def parameters(self) -> dict:
        return dict(self.state.get("_parameters") or {})

    @property
    def buffers(self) -> dict:
        return dict(self.state.get("_buffers") or {})

    @property
    def modules(self) -> dict:
        return dict(self.state.get("_modules") or {})

    def __reduce__(self):  # copy.deepcopy and pickling (by ganforge's name; the importer itself refuses it).
        return OfficialRecord, (self.class_name, self.state, self.source_sha256, self.version)

    def __repr__(self) -> str:
        return f"OfficialRecord({self.class_name}, modules={list(self.modules)}, init_kwargs={self.init_kwargs})"


# ----------------------------------------------------------------------------
# Nested storage payloads: legacy torch.save streams holding one storage.


class _StorageUnpickler(pickle.Unpickler):
    """Reads the pickles of a legacy torch.save stream: storage classes and storage ids only."""

    def find_class(self, module: str, name: str):
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(_global_message(module, name, "a tensor storage payload"))

    def persistent_load(self, pid):
        ok = (
            isinstance(pid, tuple)
            and len(pid) in (5, 6)
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and isinstance(pid[4], int)
            and pid[4] >= 0
            and pid[5:] in ((), (None,))
        )
        if not ok:
            raise UnsafePickleError(
                f"unexpected storage id {brief(pid)} in a tensor payload: the file is not an "
                f"official snapshot (or uses storage views, which ganforge does not read)"
            )
        return (pid[1].name, pid[2], pid[4])


def _load_storage(payload: bytes) -> _Storage:
    """torch.storage._load_from_bytes, without torch.load: decode one legacy torch.save stream."""
    if not isinstance(payload, (bytes, bytearray)):
        raise OfficialPickleError(f"torch.storage._load_from_bytes got {type(payload).__name__}, expected bytes")
    if payload[:2] == b"PK":
        raise OfficialPickleError(
            "a tensor storage in this pickle uses the zip torch.save format; ganforge reads the "
            "legacy format that every official snapshot uses: re-save it with the official code"
        )
    f = io.BytesIO(payload)
    parts = []
    for _ in range(5):
        start = f.tell()
        prescan(f, allow_persid=True)  # Storage payloads name their storage by a persistent id.
        f.seek(start)
        parts.append(_StorageUnpickler(f).load())
    magic, proto, info, storage_id, keys = parts
    if magic != LEGACY_MAGIC or proto != LEGACY_PROTOCOL or not isinstance(info, dict):
        raise OfficialPickleError("a tensor storage payload has no legacy torch.save header: the file is damaged")
    if not (isinstance(storage_id, tuple) and len(storage_id) == 3 and storage_id[0] in STORAGE_DTYPES):
        raise OfficialPickleError("a tensor storage payload does not hold one storage: the file is damaged")
    type_name, key, numel = storage_id
    if not info.get("little_endian", False):
        raise OfficialPickleError("a tensor storage payload is big-endian; ganforge reads little-endian files only")
    if keys != [key]:
        raise OfficialPickleError(
            f"a tensor storage payload lists storages {brief(keys)}, expected exactly [{brief(key)}]: {FIX}"
        )
    dtype = STORAGE_DTYPES[type_name]
    count = int.from_bytes(f.read(8), "little", signed=True)
    itemsize = torch.empty(0, dtype=dtype).element_size()
    data = f.read()
    if count != numel or len(data) != count * itemsize:
        raise OfficialPickleError(
            f"a tensor storage payload holds {len(data)} bytes for {numel} x {type_name}: "
            f"the file is truncated or damaged"
        )
    flat = torch.frombuffer(bytearray(data), dtype=dtype) if count else torch.empty(0, dtype=dtype)
    return _Storage(flat)


# ----------------------------------------------------------------------------
# Stand-ins for the outer pickle's globals.


def _int_tuple(value: object, what: str) -> tuple[int, ...]:
    if (
        not isinstance(value, tuple)
        or len(value) > MAX_TENSOR_DIMS
        or not all(type(v) is int and v >= 0 for v in value)
    ):
        raise OfficialPickleError(
            f"tensor {what} {brief(value)} is not a tuple of at most {MAX_TENSOR_DIMS} non-negative ints: {FIX}"
        )
    return value


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, (dict, list, tuple)) and not value)


def _no_hooks(hooks: object) -> None:
    if not _empty(hooks):
        raise UnsafePickleError("a tensor in the pickle carries backward hooks; official snapshots never do")


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks, metadata=None) -> _TensorBox:
    if not isinstance(storage, _Storage) or not isinstance(offset, int) or offset < 0:
        raise OfficialPickleError("torch._utils._rebuild_tensor_v2 got no decoded storage: the file is damaged")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    _no_hooks(backward_hooks)
    if not isinstance(requires_grad, bool) or not _empty(metadata) or len(size) != len(stride):
        raise OfficialPickleError(
            f"unexpected tensor arguments (requires_grad={brief(requires_grad)}, metadata="
            f"{brief(metadata)}, size={size}, stride={stride}): the file is not an official "
            f"snapshot"
        )
    n = storage.flat.numel()
    numel = math.prod(size)
    if any(v >= 2**40 for v in size + stride):
        raise OfficialPickleError(f"tensor size {list(size)} / stride {list(stride)} is absurd: the file is damaged")
    last = offset + sum((s - 1) * st for s, st in zip(size, stride)) if numel else offset - 1
    if numel > n or last >= n:
        raise OfficialPickleError(
            f"a tensor of size {list(size)} (stride {list(stride)}, offset {offset}) does not "
            f"fit its storage of {n} elements: the file is damaged"
        )
    return _TensorBox(storage.flat.as_strided(size, stride, offset) if numel else storage.flat.new_empty(size))


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None) -> _TensorBox:
    if not isinstance(data, _TensorBox) or not isinstance(requires_grad, bool):
        raise OfficialPickleError("torch._utils._rebuild_parameter got no tensor: the file is damaged")
    _no_hooks(backward_hooks)
    if not _empty(state):
        raise UnsafePickleError("a parameter in the pickle carries extra Python state; official snapshots never do")
    return data


def _numpy_dtype(code, align=False, copy=True) -> _DType:
    if not isinstance(code, str) or not NUMPY_SCALAR_CODES.fullmatch(code) or align is not False:
        raise UnsafePickleError(
            f"numpy.dtype({brief(code)}) is not a plain numeric type; official snapshots only "
            f"hold numeric NumPy scalars"
        )
    return _DType(code)


def _numpy_scalar(dtype, data) -> int | float | complex | bool:
    if not isinstance(dtype, _DType) or not isinstance(data, bytes):
        raise UnsafePickleError("numpy scalar with a non-numeric dtype or non-bytes data; refusing it")
    dt = dtype.numpy()
    if len(data) != dt.itemsize:
        raise OfficialPickleError(f"numpy {dt} scalar with {len(data)} bytes: the file is damaged")
    return np.frombuffer(data, dtype=dt)[0].item()


def _numpy_reconstruct(subtype, shape, typecode) -> _ArrayBox:
    """numpy's _reconstruct(ndarray, (0,), b'b'): an empty array that the following BUILD fills."""
    if not isinstance(subtype, _ArrayType) or shape != (0,) or typecode != b"b":
        raise UnsafePickleError(
            f"numpy _reconstruct({brief(subtype)}, {brief(shape)}, {brief(typecode)}) is not how NumPy pickles a plain "
            f"array: {FIX}"
        )
    return _ArrayBox()


def _make_set(items=()) -> set:
    """builtins.set(list): the elements are checked before CPython hashes any of them."""
    if not isinstance(items, (list, tuple)):
        raise UnsafePickleError(f"builtins.set({type(items).__name__}) refused: expected a list")
    for v in items:
        _check_key(v)
    if sum(untrusted.key_class(v) == untrusted.NUMERIC for v in items) > untrusted.MAX_NUMERIC_KEYS:
        raise OfficialPickleError(untrusted.numeric_keys_message())
    return set(items)


def _latin1(text, encoding) -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode({type(text).__name__}, {brief(encoding)}) refused")
    return text.encode("latin-1")


def _global_message(module: str, name: str, where: str) -> str:
    return (
        f"refusing global {module}.{name} in {where}: it is not on the allow-list of an official StyleGAN2-ADA or "
        f"StyleGAN3 snapshot, and loading it could run code; ganforge never imports or calls what a pickle names"
    )


class SnapshotUnpickler(pickle.Unpickler):
    """The outer pickle: every global resolves to a ganforge stand-in or raises UnsafePickleError."""

    def __init__(self, file: BinaryIO):
        super().__init__(file)
        self.sources: dict[str, set[str]] = {}  # sha256 of each embedded module_src -> class names.
        self._hashes: dict[int, tuple[str, str]] = {}  # id(module_src) -> (module_src, sha256).
        functions = [  # The allow-list: (module, name, ganforge's function).
            ("builtins", "set", _make_set),
            ("_codecs", "encode", _latin1),
            ("numpy", "dtype", _numpy_dtype),
            ("numpy._core.multiarray", "scalar", _numpy_scalar),
            ("numpy.core.multiarray", "scalar", _numpy_scalar),
            ("numpy._core.multiarray", "_reconstruct", _numpy_reconstruct),  # NumPy 2 spelling.
            ("numpy.core.multiarray", "_reconstruct", _numpy_reconstruct),  # NumPy 1 spelling.
            ("torch._utils", "_rebuild_tensor_v2", _rebuild_tensor_v2),
            ("torch._utils", "_rebuild_parameter", _rebuild_parameter),
            ("torch._utils", "_rebuild_parameter_with_state", _rebuild_parameter),
            ("torch.storage", "_load_from_bytes", _load_storage),
            ("torch_utils.persistence", "_reconstruct_persistent_obj", self._record),
        ]
        self._globals: dict[tuple[str, str], Callable[..., Any]] = {
            (m, n): _StandIn(f"{m}.{n}", fn) for m, n, fn in functions
        }
        self._globals.update({("collections", "OrderedDict"): _OrderedDict, ("dnnlib.util", "EasyDict"): EasyDict})
        self._globals[("numpy", "ndarray")] = _ArrayType()

    def find_class(self, module: str, name: str):
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)  # Protocol-2 spellings.
        try:
            return self._globals[(module, name)]
        except KeyError:
            if module.startswith("dnnlib.tflib"):
                raise UnsafePickleError(
                    f"{module}.{name}: this is a TensorFlow StyleGAN2 pickle; ganforge imports "
                    f"PyTorch StyleGAN2-ADA and StyleGAN3 snapshots only (convert it first with the official "
                    f"legacy.py, in an environment that may run its code)"
                ) from None
            raise UnsafePickleError(_global_message(module, name, "the snapshot")) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("the pickle uses a persistent id, which official snapshots never do: refusing it")

    def _record(self, meta) -> OfficialRecord:
        """torch_utils.persistence._reconstruct_persistent_obj, minus the exec: keep the state as data."""
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise OfficialPickleError("a persistent object in the pickle is not a class record: the file is damaged")
        name, src, state, version = (meta.get(k) for k in ("class_name", "module_src", "state", "version"))
        if version != PERSISTENCE_VERSION:
            raise OfficialPickleError(
                f"persistent object version {brief(version)}, expected {PERSISTENCE_VERSION}: "
                f"this pickle was not written by the official StyleGAN2-ADA/StyleGAN3 code"
            )
        if name not in KNOWN_CLASSES:
            raise UnsafePickleError(
                f"persistent object class {brief(name)} is not an official StyleGAN2-ADA or StyleGAN3 network class "
                f"(known: {', '.join(sorted(KNOWN_CLASSES))}); ganforge maps only those and never runs the embedded "
                f"source"
            )
        if not isinstance(src, str) or not isinstance(state, dict):
            raise OfficialPickleError(f"persistent object {name} has no source text or state dict: the file is damaged")
        cached = self._hashes.get(id(src))
        if cached is None or cached[0] is not src:
            digest = hashlib.sha256(src.encode("utf-8", "surrogatepass")).hexdigest()  # Lone surrogates too.
            cached = self._hashes[id(src)] = (src, digest)
        self.sources.setdefault(cached[1], set()).add(name)
        return OfficialRecord(name, state, cached[1], version)


# ----------------------------------------------------------------------------
# After loading: plain data only.


def _plain(obj: Any, memo: dict[int, Any], depth: int = 0) -> Any:
    """Unbox tensors, turn dict subclasses into dicts; shared objects stay shared, cycles are kept."""
    if isinstance(obj, (str, bytes, int, float, complex, type(None))):
        return obj
    if id(obj) in memo:
        return memo[id(obj)]
    if depth > MAX_DEPTH:
        raise OfficialPickleError(f"the pickle nests objects more than {MAX_DEPTH} levels deep: not a network snapshot")
    if isinstance(obj, _TensorBox):
        out = memo[id(obj)] = obj.flat
    elif isinstance(obj, _ArrayBox):
        if obj.array is None:
            raise OfficialPickleError(f"a NumPy array in the pickle has no data: {FIX}")
        out = memo[id(obj)] = obj.array
    elif isinstance(obj, OfficialRecord):
        out = memo[id(obj)] = obj
        obj.state = _plain(obj.state, memo, depth + 1)
    elif isinstance(obj, dict):
        out = memo[id(obj)] = {}
        for k, v in obj.items():
            out[_plain(k, memo, depth + 1)] = _plain(v, memo, depth + 1)
    elif isinstance(obj, list):
        out = memo[id(obj)] = []
        out.extend(_plain(v, memo, depth + 1) for v in obj)
    elif isinstance(obj, tuple):
        out = memo[id(obj)] = tuple(_plain(v, memo, depth + 1) for v in obj)
    elif isinstance(obj, (set, frozenset)):
        out = memo[id(obj)] = type(obj)(_plain(v, memo, depth + 1) for v in obj)
    else:  # _DType, _Storage or a stand-in left on its own: meaningless outside the pickle.
        raise OfficialPickleError(f"the pickle leaves a bare {type(obj).__name__} in its data: the file is damaged")
    return out


def unpickle_snapshot(file: BinaryIO) -> tuple[Any, dict[str, set[str]]]:
    """Load an official pickle from an open binary file: (plain data, {source sha256: class names})."""
    raw = io.BytesIO(file.read())
    prescan(raw)
    raw.seek(0)
    unpickler = SnapshotUnpickler(raw)
    try:
        data = unpickler.load()
        return _plain(data, {}), unpickler.sources
    except OfficialPickleError:
        raise
    except untrusted.DATA_ERRORS as e:
        raise OfficialPickleError(f"not a readable pickle ({type(e).__name__}: {brief(str(e))}): {FIX}") from None
