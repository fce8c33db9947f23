"""What a run says about its settings: config.json with a history of changes, the start-up summary, and the
schedules in force at every tick.

config.json holds the settings in force (the resolved TrainConfig, the same keys `--config` reads) and the
Plan. A resume that changes a setting (a new --g-lr, a longer --kimg) rewrites them and appends to `history`
what changed and at which kimg, so the file and the explorer's charts never show stale values.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ganforge.modelio import checkpoint as ck
from ganforge.plan import Plan
from ganforge.training.config import ConfigError, TrainConfig

IGNORED = ("resume",)  # Differs between the first start and every resume by design.


def _previous(path: Path) -> tuple[dict, list]:
    """(the config in force before, the history) of an existing config.json; empty when unreadable."""
    try:
        doc = json.loads(path.read_text())
        old, history = doc.get("config"), doc.get("history", [])
        old = TrainConfig.from_dict(old).to_dict() if isinstance(old, dict) else {}  # Older files: today's keys.
        return old, history if isinstance(history, list) else []
    except (OSError, ValueError, TypeError, ConfigError, AttributeError):
        return {}, []


def write_config(run_dir: Path, cfg: TrainConfig, plan: Plan, resume: Path | None) -> dict:
    """Write config.json; returns {key: [before, now]} of what a resume changed (empty for a new run)."""
    path = run_dir / "config.json"
    now = cfg.to_dict()
    changed: dict = {}
    if resume is not None and path.exists():
        old, history = _previous(path)
        changed = {k: [old.get(k), v] for k, v in now.items() if k not in IGNORED and k in old and old[k] != v}
        if changed:
            kimg = ck.read_meta(resume).get("kimg")
            history.append({"kimg": kimg, "time": round(time.time(), 3), "changed": changed})
    else:
        history = [{"kimg": 0.0, "time": round(time.time(), 3), "started": True}]
    ck.atomic_write_text(path, json.dumps({"config": now, "plan": plan.to_dict(), "history": history}, indent=2))
    return changed


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def settings_lines(
    cfg: TrainConfig,
    plan: Plan,
    batch_gpu: int,
    rounds: int,
    world: int,
    precision: str,
    frozen: dict[str, set[str]],
    changed: dict,
) -> list[str]:
    """The settings that matter, as printed at start (and what a resume changed)."""
    passes = f", {rounds} passes of {batch_gpu // rounds}" if rounds > 1 else ""
    model = (
        f"{plan.family} {plan.preset} at {plan.resolution_text}, {plan.num_blocks} blocks, channels "
        f"{list(plan.channels)}, z {plan.z_dim}, w {plan.w_dim}, mapping {plan.mapping_layers}"
    )
    aug = cfg.aug if cfg.aug not in ("ada",) else f"ada (target {_value(cfg.ada_target)}, pipe {cfg.aug_pipe})"
    n_frozen = sum(map(len, frozen.values()))
    lines = [
        f"Preset {cfg.preset}: {model}",
        f"Batch {cfg.batch} ({batch_gpu} per process × {world}{passes}); {cfg.kimg:g} kimg; precision {precision}",
        f"Loss {cfg.loss}: G lr {_value(cfg.g_lr)}, D lr {_value(cfg.d_lr)}"
        + (f" × {cfg.d_lr_mult:g}" if cfg.d_lr_mult != 1 else "")
        + f", Adam betas ({cfg.beta1:g}, {cfg.beta2:g}), γ {_value(cfg.gamma)}, path length {cfg.pl_weight:g}, "
        f"style mixing {_value(cfg.style_mixing)}, EMA {cfg.ema_kimg:g} kimg"
        + (
            f", D blur σ {cfg.blur_init_sigma:g} fading over {cfg.blur_fade_kimg:g} kimg"
            if cfg.blur_init_sigma and cfg.blur_fade_kimg
            else ""
        ),
        f"Augmentation {aug}{', mirror' if cfg.mirror else ''}; frozen: "
        + (
            f"{n_frozen} tensors ({cfg.freeze or ''}{' FreezeD ' + str(cfg.freeze_d) if cfg.freeze_d else ''})"
            if n_frozen
            else "none"
        ),
    ]
    if changed:
        lines.append(
            "Changed since the last start: "
            + ", ".join(f"{k} {_value(a)} -> {_value(b)}" for k, (a, b) in changed.items())
        )
    return lines


def report_schedules(report, state, frozen: dict[str, set[str]]) -> None:
    """The value of every schedule in force now (learning rates with the rollback factor), and the frozen count."""
    cfg = state.cfg
    report("Schedule/g_lr", state.schedule("g_lr") * state.lr_scale)
    report("Schedule/d_lr", state.schedule("d_lr") * cfg.d_lr_mult * state.lr_scale)
    report("Schedule/gamma", state.schedule("gamma"))
    report("Schedule/style_mixing", state.schedule("style_mixing"))
    report("Schedule/blur_sigma", state.loss.blur_sigma)
    report("Schedule/ada_target", state.schedule("ada_target"))
    report("Schedule/frozen_tensors", sum(map(len, frozen.values())))
