"""Everything a run needs to continue: networks, optimizers, counters — and its checkpoint form."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch
from torch import nn

from ganforge import build_discriminator, build_generator
from ganforge.augment import AdaController, build_augment
from ganforge.distributed import data_parallel
from ganforge.modelio import check
from ganforge.modelio import checkpoint as ck
from ganforge.models.generator import cpu_has_native_bf16
from ganforge.plan import Plan
from ganforge.plan_compare import compare_plans
from ganforge.training.config import TrainConfig, filled
from ganforge.training.loss import GeneratorStep, StyleGAN2Loss
from ganforge.training.schedule import Schedule, parse_schedule


@dataclass(frozen=True)
class Phase:
    name: str  # Gmain | Greg | Dmain | Dreg.
    net: str  # G | D.
    interval: int  # Run every N steps (lazy regularization).


def make_phases(cfg: TrainConfig, stylegan: bool) -> list[Phase]:
    g_reg = stylegan and filled(cfg.pl_weight, "pl_weight") > 0
    gamma = cast("float | str", filled(cfg.gamma, "gamma"))  # mypy joins the union to object
    d_reg = max(v for _, v in parse_schedule(gamma).points) > 0
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
    """Everything a run needs to continue, all set when it is built (`build_state`); `save_state` writes it
    and `load_state` restores it."""

    plan: Plan
    cfg: TrainConfig  # With the preset's values filled in (`with_preset`).
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    loss: StyleGAN2Loss  # The phases; owns the path-length mean.
    ada: AdaController | None  # ADA's adaptive p (also given to the loss); None without ADA.
    run_dir: Path | None = None  # Where snapshots go; None for a state that is never saved (benchmarks).
    cur_nimg: int = 0
    batch_idx: int = 0
    lr_scale: float = 1.0  # Lowered by divergence rollbacks.
    failures: int = 0
    _schedules: dict[str, Schedule] = field(default_factory=dict, repr=False)

    @property
    def kimg(self) -> float:
        return self.cur_nimg / 1000

    def schedule(self, name: str) -> float:
        """The value of a (possibly scheduled) option at the current kimg."""
        if name not in self._schedules:
            self._schedules[name] = parse_schedule(getattr(self.cfg, name), name)
        return self._schedules[name](self.kimg)

    def set_lr(self) -> None:
        """Apply the scheduled learning rates × lr_scale × lazy-regularization ratios.

        With the StyleGAN2 loss the ratio is always applied, as in the official loop (its G_reg_interval 4 and
        D_reg_interval 16 stay set when path length or R1 is off, e.g. the cifar recipe), except G's for StyleGAN3
        models, whose official loop has no lazy G regularization unless path length is switched on. With the DCGAN loss
        (no lazy regularization) it applies only to a network whose regularizer was switched on.
        """
        official = self.cfg.loss == "stylegan2"
        g_reg = self.plan.family != "dcgan" and bool(filled(self.cfg.pl_weight, "pl_weight"))
        gamma = cast("float | str", filled(self.cfg.gamma, "gamma"))
        d_reg = max(v for _, v in parse_schedule(gamma).points) > 0
        betas = filled(self.cfg.beta1, "beta1"), filled(self.cfg.beta2, "beta2")
        # The official StyleGAN3 loop leaves G_reg_interval unset for its own configs: no G correction there.
        g_ratio = lazy_ratio(self.cfg.pl_interval, (official and not self.plan.is_sg3) or g_reg)
        d_ratio = lazy_ratio(self.cfg.r1_interval, official or d_reg)
        for opt, lr, ratio in (
            (self.opt_G, self.schedule("g_lr"), g_ratio),
            (self.opt_D, self.schedule("d_lr") * self.cfg.d_lr_mult, d_ratio),
        ):
            for group in opt.param_groups:
                group["lr"] = lr * ratio * self.lr_scale
                group["betas"] = (betas[0] ** ratio, betas[1] ** ratio)


def cpu_mixed_precision(precision: str, device: torch.device) -> bool:
    """Reduced precision for the Plan's top resolutions on a CPU: --precision auto where the CPU has bf16
    instructions, or an explicit bf16/fp16."""
    if device.type != "cpu":
        return False
    return precision in ("bf16", "fp16") or (precision == "auto" and cpu_has_native_bf16())


def build_state(
    plan: Plan,
    cfg: TrainConfig,
    device: torch.device,
    run_dir: Path | None = None,
    freeze_active: bool = False,
) -> TrainState:
    """A run at 0 kimg: G, D, G_ema (on `device`, in the precision `cfg.precision` gives), their Adam optimizers,
    the augmentation with ADA's controller, and the loss over them. Under torchrun the trained networks are
    wrapped for data parallelism (`freeze_active`: some parameters will get no gradient). Restore a checkpoint
    into it with `load_state`."""
    cpu_reduced = cpu_mixed_precision(cfg.precision, device)  # G_ema, a deep copy of G, computes as G.
    G = build_generator(plan, cpu_reduced_precision=cpu_reduced).train().requires_grad_(False).to(device)
    D = build_discriminator(plan, patch=cfg.patch_d, cpu_reduced_precision=cpu_reduced)
    D = D.train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    opt_G = torch.optim.Adam(G.parameters(), lr=0.0, betas=(0.0, 0.99), eps=1e-8)  # lr and betas: set_lr()
    opt_D = torch.optim.Adam(D.parameters(), lr=0.0, betas=(0.0, 0.99), eps=1e-8)
    at_start = {name: parse_schedule(getattr(cfg, name), name)(0.0) for name in ("style_mixing", "gamma", "ada_target")}
    augment, ada = build_augment(
        "none" if cfg.aug == "noaug" else filled(cfg.aug, "aug"),
        pipe=cfg.aug_pipe,
        p=cfg.aug_p,
        policy=cfg.diffaugment,
        target=at_start["ada_target"],
        speed_kimg=cfg.ada_kimg or (100.0 if cfg.init else 500.0),
    )
    if augment is not None:
        augment.to(device)
    G_step = GeneratorStep(G, at_start["style_mixing"], stylegan=plan.family != "dcgan", sg3=plan.is_sg3)
    loss = StyleGAN2Loss(
        G_step,
        D,
        data_parallel(G_step, device, find_unused=freeze_active),
        data_parallel(D, device, find_unused=freeze_active),
        augment=augment,
        ada=ada,
        r1_gamma=at_start["gamma"],
        pl_weight=filled(cfg.pl_weight, "pl_weight"),
        pl_batch_shrink=cfg.pl_batch_shrink,
        pl_decay=cfg.pl_decay,
        compile=cfg.compile,
    )
    state = TrainState(plan, cfg, G, D, G_ema, opt_G, opt_D, loss, ada, run_dir)
    state.set_lr()
    return state


# ----------------------------------------------------------------------------
# Checkpoint form.


def save_state(state: TrainState, path: Path) -> None:
    g_opt, g_opt_meta = ck.optimizer_to_tensors(state.opt_G)
    d_opt, d_opt_meta = ck.optimizer_to_tensors(state.opt_D)
    tensors = ck.join(
        G=state.G.state_dict(),
        D=state.D.state_dict(),
        G_ema=state.G_ema.state_dict(),
        opt_G=g_opt,
        opt_D=d_opt,
        loss=state.loss.state_dict(),
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
    }
    if state.ada is not None:
        meta["ada"] = state.ada.state_dict()
    ck.save_checkpoint(path, tensors, meta)


def check_resumable(path: Path, plan: Plan) -> check.Contents:
    """The checkpoint's checked contents when it can resume a run of `plan` (headers only, nothing is built);
    else a CheckpointError that says what to do instead (e.g. `ganforge transfer` for another resolution)."""
    contents = check.inspect_file(path)
    if contents.kind != "training":
        raise ck.CheckpointError(
            f"{path} is an inference export, not a training checkpoint: it cannot be resumed; "
            f"start a new run from it with --init {path}"
        )
    rep = compare_plans(contents.plan, plan, str(path))
    if not rep.ok:
        raise ck.CheckpointError(f"cannot resume from {path}: {rep}")
    return contents


def load_state(state: TrainState, path: Path) -> None:
    """Restore a training checkpoint into `state` (networks must match the checkpoint's Plan)."""
    contents = check_resumable(path, state.plan)
    meta = contents.file.meta
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
    try:
        state.loss.load_state_dict(ck.split(tensors, "loss"))
    except ValueError as e:
        raise ck.CheckpointError(f"{path}: {e}: the file is damaged") from None
    state.cur_nimg, state.batch_idx = meta["cur_nimg"], meta["batch_idx"]
    state.lr_scale, state.failures = float(meta["lr_scale"]), meta["failures"]
    ada = meta.get("ada", (meta.get("extra") or {}).get("ada"))  # Older checkpoints kept it under "extra".
    if state.ada is not None and ada is not None:
        try:
            state.ada.load_state_dict(ada)
        except (KeyError, ValueError, TypeError) as e:
            raise ck.CheckpointError(f"{path}: its ADA state is malformed ({e}): the file is damaged") from None
    state.set_lr()


def weights_finite(state: TrainState) -> bool:
    """One reduction per network (a single CPU-GPU sync)."""
    nets = (state.G, state.D)
    total = torch.stack([torch.stack([p.detach().float().abs().sum() for p in net.parameters()]).sum() for net in nets])
    return bool(torch.isfinite(total).all())
