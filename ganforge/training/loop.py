"""The training loop: one function, comment-headed stages, counting images shown to D (cur_nimg).

Every step reseeds from (seed, rank, step, failures), and the data order is a pure function of
(seed, step), so a resumed run repeats exactly what a straight run would have done.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

from ganforge.augment import build_augment
from ganforge.modelio import check
from ganforge.modelio import checkpoint as ck
from ganforge.plan import Plan, PlanError
from ganforge.training import distributed as dist_utils
from ganforge.training.config import TrainConfig, with_preset
from ganforge.training.ema import ema_beta, update_ema
from ganforge.training.freeze import FreezePlan, apply_freeze, drop_frozen_grads, parse_specs
from ganforge.training.loss import GeneratorStep, Report, StyleGAN2Loss
from ganforge.training.preflight import (
    accumulation_rounds,
    check_freeze,
    check_memory,
    check_outdir,
    training_plan,
)
from ganforge.training.record import report_schedules, settings_lines
from ganforge.training.run import (
    TrainingDiverged,
    build_loader,
    create_run_dir,
    fake_labels,
    find_resume,
    log_event,
    open_dataset,
    progress_line,
    run_name,
    save_snapshot,
    step_seed,
)
from ganforge.training.state import (
    TrainState,
    build_state,
    cpu_mixed_precision,
    load_state,
    make_phases,
    weights_finite,
)
from ganforge.training.stats import Collector, Sinks


def accumulate_rounds(
    loss: StyleGAN2Loss,
    phase: str,
    trainee: torch.nn.Module,
    batch: tuple[torch.Tensor, ...],
    rounds: int,
    gain: float,
    report: Report | None = None,
) -> None:
    """One phase's gradients from `rounds` equal slices of (real, real_c, z, c), each weighted 1/rounds, so that
    they add up to the whole batch's (up to minibatch-std groups, which form within a slice). Under DDP the
    gradients are reduced once, after the last slice."""
    for k, part in enumerate(zip(*(t.chunk(rounds) for t in batch))):
        last = k == rounds - 1
        with contextlib.nullcontext() if last or not hasattr(trainee, "no_sync") else trainee.no_sync():
            loss.accumulate(phase, *part, gain=gain / rounds, report=report)


def precision_text(plan: Plan, device: torch.device, precision: str) -> str:
    """What the networks compute in, as build_state builds them for --precision (cpu_mixed_precision on CPUs)."""
    n = min(plan.num_fp16_res, plan.num_blocks - 1)
    if n <= 0 or not (device.type == "cuda" or cpu_mixed_precision(precision, device)):
        return "fp32"
    return f"{plan.fp16_dtype} in the top {n} resolution(s), fp32 weights"


def train(cfg: TrainConfig, dataset=None, log=print) -> TrainState:
    """Train until cfg.kimg; returns the final state (state.run_dir). `dataset` overrides cfg.data (tests)."""
    cfg = cfg.resolved()
    dist, device = dist_utils.init_distributed(cfg.device)
    return _train(cfg, dataset, log, dist, device)


def _train(cfg: TrainConfig, dataset, log, dist, device: torch.device) -> TrainState:
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    check_outdir(cfg)
    dataset = dataset if dataset is not None else open_dataset(cfg)
    cfg = with_preset(cfg, dataset.shape[1], dataset.shape[2], dist.world_size)
    c_dim = dataset.c_dim if cfg.cond else 0
    plan = training_plan(cfg, list(dataset.shape), c_dim, device)
    if cfg.batch % dist.world_size:
        raise PlanError(f"--batch {cfg.batch} must be a multiple of the number of processes ({dist.world_size})")
    batch_gpu = cfg.batch // dist.world_size
    rounds = accumulation_rounds(cfg, plan, batch_gpu)
    freeze_specs = parse_specs(cfg.freeze)
    check_freeze(cfg, plan, freeze_specs)
    run_dir = Path(cfg.outdir) / run_name(cfg, plan)
    resume_path, skipped = find_resume(cfg, run_dir)
    check_memory(cfg, plan, batch_gpu, rounds, device)
    # Nothing was written before this line: a refused start leaves no run directory behind.
    changed = {}
    if dist.is_main:
        changed = create_run_dir(cfg, plan, run_dir, resume_path, skipped, log)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)

    # Networks, optimizers, resume.
    torch.manual_seed(cfg.seed)  # Same initial weights on every rank and for every rerun.
    state = build_state(plan, cfg, device)
    state.run_dir = run_dir
    augment, state.augment_ctrl = build_augment(
        "none" if cfg.aug == "noaug" else cfg.aug,
        pipe=cfg.aug_pipe,
        p=cfg.aug_p,
        policy=cfg.diffaugment,
        target=state.schedule("ada_target"),
        speed_kimg=cfg.ada_kimg or (100.0 if cfg.init else 500.0),
    )
    if augment is not None:
        augment.to(device)
    if resume_path is not None:
        load_state(state, resume_path)
        log(f"Resuming from {resume_path} at {state.cur_nimg / 1000:.3f} kimg")
    elif cfg.init:
        init_weights(state, cfg.init)
        log(f"Initialized G, D and G_ema from {cfg.init}")
    freeze = FreezePlan(tuple(freeze_specs), cfg.freeze_d, cfg.unfreeze_every, cfg.unfreeze_order)
    frozen = freeze.frozen(state.G, state.D, state.kimg)
    G_step = GeneratorStep(state.G, state.schedule("style_mixing"))
    G_train, D_train = G_step, state.D
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        # DDP registers the parameters that require grad when it is built; phases toggle them later.
        unused = freeze.active  # Frozen parameters get no gradient.
        G_train = DDP(
            G_step.requires_grad_(True), device_ids=ids, broadcast_buffers=False, find_unused_parameters=unused
        )
        D_train = DDP(
            state.D.requires_grad_(True), device_ids=ids, broadcast_buffers=False, find_unused_parameters=unused
        )
        G_step.requires_grad_(False)
        state.D.requires_grad_(False)
    loss = StyleGAN2Loss(
        G_step,
        state.D,
        G_train,
        D_train,
        r1_gamma=state.schedule("gamma"),
        pl_weight=cfg.pl_weight,
        pl_batch_shrink=cfg.pl_batch_shrink,
        pl_decay=cfg.pl_decay,
        augment=augment,
        compile=cfg.compile,
    ).to(device)
    if state.augment_ctrl is not None:
        loss.real_logits_hook = state.augment_ctrl.accumulate
    loss.pl_mean.copy_(state.pl_mean)
    state.pl_mean = loss.pl_mean
    phases = make_phases(cfg, plan.family == "stylegan2")
    stats, sinks = Collector(), (Sinks(run_dir, cfg.tensorboard) if dist.is_main else None)
    loader = build_loader(dataset, cfg, batch_gpu, dist, start_step=state.batch_idx)
    total_nimg = int(cfg.kimg * 1000)
    if dist.is_main:
        log(f"Run directory: {run_dir}")
        log(f"Training on {device} ({dist.world_size} process(es))")
        for line in settings_lines(
            cfg, plan, batch_gpu, rounds, dist.world_size, precision_text(plan, device, cfg.precision), frozen, changed
        ):
            log(line)
        if state.cur_nimg == 0 and not ck.list_checkpoints(run_dir):
            save_snapshot(state, run_dir, dataset, sinks, cfg)
    tick_start_nimg, tick_start_time, start_time = state.cur_nimg, time.time(), time.time()
    data_wait = 0.0  # Seconds spent in next(loader) during this tick.
    next_snap = (state.cur_nimg // int(cfg.snap * 1000) + 1) * int(cfg.snap * 1000)

    while state.cur_nimg < total_nimg:
        # Fetch data and latents; seed the step.
        torch.manual_seed(step_seed(cfg.seed, dist.rank, state.batch_idx, state.failures))
        t_fetch = time.perf_counter()
        real, real_c = next(loader)
        data_wait += time.perf_counter() - t_fetch
        real = real.to(device, non_blocking=True).to(torch.float32) / 127.5 - 1
        real_c = real_c.to(device)[:, :c_dim] if c_dim else torch.zeros([real.shape[0], 0], device=device)
        all_z = torch.randn([len(phases), batch_gpu, plan.z_dim], device=device)
        all_c = fake_labels(dataset, len(phases) * batch_gpu, c_dim, device).reshape(len(phases), batch_gpu, -1)

        # Schedules by kimg; gradual unfreezing.
        state.set_lr()
        loss.r1_gamma, G_step.style_mixing = state.schedule("gamma"), state.schedule("style_mixing")
        if state.augment_ctrl is not None:
            state.augment_ctrl.target = state.schedule("ada_target")
        if freeze.unfreeze_every and state.batch_idx % 16 == 0:
            now_frozen = freeze.frozen(state.G, state.D, state.kimg)
            if now_frozen != frozen and dist.is_main:
                log(
                    f"kimg {state.kimg:.2f}: {sum(map(len, now_frozen.values()))} parameter tensors frozen "
                    f"(was {sum(map(len, frozen.values()))})"
                )
            frozen = now_frozen

        # Run the phases: one optimizer step each, lazy regularization with gain = interval.
        for phase, z, c in zip(phases, all_z, all_c, strict=True):
            if state.batch_idx % phase.interval != 0:
                continue
            net, opt = (state.G, state.opt_G) if phase.net == "G" else (state.D, state.opt_D)
            opt.zero_grad(set_to_none=True)
            net.requires_grad_(True)
            apply_freeze(net, frozen[phase.net])
            accumulate_rounds(
                loss,
                phase.name,
                G_train if phase.net == "G" else D_train,
                (real, real_c, z, c),
                rounds,
                phase.interval,
                stats.report,
            )
            net.requires_grad_(False)
            drop_frozen_grads(net, frozen[phase.net])
            for p in net.parameters():
                if p.grad is not None:
                    torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            opt.step()

        # EMA and counters.
        update_ema(state.G_ema, state.G, ema_beta(cfg.batch, state.cur_nimg, cfg.ema_kimg, cfg.ema_rampup or None))
        state.cur_nimg += cfg.batch
        state.batch_idx += 1
        done = state.cur_nimg >= total_nimg
        if state.cur_nimg < tick_start_nimg + cfg.tick * 1000 and not done:
            continue

        # Tick: statistics, progress, divergence guard.
        now = time.time()
        tick_kimg = (state.cur_nimg - tick_start_nimg) / 1000
        stats.report("Timing/sec_per_kimg", (now - tick_start_time) / max(tick_kimg, 1e-8))
        # Share of the tick spent waiting for the loader: near 0 when data loading keeps up with the step.
        stats.report("Timing/data_wait_pct", 100 * data_wait / max(now - tick_start_time, 1e-8))
        report_schedules(stats.report, state, frozen)
        data_wait = 0.0
        if device.type == "cuda":
            stats.report("Resources/peak_gpu_mem_gb", torch.cuda.max_memory_allocated(device) / 2**30)
            torch.cuda.reset_peak_memory_stats(device)
        if state.augment_ctrl is not None:
            for name, value in state.augment_ctrl.stats().items():
                stats.report(name, value)
        means = stats.means()
        diverged = dist_utils.any_rank(
            not weights_finite(state)
            or not all(v == v and abs(v) != float("inf") for k, v in means.items() if k.startswith("Loss/")),
            device,
        )
        if diverged:
            _roll_back(state, run_dir, cfg, means, sinks, log, device)
            loader = build_loader(dataset, cfg, batch_gpu, dist, start_step=state.batch_idx)
            tick_start_nimg, tick_start_time = state.cur_nimg, time.time()
            next_snap = (state.cur_nimg // int(cfg.snap * 1000) + 1) * int(cfg.snap * 1000)
            continue
        if dist.is_main:
            log(progress_line(state, means, total_nimg, now - start_time, device))
            sinks.write(means, state.cur_nimg / 1000, now)
        tick_start_nimg, tick_start_time = state.cur_nimg, time.time()

        # Snapshot: sample grid + checkpoint (rank 0 writes); metrics (every rank computes its share).
        if state.cur_nimg >= next_snap or done:
            if dist.is_main:
                save_snapshot(state, run_dir, dataset, sinks, cfg)
            if cfg.metrics:
                results = snapshot_metrics_for(state, cfg, device, ck.checkpoint_name(state.cur_nimg))
                if dist.is_main and sinks is not None:
                    sinks.write({f"Metrics/{k}": v for k, v in results.items()}, state.kimg, time.time())
                    log("metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in results.items()))
            next_snap = (state.cur_nimg // int(cfg.snap * 1000) + 1) * int(cfg.snap * 1000)

    if sinks is not None:
        sinks.close()
    if dist.is_main:
        log(f"Done: {state.cur_nimg / 1000:.3f} kimg; checkpoints and samples in {run_dir}")
    return state


def snapshot_metrics_for(state: TrainState, cfg: TrainConfig, device: torch.device, snapshot: str) -> dict:
    """Metrics of G_ema at a snapshot; detectors and real statistics are loaded once per run."""
    from ganforge.metrics.features import MetricOptions
    from ganforge.metrics.run import snapshot_metrics

    if "metric_opts" not in state.extra_runtime:
        state.extra_runtime["metric_opts"] = MetricOptions(
            dataset_path=cfg.data,
            device=device,
            progress=False,
            num_gen=cfg.metrics_num_gen,
            detector_paths={"inception": cfg.detector_inception},
        )
    names = [m.strip() for m in cfg.metrics.split(",") if m.strip()]
    return snapshot_metrics(state.G_ema, names, state.run_dir, snapshot, state.extra_runtime["metric_opts"])


def init_weights(state: TrainState, path: str) -> None:
    """G, D, G_ema from a checkpoint (training or export) for a new run; optimizers start fresh."""
    tensors = check.inspect_file(path).file.read()
    for name in ("G", "D", "G_ema"):
        part = ck.split(tensors, name) or (ck.split(tensors, "G") if name == "G_ema" else {})
        if part:
            check.load_into(getattr(state, name), part, f"{name} of --init {path}")
        elif name != "D":
            raise ck.CheckpointError(f"--init {path} holds no {name} weights: give a checkpoint with a generator")


def _roll_back(state: TrainState, run_dir: Path, cfg: TrainConfig, means: dict, sinks, log, device) -> None:
    """Restore the newest good checkpoint (verified, finite weights), lower the learning rate, count the failure
    (or give up, naming that checkpoint)."""
    failures = state.failures + 1
    bad = {k: v for k, v in means.items() if k.startswith("Loss/")}
    path, skipped = check.newest_good(run_dir)
    event = {
        "event": "divergence",
        "kimg": state.cur_nimg / 1000,
        "failures": failures,
        "losses": repr(bad),
        "restored": str(path.name) if path else None,
        "skipped": {p.name: why for p, why in skipped},
    }
    if sinks is not None:
        log_event(run_dir, event)
    if failures > cfg.max_failures or path is None:
        last = f"the last good checkpoint is {path}" if path else f"no good checkpoint is left in {run_dir}"
        raise TrainingDiverged(
            f"training diverged {failures} time(s) (non-finite losses or weights at {state.cur_nimg / 1000:.3f} kimg); "
            f"{last}: lower --g-lr/--d-lr or raise --gamma, then resume from it"
        )
    lr_scale = state.lr_scale * cfg.rollback_lr_mult
    load_state(state, path)
    state.failures, state.lr_scale = failures, lr_scale
    state.set_lr()
    log(
        f"Divergence at kimg {event['kimg']:.3f} ({failures}/{cfg.max_failures}): restored {path.name}, "
        f"learning rates x{lr_scale:g}"
    )
