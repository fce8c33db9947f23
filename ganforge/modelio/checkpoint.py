"""Checkpoints: safetensors files with JSON metadata and a checksum, written atomically, never pickle.

A checkpoint is one `.safetensors` file. Tensors are named `<part>.<key>` (`G.mapping.fc0.weight`,
`opt_G.3.exp_avg`); the metadata entry `ganforge` holds JSON (format version, Plan, training config,
kimg, optimizer hyper-parameters, loop state) and `ganforge_sha256` a SHA-256 over that JSON, the tensor
table and every tensor byte, so bit rot and truncation are caught with a sentence that names the file.

A file is recognised by its structure, never by its first bytes: the 8-byte little-endian header length
(bounded by MAX_HEADER_BYTES and the file size), a JSON object whose every entry is checked (dtype, shape,
offsets that tile the data exactly), then the data. Only when that fails are other formats named by their
own signatures (pickle, torch.save zip). Reading runs no code and allocates about the file's size.

Writes go to a temporary name in the same directory, are fsynced, then renamed over the target:
a kill at any moment leaves either the old file or the new one, never a partial file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ganforge.errors import GanforgeError

FORMAT = "ganforge-checkpoint"
VERSION = 2  # 2: ganforge_sha256. Version 1 files (no checksum) still load.
CKPT_RE = re.compile(r"checkpoint-(\d{12})\.safetensors$")  # Number = images shown to D.
MAX_HEADER_BYTES = 16 * 2**20  # ganforge headers are a few hundred KB; JSON parsing costs ~10x its bytes.
MAX_DIMS = 8
CHUNK = 16 * 2**20  # Read and hash granularity.
DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


class CheckpointError(GanforgeError, ValueError):
    """A checkpoint that cannot be read or does not fit; the message says what to do."""


@dataclass(frozen=True)
class Entry:
    dtype: str  # safetensors dtype name (F32, BF16 …).
    shape: tuple[int, ...]
    begin: int  # Byte offsets within the data section.
    end: int


@dataclass
class CheckpointFile:
    """A checkpoint's header, parsed and checked; tensors are read on demand by read()."""

    path: Path
    meta: dict  # The ganforge JSON.
    meta_text: str
    entries: dict[str, Entry]  # In file order.
    checksum: str | None  # None for version-1 files.
    data_start: int
    size: int

    def shapes(self, part: str | None = None) -> dict[str, tuple[int, ...]]:
        """{name: shape} of every tensor, or of one part (`G`, `opt_D` …) with its prefix removed."""
        if part is None:
            return {k: e.shape for k, e in self.entries.items()}
        prefix = part + "."
        return {k[len(prefix) :]: e.shape for k, e in self.entries.items() if k.startswith(prefix)}

    def read(self, parts: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """Every tensor (or those of `parts`, e.g. ('G_ema',)), with the checksum over the whole file verified
        (CheckpointError naming the file when it does not match)."""
        digest = _digest_start(self.meta_text, self.entries) if self.checksum else None
        tensors = {}
        with open(self.path, "rb") as f:
            f.seek(self.data_start)
            for name, e in self.entries.items():  # File order = data order (checked by the parser).
                buf = bytearray(e.end - e.begin)
                view, got = memoryview(buf), 0
                while got < len(buf):
                    n = f.readinto(view[got : got + CHUNK])
                    if not n:
                        raise CheckpointError(
                            f"{self.path} ended while reading tensor {name}: the file was "
                            f"truncated; use an earlier checkpoint"
                        )
                    got += n
                if digest is not None:
                    digest.update(buf)
                if parts is None or name.split(".", 1)[0] in parts:
                    tensors[name] = _tensor(buf, e)
        if digest is not None and digest.hexdigest() != self.checksum:
            raise CheckpointError(
                f"{self.path} fails its checksum: its bytes changed after it was written (disk "
                f"or copy error); use an earlier checkpoint or a good copy"
            )
        return tensors


# ----------------------------------------------------------------------------
# Atomic files.


def atomic_write(path: str | Path, write_fn) -> None:
    """Call write_fn(tmp_path), fsync, then rename over `path` (and fsync the directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # Some filesystems (and Windows) cannot fsync a directory.
        pass


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


# ----------------------------------------------------------------------------
# Writing.


def _raw(t: torch.Tensor) -> memoryview:
    """The tensor's bytes, little-endian as in memory (C-contiguous)."""
    flat = t.reshape(-1)
    return flat.view(torch.uint8).numpy().data if flat.numel() else memoryview(b"")


def _digest_start(meta_text: str, entries: dict[str, Entry]):
    """SHA-256 over the ganforge JSON and the tensor table; the data bytes follow in file order."""
    table = json.dumps([[k, e.dtype, list(e.shape), e.begin, e.end] for k, e in entries.items()])
    h = hashlib.sha256()
    h.update(meta_text.encode())
    h.update(b"\0")
    h.update(table.encode())
    h.update(b"\0")
    return h


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write tensors and JSON metadata as one safetensors file with a checksum, atomically."""
    clean = {}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"checkpoint entry {name!r} is {type(t).__name__}, not a tensor")
        if t.dtype not in DTYPE_NAMES:
            raise TypeError(f"checkpoint entry {name!r} has dtype {t.dtype}, which checkpoints do not store")
        clean[name] = t.detach().to("cpu").contiguous()
    write_raw(path, clean, json.dumps({"format": FORMAT, "version": VERSION, **meta}, allow_nan=False))


def write_raw(path: str | Path, clean: dict[str, torch.Tensor], meta_text: str) -> None:
    """The writer itself: contiguous CPU tensors and the metadata JSON text, with its checksum, atomically."""
    # Largest elements first (then by name), so that every tensor starts aligned to its element size.
    order = sorted(clean, key=lambda k: (-clean[k].element_size(), k))
    entries, offset = {}, 0
    for name in order:
        t = clean[name]
        n = t.numel() * t.element_size()
        entries[name] = Entry(DTYPE_NAMES[t.dtype], tuple(t.shape), offset, offset + n)
        offset += n
    digest = _digest_start(meta_text, entries)
    for name in order:
        digest.update(_raw(clean[name]))
    header = {"__metadata__": {"ganforge": meta_text, "ganforge_sha256": digest.hexdigest()}}
    header.update(
        {k: {"dtype": e.dtype, "shape": list(e.shape), "data_offsets": [e.begin, e.end]} for k, e in entries.items()}
    )
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # The data section starts 8-byte aligned.

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            for name in order:
                f.write(_raw(clean[name]))

    atomic_write(path, write)


# ----------------------------------------------------------------------------
# Reading: structure first.


def _foreign(path: Path, head: bytes) -> str | None:
    """A sentence naming another tool's format by its own signature, or None."""
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return (
            f"{path} is a pickle, which can run code when loaded; ganforge refuses it. For an official "
            f"StyleGAN2-ADA .pkl use `ganforge convert {path} OUT.safetensors`"
        )
    if head[:4] == b"PK\x03\x04":
        return (
            f"{path} is a zip archive (torch.save output holds a pickle, which can run code): ganforge refuses "
            f"it; for an official StyleGAN2-ADA .pkl use `ganforge convert {path} OUT.safetensors`"
        )
    if head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"\xff\xd8\xff":
        return f"{path} is an image, not a checkpoint: give a .safetensors checkpoint"
    return None


def _parse_entries(path: Path, header: dict, data_size: int) -> dict[str, Entry]:
    entries, spans = {}, []
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(spec, dict) or spec.get("dtype") not in DTYPES:
            raise ValueError(f"tensor {name[:80]!r} has no valid dtype")
        shape, offsets = spec.get("shape"), spec.get("data_offsets")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_DIMS
            or not all(type(d) is int and 0 <= d <= 2**40 for d in shape)
        ):
            raise ValueError(f"tensor {name[:80]!r} has a malformed shape")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise ValueError(f"tensor {name[:80]!r} has malformed data offsets")
        begin, end = offsets
        nbytes = math.prod(shape) * DTYPES[spec["dtype"]].itemsize
        if not 0 <= begin <= end or end - begin != nbytes:
            raise ValueError(f"tensor {name[:80]!r} claims {end - begin} bytes for shape {shape}")
        entries[name] = Entry(spec["dtype"], tuple(shape), begin, end)
        spans.append((begin, end, name))
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            raise ValueError(f"tensor {name[:80]!r} does not start where the previous one ends")
        pos = end
    if pos != data_size:
        raise _Truncated(pos, data_size)
    return {name: entries[name] for _, _, name in spans}


class _Truncated(ValueError):
    def __init__(self, need: int, have: int):
        super().__init__(f"needs {need} data bytes, holds {have}")
        self.need, self.have = need, have


def _read_header(path: Path) -> tuple[dict, int, int]:
    """(header JSON object, data start, file size); ValueError with the reason when it is not safetensors."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"it holds only {len(head)} byte(s)")
        (n,) = struct.unpack("<Q", head)
        if n < 2 or n > MAX_HEADER_BYTES or n > size - 8:
            raise ValueError(f"its first 8 bytes give a header of {n} bytes in a file of {size}")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"its header is not JSON ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    return header, 8 + n, size


def open_checkpoint(path: str | Path) -> CheckpointFile:
    """Parse and check a checkpoint's header (no tensor is read). Safe for untrusted files."""
    if not str(path).strip():
        raise CheckpointError("no checkpoint path was given: pass a .safetensors checkpoint")
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path")
    if path.is_dir():
        raise CheckpointError(folder_message(path))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file: give a .safetensors checkpoint")
    try:
        header, data_start, size = _read_header(path)
        entries = _parse_entries(path, header, size - data_start)
    except _Truncated as e:
        raise CheckpointError(
            f"{path} is truncated: it holds {e.have} of its {e.need} data bytes; use an earlier checkpoint"
        ) from None
    except ValueError as e:
        with open(path, "rb") as f:
            foreign = _foreign(path, f.read(8))
        raise CheckpointError(
            foreign
            or f"{path} is not a safetensors checkpoint ({e}): it is damaged or "
            f"another kind of file; use an earlier checkpoint"
        ) from None
    extra = header.get("__metadata__") or {}
    if not isinstance(extra, dict) or not isinstance(extra.get("ganforge"), str):
        raise CheckpointError(
            f"{path} is a safetensors file without ganforge metadata: it was not written by "
            f"ganforge (for weights from other tools, load them in Python)"
        )
    meta_text, checksum = extra["ganforge"], extra.get("ganforge_sha256")
    try:
        meta = json.loads(meta_text)
    except (json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{path} has damaged ganforge metadata (not JSON): use an earlier checkpoint") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} has ganforge metadata of an unknown format: it is damaged")
    version = meta.get("version")
    if type(version) is not int or version < 1:
        raise CheckpointError(f"{path} has a malformed format version: it is damaged")
    if version > VERSION:
        raise CheckpointError(
            f"{path} has format version {version}, newer than this ganforge reads ({VERSION}): upgrade ganforge"
        )
    if version >= 2 and not (isinstance(checksum, str) and re.fullmatch(r"[0-9a-f]{64}", checksum)):
        raise CheckpointError(f"{path} lacks its checksum: the header is damaged; use an earlier checkpoint")
    return CheckpointFile(path, meta, meta_text, entries, checksum if version >= 2 else None, data_start, size)


def _tensor(buf: bytearray, e: Entry) -> torch.Tensor:
    dtype = DTYPES[e.dtype]
    if not buf:
        return torch.empty(e.shape, dtype=dtype)
    return torch.frombuffer(buf, dtype=dtype).reshape(e.shape)


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read (tensors, meta), checksum verified. Safe for untrusted files: no code runs."""
    f = open_checkpoint(path)
    return f.read(), f.meta


def read_meta(path: str | Path) -> dict:
    """Only the JSON metadata (fast; no tensors read, no checksum)."""
    return open_checkpoint(path).meta


def split(tensors: dict[str, torch.Tensor], part: str) -> dict[str, torch.Tensor]:
    """The tensors of one part (`G`, `D`, `G_ema`, `opt_G` …) with the prefix removed."""
    prefix = part + "."
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def join(**parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{part}.{k}": v for part, d in parts.items() for k, v in d.items()}


def nonfinite_part(tensors: dict[str, torch.Tensor], parts: tuple[str, ...] = ("G", "D", "G_ema")) -> str | None:
    """The first network among `parts` with a NaN or infinite weight, or None."""
    for part in parts:
        values = [t for k, t in tensors.items() if k.startswith(part + ".") and t.is_floating_point()]
        if values and not all(bool(torch.isfinite(t).all()) for t in values):
            return part
    return None


# ----------------------------------------------------------------------------
# Optimizer state as tensors + JSON.


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"{idx}.{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    return tensors, {"param_groups": sd["param_groups"]}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# ----------------------------------------------------------------------------
# Run directories.


def checkpoint_name(nimg: int) -> str:
    return f"checkpoint-{nimg:012d}.safetensors"


def checkpoint_nimg(path: Path) -> int:
    m = CKPT_RE.search(path.name)
    if m is None:
        raise CheckpointError(f"{path.name} is not named like a checkpoint (checkpoint-<images>.safetensors)")
    return int(m.group(1))


def folder_message(folder: Path, shown: int = 3) -> str:
    """The sentence for a folder given where a checkpoint file was expected: its checkpoints, newest first."""
    found = list(reversed(list_checkpoints(folder)))
    if not found:  # Other model files: newest first by modification time.
        others = [p for p in folder.glob("*") if p.suffix in (".safetensors", ".pkl") and p.is_file()]
        found = sorted(others, key=lambda p: (-p.stat().st_mtime, p.name))
    if not found:
        return (
            f"checkpoint {folder} is a folder with no checkpoint in it: pass a checkpoint file "
            f"(checkpoint-*.safetensors, or an official .pkl)"
        )
    more = f" (and {len(found) - shown} older)" if len(found) > shown else ""
    names = ", ".join(str(p) for p in found[:shown])
    return f"checkpoint {folder} is a folder: pass one of its checkpoints, newest first: {names}{more}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints in a run directory, oldest first."""
    run_dir = Path(run_dir)
    found = [p for p in run_dir.glob("checkpoint-*.safetensors") if CKPT_RE.search(p.name)]
    return sorted(found, key=checkpoint_nimg)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint whose header parses (cheap: no tensor is read). Resuming and rolling back use
    `ganforge.modelio.check.newest_good`, which also verifies checksums and weights."""
    for p in reversed(list_checkpoints(run_dir)):
        try:
            open_checkpoint(p)
            return p
        except (CheckpointError, OSError):
            continue
    return None
