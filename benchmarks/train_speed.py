"""Training speed: img/s, sec/kimg and peak memory of full training iterations.

Each iteration runs every phase as the loop does (G main, D main, lazy R1 every 16, lazy path
length every 4, style mixing, non-finite gradient scrubbing, Adam steps, EMA) on random "real"
images held in memory. With the default --warmup 1 --iters 16, the timed iterations 1..16 are one
whole lazy-regularization cycle (16 Gmain, 4 Greg, 16 Dmain, 1 Dreg).

    python benchmarks/train_speed.py --preset tiny --resolution 32 --batch 16 --device cpu
    python benchmarks/train_speed.py --preset paper256 --resolution 32 --cbase 4096 --cmax 256 --ops reference
    python benchmarks/train_speed.py --preset paper256 --resolution 256 --batch 64 --device cuda --json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import torch

from ganforge.augment import build_augment
from ganforge.nn.numerics import set_numerics
from ganforge.plan import Plan, make_plan
from ganforge.resources import peak_rss_gb
from ganforge.training.config import TrainConfig, with_preset
from ganforge.training.ema import ema_beta, update_ema
from ganforge.training.loss import GeneratorStep, StyleGAN2Loss
from ganforge.training.state import TrainState, build_state, cpu_mixed_precision, make_phases


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """ganforge's training iteration without data loading, logging or checkpoints (as train/loop.py runs it).

    The networks compute as `ganforge train` builds them for cfg.precision; ops="reference" switches them
    (and only them) to the reference ops.
    """

    def __init__(
        self,
        plan: Plan,
        cfg: TrainConfig,
        device: torch.device,
        use_compile: bool = False,
        augment: str = "none",
        ada_p: float = 0.2,
        ops: str = "fast",
    ):
        self.plan, self.cfg, self.device, self.batch = plan, cfg, device, cfg.batch
        self.state: TrainState = build_state(plan, cfg, device)
        for net in (self.state.G, self.state.D, self.state.G_ema):
            set_numerics(net, ops=ops)
        self.G_step = GeneratorStep(self.state.G, cfg.style_mixing, sg3=plan.is_sg3)
        # ADA on: the official 'bgc' pipeline at a fixed p (the adaptive controller only moves p).
        pipe, _ = build_augment("fixed" if augment == "ada" else "none", pipe="bgc", p=ada_p)
        self.loss = StyleGAN2Loss(
            self.G_step,
            self.state.D,
            r1_gamma=cfg.gamma,
            pl_weight=cfg.pl_weight,
            pl_batch_shrink=cfg.pl_batch_shrink,
            pl_decay=cfg.pl_decay,
            augment=pipe.to(device) if pipe is not None else None,
            compile=use_compile,
        )
        self.phases = make_phases(cfg, True)
        self.real = torch.rand([self.batch, plan.img_channels, plan.height, plan.width], device=device) * 2 - 1
        self.c = torch.zeros([self.batch, 0], device=device)
        self.phase_seconds: dict[str, float] = defaultdict(float)
        self.phase_runs: dict[str, int] = defaultdict(int)
        self.intervals = {phase.name: phase.interval for phase in self.phases} | {"ema": 1}

    def step(self, i: int) -> None:
        state = self.state
        for phase in self.phases:
            if i % phase.interval:
                continue
            t0 = time.perf_counter()
            net, opt = (state.G, state.opt_G) if phase.net == "G" else (state.D, state.opt_D)
            opt.zero_grad(set_to_none=True)
            net.requires_grad_(True)
            z = torch.randn([self.batch, self.plan.z_dim], device=self.device)
            with torch.profiler.record_function(phase.name):
                self.loss.accumulate(phase.name, self.real, self.c, z, self.c, gain=phase.interval)
            net.requires_grad_(False)
            for p in net.parameters():
                if p.grad is not None:
                    torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            opt.step()
            sync(self.device)
            self.phase_seconds[phase.name] += time.perf_counter() - t0
            self.phase_runs[phase.name] += 1
        t0 = time.perf_counter()
        update_ema(state.G_ema, state.G, ema_beta(self.batch, 10**6, self.cfg.ema_kimg, None))
        sync(self.device)
        self.phase_seconds["ema"] += time.perf_counter() - t0
        self.phase_runs["ema"] += 1


def time_sampled_cycle(trainer, reps: int = 1) -> dict:
    """Seconds of one lazy-regularization cycle, composed from timed phases: Σ_phase mean seconds × cycle / interval.

    Iteration 0 runs untimed (first-call costs); then iterations cycle·1 … cycle·reps, each of which runs every
    phase once, are timed. With intervals Gmain 1, Greg 4, Dmain 1, Dreg 16 (and the EMA every iteration), the
    cycle is 16 iterations: 16 Gmain + 4 Greg + 16 Dmain + 1 Dreg + 16 EMA updates. `trainer` needs step(i),
    batch, device and the phase_seconds / phase_runs / intervals dicts.
    """
    cycle = max(trainer.intervals.values())
    trainer.step(0)
    sync(trainer.device)
    trainer.phase_seconds.clear()
    trainer.phase_runs.clear()
    t0 = time.perf_counter()
    for r in range(1, reps + 1):
        trainer.step(cycle * r)
    wall = time.perf_counter() - t0
    mean = {k: trainer.phase_seconds[k] / trainer.phase_runs[k] for k in trainer.phase_runs}
    seconds = sum(mean[k] * cycle / trainer.intervals[k] for k in mean)
    img_s = cycle * trainer.batch / seconds
    return {
        "iters": cycle,
        "seconds": seconds,
        "img_per_s": img_s,
        "sec_per_kimg": 1000 / img_s,
        "phase_seconds": mean,
        "timed_wall_seconds": wall,
        "mode": f"sampled cycle ({reps} rep(s))",
    }


def time_training(trainer: Trainer, iters: int, warmup: int) -> dict:
    """Run `warmup` untimed iterations, then `iters` timed ones; img/s over the timed ones."""
    for i in range(warmup):
        trainer.step(i)
    sync(trainer.device)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.phase_seconds.clear()
    t0 = time.perf_counter()
    for i in range(warmup, warmup + iters):
        trainer.step(i)
    sync(trainer.device)
    dt = time.perf_counter() - t0
    img_s = iters * trainer.batch / dt
    return {
        "iters": iters,
        "seconds": dt,
        "img_per_s": img_s,
        "sec_per_kimg": 1000 / img_s,
        "phase_seconds": dict(trainer.phase_seconds),
        "mode": "consecutive iterations",
    }


def effective_precision(precision: str, device: torch.device, plan: Plan) -> str:
    """What `ganforge train --precision P` runs on this device: 'fp32', or the reduced dtype of the top blocks."""
    if plan.num_fp16_res == 0 or precision == "fp32":
        return "fp32"
    if device.type == "cpu":
        return plan.fp16_dtype if cpu_mixed_precision(precision, device) else "fp32"
    return plan.fp16_dtype


def build_plan(args) -> Plan:
    overrides = {"num_fp16_res": 0} if args.precision == "fp32" else {}
    if args.precision in ("bf16", "fp16"):
        overrides["fp16_dtype"] = args.precision
    elif args.precision == "auto" and args.device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        overrides["fp16_dtype"] = "fp16"
    for name in ("cbase", "cmax", "mapping_layers", "z_dim", "w_dim"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    return make_plan(args.preset, args.resolution, **overrides)


def run(args) -> dict:
    device = torch.device(args.device)
    plan = build_plan(args)
    precision = effective_precision(args.precision, device, plan)
    cfg = TrainConfig(preset=args.preset, batch=args.batch, precision=args.precision).resolved()
    cfg = with_preset(cfg, plan.height, plan.width)
    torch.manual_seed(0)
    trainer = Trainer(plan, cfg, device, use_compile=args.compile, augment=args.augment, ada_p=args.ada_p, ops=args.ops)
    if args.sampled:
        result = time_sampled_cycle(trainer, args.sampled)
    else:
        result = time_training(trainer, args.iters, args.warmup)
    return {
        "preset": args.preset,
        "resolution": plan.resolution_text,
        "channels": list(plan.channels),
        "batch": args.batch,
        "device": str(device),
        "ops": args.ops,
        "precision": precision,
        "augment": args.augment,
        "compile": args.compile,
        **result,
        "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        "peak_rss_gb": peak_rss_gb(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--resolution", default="32")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--cbase", type=int, default=None, help="override the preset's channel base")
    ap.add_argument("--cmax", type=int, default=None, help="override the preset's channel cap")
    ap.add_argument("--mapping-layers", dest="mapping_layers", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "bf16", "fp16", "fp32"],
        help="as `ganforge train --precision`: auto = bf16 top resolutions on GPUs and on CPUs with bf16 "
        "instructions, else fp32",
    )
    ap.add_argument("--augment", default="none", choices=["none", "ada"], help="ADA off, or on (bgc at --ada-p)")
    ap.add_argument("--ada-p", dest="ada_p", type=float, default=0.2, help="augmentation probability with ADA on")
    ap.add_argument("--ops", default="fast", choices=["fast", "reference"], help="ganforge fast paths or reference ops")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--iters", type=int, default=16, help="timed iterations (16 = one lazy-regularization cycle)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first (iteration 0 runs every phase)")
    ap.add_argument(
        "--sampled",
        type=int,
        default=0,
        metavar="REPS",
        help="time each phase REPS times and compose one 16-iteration cycle from them (big models)",
    )
    ap.add_argument("--json", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    r = run(args)
    if args.json:
        print(json.dumps(r))
        return r
    gpu = r["peak_gpu_mem_gb"]
    mem = f"{gpu:.2f} GB GPU" if gpu is not None else f"{r['peak_rss_gb']:.2f} GB RSS"
    print(
        f"{'preset':<10} {'res':>9} {'batch':>5} {'device':>6} {'ops':>9} {'prec':>5} {'ADA':>4} {'img/s':>9} "
        f"{'sec/kimg':>9} {'peak mem':>14}"
    )
    print(
        f"{r['preset']:<10} {r['resolution']:>9} {r['batch']:>5} {r['device']:>6} {r['ops']:>9} {r['precision']:>5} "
        f"{'on' if r['augment'] == 'ada' else 'off':>4} {r['img_per_s']:>9.2f} {r['sec_per_kimg']:>9.1f} {mem:>14}"
    )
    print("phase seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in r["phase_seconds"].items()))
    return r


if __name__ == "__main__":
    main()
