"""Everything a run needs to continue: networks, optimizers, counters — and its checkpoint form."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ganforge import build_discriminator, build_generator
from ganforge.modelio import check
from ganforge.modelio import checkpoint as ck
from ganforge.models.generator import cpu_has_native_bf16
from ganforge.plan import Plan
from ganforge.plan_compare import compare_plans
from ganforge.training.config import TrainConfig
from ganforge.training.schedule import parse_schedule


@dataclass(frozen=True)
class Phase:
    name: str  # Gmain | Greg | Dmain | Dreg.
    net: str  # G | D.
    interval: int  # Run every N steps (lazy regularization).


def make_phases(cfg: TrainConfig, stylegan: bool) -> list[Phase]:
    g_reg = stylegan and cfg.pl_weight > 0
    d_reg = max(v for _, v in parse_schedule(cfg.gamma).points) > 0
    return [
        p
        for p, on in [
            (Phase("Gmain", "G", 1), True),
            (Phase("Greg", "G", cfg.pl_interval), g_reg),
            (Phase("Dmain", "D", 1), True),
            (Phase("Dreg", "D", cfg.r1_interval), d_reg),
        ]
        if on
    ]


def lazy_ratio(interval: int, enabled: bool) -> float:
    """Adam lr and betas are corrected for lazy regularization: c = I / (I + 1) (official)."""
    return interval / (interval + 1) if enabled else 1.0


@dataclass
class TrainState:
    plan: Plan
    cfg: TrainConfig
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    pl_mean: torch.Tensor
    cur_nimg: int = 0
    batch_idx: int = 0
    lr_scale: float = 1.0  # Lowered by divergence rollbacks.
    failures: int = 0
    extra: dict = field(default_factory=dict)  # Future state (ADA p, schedules) as JSON.
    run_dir: Path | None = None  # Set by the loop.
    augment_ctrl: object | None = None  # ADA controller (its state goes into checkpoints).
    extra_runtime: dict = field(default_factory=dict, repr=False)  # Per-process caches (never saved).
    _schedules: dict = field(default_factory=dict, repr=False)

    @property
    def kimg(self) -> float:
        return self.cur_nimg / 1000

    def schedule(self, name: str) -> float:
        """The value of a (possibly scheduled) option at the current kimg."""
        if name not in self._schedules:
            self._schedules[name] = parse_schedule(getattr(self.cfg, name), name)
        return self._schedules[name](self.kimg)

    def set_lr(self) -> None:
        """Apply the scheduled learning rates × lr_scale × lazy-regularization ratios."""
        g_ratio = lazy_ratio(self.cfg.pl_interval, self.plan.family == "stylegan2" and self.cfg.pl_weight > 0)
        d_ratio = lazy_ratio(self.cfg.r1_interval, max(v for _, v in parse_schedule(self.cfg.gamma).points) > 0)
        for opt, lr, ratio in (
            (self.opt_G, self.schedule("g_lr"), g_ratio),
            (self.opt_D, self.schedule("d_lr") * self.cfg.d_lr_mult, d_ratio),
        ):
            for group in opt.param_groups:
                group["lr"] = lr * ratio * self.lr_scale
                group["betas"] = (self.cfg.beta1**ratio, self.cfg.beta2**ratio)


def cpu_mixed_precision(precision: str, device: torch.device) -> bool:
    """Reduced precision for the Plan's top resolutions on a CPU: --precision auto where the CPU has bf16
    instructions, or an explicit bf16/fp16."""
    if device.type != "cpu":
        return False
    return precision in ("bf16", "fp16") or (precision == "auto" and cpu_has_native_bf16())


def build_state(plan: Plan, cfg: TrainConfig, device: torch.device) -> TrainState:
    cpu_reduced = cpu_mixed_precision(cfg.precision, device)  # G_ema, a deep copy of G, computes as G.
    G = build_generator(plan, cpu_reduced_precision=cpu_reduced).train().requires_grad_(False).to(device)
    D = build_discriminator(plan, patch=cfg.patch_d, cpu_reduced_precision=cpu_reduced)
    D = D.train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    opt_G = torch.optim.Adam(G.parameters(), lr=0.0, betas=(0.0, 0.99), eps=1e-8)  # lr and betas: set_lr()
    opt_D = torch.optim.Adam(D.parameters(), lr=0.0, betas=(0.0, 0.99), eps=1e-8)
    state = TrainState(plan, cfg, G, D, G_ema, opt_G, opt_D, torch.zeros([], device=device))
    state.set_lr()
    return state


# ----------------------------------------------------------------------------
# Checkpoint form.


def save_state(state: TrainState, path: Path) -> None:
    if state.augment_ctrl is not None:
        state.extra["ada"] = state.augment_ctrl.state_dict()
    g_opt, g_opt_meta = ck.optimizer_to_tensors(state.opt_G)
    d_opt, d_opt_meta = ck.optimizer_to_tensors(state.opt_D)
    tensors = ck.join(
        G=state.G.state_dict(),
        D=state.D.state_dict(),
        G_ema=state.G_ema.state_dict(),
        opt_G=g_opt,
        opt_D=d_opt,
        loss={"pl_mean": state.pl_mean},
    )
    meta = {
        "kind": "training",
        "plan": state.plan.to_dict(),
        "config": state.cfg.to_dict(),
        "cur_nimg": state.cur_nimg,
        "kimg": state.cur_nimg / 1000,
        "batch_idx": state.batch_idx,
        "lr_scale": state.lr_scale,
        "failures": state.failures,
        "opt_G": g_opt_meta,
        "opt_D": d_opt_meta,
        "extra": state.extra,
    }
    ck.save_checkpoint(path, tensors, meta)


def load_state(state: TrainState, path: Path) -> None:
    """Restore a training checkpoint into `state` (networks must match the checkpoint's Plan)."""
    contents = check.inspect_file(path)
    meta = contents.file.meta
    if contents.kind != "training":
        raise ck.CheckpointError(
            f"{path} is an inference export, not a training checkpoint: it cannot be resumed; "
            f"start a new run from it with --init {path}"
        )
    rep = compare_plans(contents.plan, state.plan)
    if not rep.ok:
        raise ck.CheckpointError(f"cannot resume from {path}: {rep}")
    tensors = contents.file.read()
    for name in ("G", "D", "G_ema"):
        check.load_into(getattr(state, name), ck.split(tensors, name), f"{name} in {path}")
    try:
        ck.optimizer_from_tensors(state.opt_G, ck.split(tensors, "opt_G"), meta["opt_G"])
        ck.optimizer_from_tensors(state.opt_D, ck.split(tensors, "opt_D"), meta["opt_D"])
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise ck.CheckpointError(
            f"{path}: its optimizer state does not fit this model ({e}): the file is damaged "
            f"or from another model; resume from an earlier checkpoint"
        ) from None
    state.pl_mean.copy_(tensors["loss.pl_mean"])
    state.cur_nimg, state.batch_idx = meta["cur_nimg"], meta["batch_idx"]
    state.lr_scale, state.failures = float(meta["lr_scale"]), meta["failures"]
    state.extra = dict(meta.get("extra", {}))
    if state.augment_ctrl is not None and "ada" in state.extra:
        try:
            state.augment_ctrl.load_state_dict(state.extra["ada"])
        except (KeyError, ValueError, TypeError) as e:
            raise ck.CheckpointError(f"{path}: its ADA state is malformed ({e}): the file is damaged") from None
    state.set_lr()


def weights_finite(state: TrainState) -> bool:
    """One reduction per network (a single CPU-GPU sync)."""
    total = sum(p.detach().float().abs().sum() for p in state.G.parameters())
    total = total + sum(p.detach().float().abs().sum() for p in state.D.parameters())
    return bool(torch.isfinite(total))
