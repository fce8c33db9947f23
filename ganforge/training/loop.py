"""The training loop: one function, comment-headed stages, counting images shown to D (cur_nimg).

Every step reseeds from (seed, rank, step, failures), and the data order is a pure function of
(seed, step), so a resumed run repeats exactly what a straight run would have done.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

from ganforge import distributed as dist_utils
from ganforge.modelio import check
from ganforge.modelio import checkpoint as ck
from ganforge.plan import Plan, PlanError
from ganforge.training.config import TrainConfig, filled, require_gamma, with_preset
from ganforge.training.ema import ema_beta, update_ema
from ganforge.training.freeze import FreezePlan, apply_freeze, drop_frozen_grads, parse_specs
from ganforge.training.loss import Report, StyleGAN2Loss, blur_sigma
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
    Phase,
    TrainState,
    build_state,
    check_resumable,
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
    """One phase's gradients from `rounds` equal slices of (real, real_c, z, c), each with the full `gain`: the
    gradients are summed over the slices, as the official loop does (each slice's loss is a mean over its
    samples, so `rounds` slices give `rounds` × the gradient of one pass over the whole batch; Adam is nearly
    invariant to that scale). Under DDP the gradients are reduced once, after the last slice."""
    real, real_c, z, c = batch
    slices = zip(real.chunk(rounds), real_c.chunk(rounds), z.chunk(rounds), c.chunk(rounds), strict=True)
    for k, (real_k, real_c_k, z_k, c_k) in enumerate(slices):
        last = k == rounds - 1
        no_sync = getattr(trainee, "no_sync", None)  # DDP: reduce the gradients after the last slice only.
        with contextlib.nullcontext() if last or no_sync is None else no_sync():
            loss.accumulate(phase, real_k, real_c_k, z_k, c_k, gain=gain, report=report)


def train_step(
    state: TrainState,
    phases: list[Phase],
    reals: tuple[torch.Tensor, torch.Tensor],
    all_z: torch.Tensor,
    all_c: torch.Tensor,
    rounds: int = 1,
    frozen: dict[str, set[str]] | None = None,
    report: Report | None = None,
) -> None:
    """One training iteration, as the official loop runs it: every phase due at this step (`batch_idx` modulo
    its interval) zeroes its network's gradients, accumulates them over `rounds` slices with gain = interval
    (lazy regularization), replaces non-finite gradients and takes one Adam step; then G_ema moves towards G,
    the counters advance and ADA's p is adjusted every 4 iterations.

    `reals` is (images [N, C, H, W] in [-1, 1], labels [N, c_dim]); `all_z` [phases, N, z_dim] and `all_c`
    [phases, N, c_dim] are each phase's latents and labels; `frozen` names the parameters kept fixed per
    network ("G", "D").
    """
    loss, cfg = state.loss, state.cfg
    batch = filled(cfg.batch, "batch")
    for phase, z, c in zip(phases, all_z, all_c, strict=True):
        if state.batch_idx % phase.interval != 0:
            continue
        net, opt = (state.G, state.opt_G) if phase.net == "G" else (state.D, state.opt_D)
        keep = frozen.get(phase.net, set()) if frozen else set()
        opt.zero_grad(set_to_none=True)
        net.requires_grad_(True)
        apply_freeze(net, keep)
        trainee = loss.G_train if phase.net == "G" else loss.D_train
        accumulate_rounds(loss, phase.name, trainee, (*reals, z, c), rounds, phase.interval, report)
        net.requires_grad_(False)
        drop_frozen_grads(net, keep)
        for p in net.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt.step()
    beta = ema_beta(batch, state.cur_nimg, filled(cfg.ema_kimg, "ema_kimg"), cfg.ema_rampup or None)
    update_ema(state.G_ema, state.G, beta)
    state.cur_nimg += batch
    state.batch_idx += 1
    if state.ada is not None:
        state.ada.step(batch)


def precision_text(plan: Plan, device: torch.device, precision: str) -> str:
    """What the networks compute in, as build_state builds them for --precision (cpu_mixed_precision on CPUs)."""
    n = min(plan.num_fp16_res, plan.num_blocks - 1)
    if n <= 0 or not (device.type == "cuda" or cpu_mixed_precision(precision, device)):
        return "fp32"
    return f"{plan.fp16_dtype} in the top {n} resolution(s), fp32 weights"


def train(cfg: TrainConfig, dataset=None, log=print) -> TrainState:
    """Train until cfg.kimg; returns the final state (state.run_dir). `dataset` overrides cfg.data (tests)."""
    cfg = cfg.resolved()
    require_gamma(cfg)
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
    if resume_path is not None:
        check_resumable(resume_path, plan)  # A checkpoint of another model is refused before anything is written.
    check_memory(cfg, plan, batch_gpu, rounds, device)
    check_snapshot_metrics(cfg, plan)
    # Nothing was written before this line: a refused start leaves no run directory behind.
    changed = {}
    if dist.is_main:
        changed = create_run_dir(cfg, plan, run_dir, resume_path, skipped, log)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)

    # Networks, optimizers, augmentation, loss; resume.
    freeze = FreezePlan(tuple(freeze_specs), cfg.freeze_d, cfg.unfreeze_every, cfg.unfreeze_order)
    torch.manual_seed(cfg.seed)  # Same initial weights on every rank and for every rerun.
    state = build_state(plan, cfg, device, run_dir, freeze_active=freeze.active)
    if resume_path is not None:
        load_state(state, resume_path)
        log(f"Resuming from {resume_path} at {state.cur_nimg / 1000:.3f} kimg")
    elif cfg.init:
        init_weights(state, cfg.init)
        log(f"Initialized G, D and G_ema from {cfg.init}")
    frozen = freeze.frozen(state.G, state.D, state.kimg)
    loss = state.loss
    phases = make_phases(cfg, plan.family != "dcgan")
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
    metrics: SnapshotMetrics | None = None  # Built at the first snapshot that computes metrics.
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
        loss.r1_gamma, loss.G.style_mixing = state.schedule("gamma"), state.schedule("style_mixing")
        loss.blur_sigma = blur_sigma(
            state.cur_nimg, filled(cfg.blur_init_sigma, "blur_init_sigma"), cfg.blur_fade_kimg or 0
        )
        if state.ada is not None:
            state.ada.target = state.schedule("ada_target")
        if freeze.unfreeze_every and state.batch_idx % 16 == 0:
            now_frozen = freeze.frozen(state.G, state.D, state.kimg)
            if now_frozen != frozen and dist.is_main:
                log(
                    f"kimg {state.kimg:.2f}: {sum(map(len, now_frozen.values()))} parameter tensors frozen "
                    f"(was {sum(map(len, frozen.values()))})"
                )
            frozen = now_frozen

        # Run the phases (one optimizer step each), then G_ema, the counters and ADA's p.
        train_step(state, phases, (real, real_c), all_z, all_c, rounds, frozen, stats.report)
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
        if state.ada is not None:
            for name, value in state.ada.stats().items():
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
        if sinks is not None:  # The main process.
            log(progress_line(state, means, total_nimg, now - start_time, device))
            sinks.write(means, state.cur_nimg / 1000, now)
        tick_start_nimg, tick_start_time = state.cur_nimg, time.time()

        # Snapshot: sample grid + checkpoint (rank 0 writes); metrics (every rank computes its share).
        if state.cur_nimg >= next_snap or done:
            if dist.is_main:
                save_snapshot(state, run_dir, dataset, sinks, cfg)
            if cfg.metrics:
                metrics = metrics or SnapshotMetrics(cfg, device, run_dir)
                results = metrics(state.G_ema, ck.checkpoint_name(state.cur_nimg))
                from ganforge.metrics.registry import labelled

                results = {labelled(k, cfg.metrics_num_gen): v for k, v in results.items()}  # fid1k_full, not 50k.
                if dist.is_main and sinks is not None:
                    sinks.write({f"Metrics/{k}": v for k, v in results.items()}, state.kimg, time.time())
                    log("metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in results.items()))
            next_snap = (state.cur_nimg // int(cfg.snap * 1000) + 1) * int(cfg.snap * 1000)

    if sinks is not None:
        sinks.close()
    if dist.is_main:
        log(f"Done: {state.cur_nimg / 1000:.3f} kimg; checkpoints and samples in {run_dir}")
    return state


def check_snapshot_metrics(cfg: TrainConfig, plan: Plan) -> None:
    """Unknown --metrics names, and metrics this model's family cannot have (eqt50k_int on StyleGAN2), refused
    before the run starts rather than at its first snapshot."""
    if not cfg.metrics:
        return
    from ganforge.metrics.registry import check_families, check_names
    from ganforge.metrics.run import METRICS  # noqa: F401  (the import registers the metrics)

    names = [m.strip() for m in cfg.metrics.split(",") if m.strip()]
    check_names(names)
    check_families(names, plan.family)


class SnapshotMetrics:
    """Metrics of G_ema at each snapshot; the detectors and the real statistics are loaded once per run."""

    def __init__(self, cfg: TrainConfig, device: torch.device, run_dir: Path):
        from ganforge.metrics.features import MetricOptions

        self.names = [m.strip() for m in cfg.metrics.split(",") if m.strip()]
        self.run_dir = run_dir
        self.opts = MetricOptions(
            dataset_path=cfg.data,
            device=device,
            progress=False,
            num_gen=cfg.metrics_num_gen,
            detector_paths={"inception": cfg.detector_inception, "vgg16": cfg.detector_vgg},
        )

    def __call__(self, G_ema: torch.nn.Module, snapshot: str) -> dict[str, float]:
        from ganforge.metrics.run import snapshot_metrics

        return snapshot_metrics(G_ema, self.names, self.run_dir, snapshot, self.opts)


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
