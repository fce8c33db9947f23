"""Is a checkpoint usable? Metadata, tensor shapes and values checked before any network is built.

Everything in a checkpoint's metadata is untrusted: the Plan is type- and range-checked
(`Plan.from_dict`), the counters and optimizer records are checked, and every network's tensors are
compared by name and shape with what the Plan builds on the meta device. A run directory's
checkpoints are then "good" when they read back, match their checksum and hold finite weights:
resume takes the newest good one, the divergence guard restores it, and pruning never deletes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ganforge.modelio import checkpoint as ck
from ganforge.netcheck import expected_shapes, parameter_shapes, shape_mismatch
from ganforge.plan import Plan, PlanError

NETS = ("G", "D", "G_ema")


@dataclass
class Contents:
    """A checked checkpoint header: its Plan(s) and which networks it holds."""

    file: ck.CheckpointFile
    plan: Plan
    d_plan: Plan  # D's Plan (official snapshots may build D with other channel settings).
    patch_d: bool  # DCGAN PatchGAN discriminator.
    nets: tuple[str, ...]  # Networks present, among G, D, G_ema.

    @property
    def kind(self) -> str:
        return self.file.meta.get("kind", "export")


def _plan(meta: dict, key: str, path: Path) -> Plan:
    try:
        return Plan.from_dict(meta[key], source=f"{path}: its {key}")
    except PlanError as e:
        raise ck.CheckpointError(f"{e}") from None


def _check_counters(meta: dict, path: Path) -> None:
    """The loop state of a training checkpoint: whole numbers where counts, a finite positive lr scale."""
    for name in ("cur_nimg", "batch_idx", "failures"):
        value = meta.get(name)
        if type(value) is not int or not 0 <= value <= 2**62:
            raise ck.CheckpointError(f"{path}: {name}={str(value)[:40]} is not a count: the file is damaged")
    scale = meta.get("lr_scale")
    number = isinstance(scale, (int, float)) and not isinstance(scale, bool)
    if not number or not isinstance(scale, (int, float)) or not (0 < scale <= 1e6 and math.isfinite(scale)):
        raise ck.CheckpointError(f"{path}: lr_scale={str(scale)[:40]} is not a positive number: the file is damaged")
    for name in ("config", "extra", "ada"):
        if not isinstance(meta.get(name, {}), dict):
            raise ck.CheckpointError(f"{path}: its {name} is not an object: the file is damaged")


def _check_optimizer(f: ck.CheckpointFile, c: Contents, part: str, net: str) -> None:
    """Adam state: `<param index>.<step|exp_avg|exp_avg_sq>` with each moment shaped like its parameter."""
    path = f.path
    groups = f.meta.get(part, {}).get("param_groups") if isinstance(f.meta.get(part), dict) else None
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups
    ):
        raise ck.CheckpointError(f"{path}: the {part} record has no param_groups list: the file is damaged")
    shapes = parameter_shapes(c.plan if net == "G" else c.d_plan, "G" if net == "G" else "D", c.patch_d)
    listed = [i for g in groups for i in g["params"]]
    if listed != list(range(len(shapes))):
        raise ck.CheckpointError(
            f"{path}: {part} lists {len(listed)} parameters but its plan's {net} has {len(shapes)}: the file is damaged"
        )
    for name, shape in f.shapes(part).items():
        idx, _, key = name.partition(".")
        if not idx.isdigit() or int(idx) >= len(shapes) or key not in ("step", "exp_avg", "exp_avg_sq"):
            raise ck.CheckpointError(f"{path}: tensor {part}.{name[:80]} is not Adam state: the file is damaged")
        want = () if key == "step" else shapes[int(idx)]
        if tuple(shape) != tuple(want):
            raise ck.CheckpointError(
                f"{path}: tensor {part}.{name} has shape {list(shape)} but its parameter "
                f"needs {list(want)}: the file is damaged"
            )


def inspect_file(path: str | Path) -> Contents:
    """Open a checkpoint and check everything but the tensor bytes (CheckpointError with one sentence)."""
    f = ck.open_checkpoint(path)
    meta, path = f.meta, f.path
    if "plan" not in meta:
        raise ck.CheckpointError(f"{path} holds no model plan: it is not a model checkpoint")
    plan = _plan(meta, "plan", path)
    d_plan = _plan(meta, "d_plan", path) if "d_plan" in meta else plan
    config = meta["config"] if isinstance(meta.get("config"), dict) else {}
    patch_d = config.get("patch_d") is True
    nets = tuple(n for n in NETS if f.shapes(n))
    if not nets:
        raise ck.CheckpointError(f"{path} holds no G, D or G_ema weights")
    c = Contents(f, plan, d_plan, patch_d, nets)
    for net in nets:
        expected = expected_shapes(plan, "G") if net != "D" else expected_shapes(d_plan, "D", patch_d)
        problem = shape_mismatch(expected, f.shapes(net), f"{net} in {path}")
        if problem:
            raise ck.CheckpointError(problem)
    if c.kind == "training":
        _check_counters(meta, path)
        missing = [n for n in NETS if n not in nets]
        if missing:
            raise ck.CheckpointError(f"{path} is a training checkpoint without {', '.join(missing)}: it is damaged")
        _check_optimizer(f, c, "opt_G", "G")
        _check_optimizer(f, c, "opt_D", "D")
        if tuple(f.shapes("loss").get("pl_mean", (None,))) != ():
            raise ck.CheckpointError(f"{path} lacks loss.pl_mean (a scalar): the file is damaged")
    return c


def load_into(module, tensors: dict, what: str) -> None:
    """module.load_state_dict(tensors, strict) after a name-and-shape check that names the first bad tensor."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problem = shape_mismatch(expected, {k: tuple(v.shape) for k, v in tensors.items()}, what)
    if problem:
        raise ck.CheckpointError(problem)
    module.load_state_dict(tensors, strict=True)


# ----------------------------------------------------------------------------
# Good checkpoints in a run directory.

_verified: dict[tuple, str | None] = {}  # (path, size, mtime_ns) -> problem; a file is read once per process.


def problem(path: str | Path) -> str | None:
    """None when the checkpoint is good (header, shapes, checksum, finite G/D/G_ema); else why it is not."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"{path} does not exist: check the path"
    except OSError as e:
        return f"{path} cannot be read ({e.strerror})"
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        _verified[key] = _problem(path)
    return _verified[key]


def _problem(path: Path) -> str | None:
    try:
        tensors = inspect_file(path).file.read()
    except ck.CheckpointError as e:
        return str(e)
    except OSError as e:
        return f"{path} cannot be read ({e.strerror})"
    bad = ck.nonfinite_part(tensors)
    if bad:
        return f"{path} holds non-finite (NaN or infinite) {bad} weights"
    return None


def newest_good(run_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(newest good checkpoint or None, [(newer checkpoint skipped, why)], newest first)."""
    skipped: list[tuple[Path, str]] = []
    for p in reversed(ck.list_checkpoints(run_dir)):
        why = problem(p)
        if why is None:
            return p, skipped
        skipped.append((p, why))
    return None, skipped


def latest_good(run_dir: str | Path) -> Path | None:
    """The newest good checkpoint of a run directory, or None."""
    return newest_good(run_dir)[0]


def prune(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete checkpoints older than the `keep` newest good ones; returns what was deleted.

    Only good checkpoints count, so a damaged file never pushes a good one out, and the newest good
    checkpoint is never deleted. Damaged files newer than it are left for the user to inspect.
    """
    found = ck.list_checkpoints(run_dir)
    good = [p for p in found if problem(p) is None]
    if not good:
        return []
    oldest_kept = ck.checkpoint_nimg(good[-keep:][0])
    doomed = [p for p in found if ck.checkpoint_nimg(p) < oldest_kept]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed
