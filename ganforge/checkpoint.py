"""Checkpoints: safetensors tensors + JSON metadata, written atomically, never pickle.

A checkpoint is one `.safetensors` file. Tensors are named `<part>.<key>` (`G.mapping.fc0.weight`,
`opt_G.3.exp_avg`, `rng.torch`); the metadata entry `ganforge` holds JSON: format version, the
Plan, the training config, kimg, optimizer hyper-parameters and loop state. safetensors parses a
JSON header and raw buffers, so loading an untrusted file runs no code. Files that are pickles
(official `.pkl`, `torch.save` output) are refused with the command that converts them.

Writes go to a temporary name in the same directory, are fsynced, then renamed over the target:
a kill at any moment leaves either the old file or the new one, never a partial file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ganforge.errors import GanforgeError

FORMAT = "ganforge-checkpoint"
VERSION = 1
CKPT_RE = re.compile(r"checkpoint-(\d{12})\.safetensors$")  # Number = images shown to D.


class CheckpointError(GanforgeError, ValueError):
    """A checkpoint that cannot be read or does not fit; the message says what to do."""


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
# Save and load.


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write tensors and JSON metadata as one safetensors file, atomically."""
    clean = {}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"checkpoint entry {name!r} is {type(t).__name__}, not a tensor")
        clean[name] = t.detach().to("cpu").contiguous().clone()  # clone: safetensors refuses shared storage
    header = {"format": FORMAT, "version": VERSION, **meta}
    text = json.dumps(header)
    atomic_write(path, lambda tmp: save_file(clean, tmp, metadata={"ganforge": text}))


def _sniff(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise CheckpointError(
            f"{path} is a pickle (or torch.save zip), which can run code when loaded; ganforge refuses it. "
            f"For an official StyleGAN2-ADA .pkl use `ganforge convert {path} OUT.safetensors`."
        )
    if len(head) < 8:
        raise CheckpointError(f"{path} is empty or truncated ({len(head)} bytes): use an earlier checkpoint")


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read (tensors, meta). Safe for untrusted files: no code runs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    _sniff(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta_text = (f.metadata() or {}).get("ganforge")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint ({e}): use an earlier checkpoint"
        ) from e
    if meta_text is None:
        raise CheckpointError(f"{path} is a safetensors file without ganforge metadata: it was not written by ganforge")
    meta = json.loads(meta_text)
    if meta.get("format") != FORMAT or meta.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has format {meta.get('format')} v{meta.get('version')}: upgrade ganforge")
    return tensors, meta


def read_meta(path: str | Path) -> dict:
    """Only the JSON metadata (fast; no tensors read)."""
    path = Path(path)
    _sniff(path)
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {})["ganforge"])


def split(tensors: dict[str, torch.Tensor], part: str) -> dict[str, torch.Tensor]:
    """The tensors of one part (`G`, `D`, `G_ema`, `opt_G` …) with the prefix removed."""
    prefix = part + "."
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def join(**parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{part}.{k}": v for part, d in parts.items() for k, v in d.items()}


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


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints in a run directory, oldest first."""
    run_dir = Path(run_dir)
    found = [p for p in run_dir.glob("checkpoint-*.safetensors") if CKPT_RE.search(p.name)]
    return sorted(found, key=lambda p: int(CKPT_RE.search(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint that loads (a damaged newest file falls back to the one before)."""
    for p in reversed(list_checkpoints(run_dir)):
        try:
            read_meta(p)
            return p
        except Exception:
            continue
    return None


def prune(run_dir: str | Path, keep: int) -> None:
    for p in list_checkpoints(run_dir)[:-keep]:
        p.unlink(missing_ok=True)
