"""Training runs on disk, read-only: discovery, config and schedules, stats.jsonl by byte offset, snapshots.

A run is a folder holding stats.jsonl or checkpoint-*.safetensors. Its id is its path relative to the --runs
root ('.' for the root itself); requests name runs by id only, and an id is looked up, never joined to a path.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ganforge.checkpoint import list_checkpoints
from ganforge.explore.params import ParamError
from ganforge.explore.paths import inside

SNAPSHOT_RE = re.compile(r"^fakes-(\d+)\.png$")
NIMG_RE = re.compile(r"(\d{6,})")
SCHEDULED = ("g_lr", "d_lr", "gamma", "style_mixing", "ada_target")
MAX_DEPTH = 4  # Folders below --runs searched for runs.
MAX_STATS_BYTES = 8 * 1024 * 1024  # Per stats request; a client pages on with ?since=.


def is_run(folder: Path) -> bool:
    return (folder / "stats.jsonl").is_file() or bool(list_checkpoints(folder))


def discover_runs(root: Path, max_depth: int = MAX_DEPTH) -> dict[str, Path]:
    """{run id: folder} for every run at most max_depth below root; symlinked folders are not followed."""
    root = Path(root)
    runs: dict[str, Path] = {}
    for folder, subdirs, _ in os.walk(root, followlinks=False):
        here = Path(folder)
        depth = len(here.relative_to(root).parts)
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and depth < max_depth)
        if is_run(here) and inside(here, root):
            runs[here.relative_to(root).as_posix()] = here
    return runs


def nimg_of(name: str) -> int | None:
    m = NIMG_RE.search(name)
    return int(m.group(1)) if m else None


def snapshots(run: Path) -> list[dict]:
    """The fixed-seed sample grids fakes-<nimg>.png, oldest first."""
    found = [(int(m.group(1)), p.name) for p in run.glob("fakes-*.png") if (m := SNAPSHOT_RE.match(p.name))]
    return [dict(file=name, nimg=nimg, kimg=nimg / 1000) for nimg, name in sorted(found)]


def read_config(run: Path) -> dict:
    path = run / "config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {"error": f"config.json could not be read: {e}"}
    return data if isinstance(data, dict) else {"error": "config.json is not a JSON object"}


def describe_schedule(name: str, value, mult: float = 1.0) -> dict:
    """A config value that may be a schedule string -> {text, mode, points [[kimg, value]…]} (or an error)."""
    from ganforge.train.schedule import ScheduleError, parse_schedule

    try:
        sched = parse_schedule(value, name)
    except (ScheduleError, TypeError) as e:
        return dict(name=name, text=str(value), error=str(e))
    points = [[k, v * mult] for k, v in sched.points]
    text = str(sched) + (f" × {mult:g}" if mult != 1 else "")
    return dict(name=name, text=text, mode=sched.mode, points=points)


def schedules(config: dict) -> list[dict]:
    """Learning rates, γ and the other schedulable options of a run's config (D's rate with d_lr_mult)."""
    cfg = config.get("config", config) if isinstance(config, dict) else {}
    out = []
    for name in SCHEDULED:
        value = cfg.get(name)
        if value is None or value == "":
            continue
        mult = float(cfg.get("d_lr_mult", 1.0) or 1.0) if name == "d_lr" else 1.0
        out.append(describe_schedule(name, value, mult))
    return out


def run_summary(run_id: str, run: Path) -> dict:
    stats = run / "stats.jsonl"
    cfg = read_config(run).get("config", {})
    return dict(id=run_id, name=run.name if run_id != "." else run.resolve().name,
                updated=stats.stat().st_mtime if stats.is_file() else None,
                checkpoints=len(list_checkpoints(run)), snapshots=len(snapshots(run)),
                preset=cfg.get("preset"), target_kimg=cfg.get("kimg"))


def run_info(run_id: str, run: Path) -> dict:
    """Everything the runs page shows except the stats records (which come by offset)."""
    config = read_config(run)
    ckpts = list_checkpoints(run)
    return dict(
        id=run_id, summary=run_summary(run_id, run), config=config, schedules=schedules(config),
        snapshots=snapshots(run), checkpoints=[dict(file=p.name, nimg=nimg_of(p.name)) for p in ckpts],
        latest="fakes_latest.png" if (run / "fakes_latest.png").is_file() else None,
        reals="reals.png" if (run / "reals.png").is_file() else None,
        metrics=read_metrics(run),
    )


def read_stats(run: Path, since: int = 0, max_bytes: int = MAX_STATS_BYTES) -> dict:
    """Records of stats.jsonl from byte offset `since` up to the last complete line.

    Returns {records, offset, reset, more}: the next request passes `offset` back; reset=True means the file
    shrank (a new run in the same folder) and the records start again from the top; more=True means the reply
    stopped at max_bytes and the client should ask again at once.
    """
    path = run / "stats.jsonl"
    if not path.is_file():
        return dict(records=[], offset=0, reset=since > 0, more=False)
    size = path.stat().st_size
    reset = since > size
    start = 0 if reset else since
    with open(path, "rb") as f:
        f.seek(start)
        chunk = f.read(max_bytes)
    end = chunk.rfind(b"\n") + 1  # A line still being written stays for the next poll.
    records = []
    for line in chunk[:end].splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return dict(records=records, offset=start + end, reset=reset, more=start + end < size and end > 0)


def read_metrics(run: Path) -> dict[str, list[list[float]]]:
    """{result name: [[kimg, value]…]} from metric-<name>.jsonl (kimg from the snapshot name, else the order)."""
    series: dict[str, list[list[float]]] = {}
    for path in sorted(run.glob("metric-*.jsonl")):
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for i, line in enumerate(lines):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            nimg = nimg_of(str(record.get("snapshot") or ""))
            x = nimg / 1000 if nimg is not None else float(i)
            for key, value in (record.get("results") or {}).items():
                if isinstance(value, (int, float)):
                    series.setdefault(key, []).append([x, float(value)])
    return series


def parse_since(text: str | None) -> int:
    if text is None or text == "":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise ParamError(f"since={text!r} is not a byte offset: pass the 'offset' of the previous reply") from None
    if value < 0:
        raise ParamError(f"since={value} is negative: pass the 'offset' of the previous reply (0 = from the top)")
    return value
