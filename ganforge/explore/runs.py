"""Training runs on disk, read-only: discovery, then what each run holds (config, schedules, snapshots, metrics).

A run is a folder holding stats.jsonl or checkpoint-*.safetensors. Its id is its path relative to the --runs
root ('.' for the root itself); requests name runs by id only, and an id is looked up, never joined to a path.

A run whose files cannot all be used is still listed, with `broken` (the first problem, one sentence) and
`problems` (all of them): nothing in one run folder can fail the list or another run.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from ganforge.explore.checkpoints import usable_checkpoint
from ganforge.explore.paths import inside
from ganforge.explore.runfiles import FileProblem, open_run_file, read_config, read_metrics
from ganforge.modelio.checkpoint import CKPT_RE, list_checkpoints

SNAPSHOT_RE = re.compile(r"^fakes-(\d{1,18})\.png$")  # 18 digits: far past any run (and a kimg float).
NIMG_RE = re.compile(r"(?<!\d)(\d{6,18})(?!\d)")
SCHEDULED = ("g_lr", "d_lr", "gamma", "style_mixing", "ada_target")
MAX_DEPTH = 4  # Folders below --runs searched for runs.
MAX_FOLDERS = 10_000  # Folders visited per listing: a huge tree below --runs costs a bounded time per request.


def discover_runs(root: Path, max_depth: int = MAX_DEPTH) -> dict[str, Path]:
    """{run id: folder} for every run at most max_depth below root; symlinked folders are not followed.

    A folder that cannot be read is listed too (it may be a run), so the page can say why it shows nothing.
    """
    root = Path(root)
    runs: dict[str, Path] = {}

    def unreadable(e: OSError) -> None:
        if e.filename is not None and inside(Path(e.filename), root):
            runs[Path(e.filename).relative_to(root).as_posix()] = Path(e.filename)

    for visited, (folder, subdirs, files) in enumerate(os.walk(root, onerror=unreadable, followlinks=False)):
        here = Path(folder)
        depth = len(here.relative_to(root).parts)
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and depth < max_depth)
        if "stats.jsonl" in files or any(CKPT_RE.search(f) for f in files):
            runs[here.relative_to(root).as_posix()] = here
        if visited >= MAX_FOLDERS:
            break
    return dict(sorted(runs.items()))


def folder_problem(run: Path) -> str | None:
    try:
        with os.scandir(run):
            return None
    except OSError as e:
        return f"the folder cannot be read ({e.strerror}): give the explorer read access to it"


def is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # A folder without search permission: its files cannot be served either.
        return False


def nimg_of(name: str) -> int | None:
    m = NIMG_RE.search(name)
    return int(m.group(1)) if m else None


def snapshots(run: Path) -> list[dict]:
    """The fixed-seed sample grids fakes-<nimg>.png, oldest first."""
    found = [(int(m.group(1)), p.name) for p in run.glob("fakes-*.png") if (m := SNAPSHOT_RE.match(p.name))]
    return [dict(file=name, nimg=nimg, kimg=nimg / 1000) for nimg, name in sorted(found)]


def describe_schedule(name: str, value, mult: float = 1.0) -> dict:
    """A config value that may be a schedule string -> {text, mode, points [[kimg, value]…]} (or an error)."""
    from ganforge.training.schedule import ScheduleError, parse_schedule

    try:
        sched = parse_schedule(value, name)
    except (ScheduleError, TypeError, ValueError) as e:
        return dict(name=name, text=str(value)[:200], error=str(e)[:300])
    points = [[k, v * mult] for k, v in sched.points]
    if not all(math.isfinite(x) for point in points for x in point):
        return dict(name=name, text=str(value)[:200], error=f"{name}: {str(value)[:80]!r} is not finite")
    text = str(sched) + (f" × {mult:g}" if mult != 1 else "")
    return dict(name=name, text=text, mode=sched.mode, points=points)


def training_config(config: dict) -> dict:
    """The training options of a config.json: its 'config' object (or the file itself, for flat configs)."""
    cfg = config.get("config", config)
    return cfg if isinstance(cfg, dict) else {}


def schedules(config: dict) -> list[dict]:
    """Learning rates, γ and the other schedulable options of a checked config (D's rate with d_lr_mult)."""
    cfg = training_config(config)
    out = []
    for name in SCHEDULED:
        value = cfg.get(name)
        if value is None or value == "":
            continue
        mult = float(cfg.get("d_lr_mult") or 1.0) if name == "d_lr" else 1.0
        out.append(describe_schedule(name, value, mult))
    return out


def plan_text(config: dict) -> str | None:
    plan = config.get("plan")
    if not isinstance(plan, dict) or not plan.get("preset"):
        return None
    return f"{plan.get('family', '?')} {plan['preset']} {plan.get('width', '?')}×{plan.get('height', '?')}"


def inspect_run(run: Path) -> tuple[dict, Path | None, list[str]]:
    """(config.json's object, or {} when unusable; the checkpoint to load; every problem found, as sentences)."""
    problem = folder_problem(run)
    if problem:
        return {}, None, [problem]
    config, problem = read_config(run)
    problems = [problem] if problem else []
    if problem:
        config = {}  # Shown as the file says nothing: none of its fields is trusted once one is wrong.
    checkpoint, ckpt_problems = usable_checkpoint(run)
    return config, checkpoint, problems + stats_problems(run) + ckpt_problems


def stats_problems(run: Path) -> list[str]:
    """Whether stats.jsonl opens (its lines are checked as they are read, by read_stats)."""
    try:
        f = open_run_file(run, "stats.jsonl")
    except FileProblem as e:
        return [str(e)]
    if f is not None:
        f.close()
    return []


def broken_text(problems: list[str]) -> str | None:
    if not problems:
        return None
    return problems[0] + (f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else "")


def summary_of(run_id: str, run: Path, config: dict, problems: list[str]) -> dict:
    try:
        updated = (run / "stats.jsonl").stat().st_mtime
    except OSError:
        updated = None
    cfg = training_config(config)
    return dict(
        id=run_id,
        name=run.name if run_id != "." else run.resolve().name,
        updated=updated,
        checkpoints=len(list_checkpoints(run)),
        snapshots=len(snapshots(run)),
        preset=cfg.get("preset"),
        target_kimg=cfg.get("kimg"),
        model=plan_text(config),
        broken=broken_text(problems),
    )


def run_summary(run_id: str, run: Path) -> dict:
    config, _, problems = inspect_run(run)
    return summary_of(run_id, run, config, problems)


def run_info(run_id: str, run: Path) -> dict:
    """Everything the runs page shows except the stats records (which come by offset)."""
    config, checkpoint, problems = inspect_run(run)
    metrics, metric_problems = read_metrics(run, nimg_of)
    problems += metric_problems
    return dict(
        id=run_id,
        summary=summary_of(run_id, run, config, problems),
        config=config,
        schedules=schedules(config),
        snapshots=snapshots(run),
        checkpoints=[dict(file=p.name, nimg=nimg_of(p.name)) for p in list_checkpoints(run)],
        model_checkpoint=checkpoint.name if checkpoint else None,
        latest="fakes_latest.png" if is_file(run / "fakes_latest.png") else None,
        reals="reals.png" if is_file(run / "reals.png") else None,
        metrics=metrics,
        broken=broken_text(problems),
        problems=problems,
    )
