"""Which checkpoint of a run the explorer offers: the newest whose header, Plan and tensor shapes check.

Only headers are read (no tensor, no network built), each file once while its size and time stay the same, so a
run folder full of large, damaged or hostile checkpoints costs little per listing and is never loaded up front.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ganforge.errors import GanforgeError
from ganforge.modelio.check import inspect_file
from ganforge.modelio.checkpoint import list_checkpoints

MAX_CHECKPOINT_TRIES = 8  # Newest checkpoints of a run probed for one that checks; older ones are not looked at.
MAX_HEADER_BYTES = 16 * 2**20  # A ganforge header is a few hundred KB; the format allows 100 MB, too much to parse
# (about ten times that in Python objects) for a page that lists runs every few seconds.
MAX_REMEMBERED = 4096  # Checked files remembered by (path, size, mtime).
log = logging.getLogger("ganforge.explore")
_checked: dict[tuple[str, int, int], str | None] = {}


def header_problem(path: Path) -> str | None:
    """A safetensors header too large for the explorer to parse, as a sentence (reads 8 bytes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            size = f.seek(0, 2)
    except OSError as e:
        return f"{path.name} cannot be read ({e.strerror}): check the file and its permissions"
    n = int.from_bytes(head, "little") if len(head) == 8 else 0
    if MAX_HEADER_BYTES < n <= size - 8:  # A length past the file's end is not a header: the checker names it.
        return (
            f"{path.name} has a header of {n / 2**20:.0f} MB, over the explorer's {MAX_HEADER_BYTES // 2**20} MB: "
            "it is not a ganforge checkpoint"
        )
    return None


def _problem(path: Path) -> str | None:
    why = header_problem(path)
    if why:
        return why
    try:
        contents = inspect_file(path)
    except GanforgeError as e:
        return str(e).replace(str(path), path.name)
    except OSError as e:
        return f"{path.name} cannot be read ({e.strerror}): check the file and its permissions"
    except Exception as e:  # A checker bug must not take the run list down with it; it is logged with its trace.
        log.error("checking %s raised an unexpected %s", path, type(e).__name__, exc_info=e)
        return f"{path.name} could not be checked ({type(e).__name__}): use an earlier checkpoint"
    if "G_ema" not in contents.nets:
        return f"{path.name} holds no G_ema network (it has {', '.join(contents.nets)}): export the run's G_ema"
    return None


def checkpoint_problem(path: Path) -> str | None:
    """Why the explorer cannot offer a checkpoint, or None when its header, Plan and tensor shapes all check."""
    try:
        st = path.stat()
    except OSError as e:
        return f"{path.name} cannot be read ({e.strerror}): check the file and its permissions"
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _checked:
        if len(_checked) >= MAX_REMEMBERED:
            _checked.clear()
        _checked[key] = _problem(path)
    return _checked[key]


def usable_checkpoint(run: Path) -> tuple[Path | None, list[str]]:
    """(the newest of the run's checkpoints that checks, or None; the problems of the newer ones)."""
    found = list_checkpoints(run)
    problems: list[str] = []
    for path in list(reversed(found))[:MAX_CHECKPOINT_TRIES]:
        why = checkpoint_problem(path)
        if why is None:
            return path, problems
        problems.append(why)
    if len(found) > MAX_CHECKPOINT_TRIES:
        problems.append(f"the newest {MAX_CHECKPOINT_TRIES} checkpoints are all unusable; older ones were not tried")
    return None, problems
