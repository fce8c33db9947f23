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
import contextlib
import json
import resource
import time
from collections import defaultdict

import torch

from ganforge.nn import ops
from ganforge.plan import Plan, make_plan
from ganforge.train.config import TrainConfig
from ganforge.train.ema import ema_beta, update_ema
from ganforge.train.loss import GeneratorStep, StyleGAN2Loss
from ganforge.train.state import TrainState, build_state, make_phases


def peak_rss_gb() -> float:
    """High-water mark of this process's resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """ganforge's training iteration without data loading, logging or checkpoints (as train/loop.py runs it)."""

    def __init__(self, plan: Plan, cfg: TrainConfig, device: torch.device, use_compile: bool = False):
        self.plan, self.cfg, self.device, self.batch = plan, cfg, device, cfg.batch
        self.state: TrainState = build_state(plan, cfg, device)
        self.G_step = GeneratorStep(self.state.G, cfg.style_mixing)
        self.loss = StyleGAN2Loss(self.G_step, self.state.D, r1_gamma=cfg.gamma, pl_weight=cfg.pl_weight,
                                  pl_batch_shrink=cfg.pl_batch_shrink, pl_decay=cfg.pl_decay).to(device)
        if use_compile:
            self.state.G.synthesis = torch.compile(self.state.G.synthesis)
            self.state.D = torch.compile(self.state.D)
        self.phases = make_phases(cfg, True)
        self.real = torch.rand([self.batch, plan.img_channels, plan.height, plan.width], device=device) * 2 - 1
        self.c = torch.zeros([self.batch, 0], device=device)
        self.phase_seconds: dict[str, float] = defaultdict(float)

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
        update_ema(state.G_ema, state.G, ema_beta(self.batch, 10**6, self.cfg.ema_kimg, None))


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
    return {"iters": iters, "seconds": dt, "img_per_s": img_s, "sec_per_kimg": 1000 / img_s,
            "phase_seconds": dict(trainer.phase_seconds)}


def run(args) -> dict:
    device = torch.device(args.device)
    overrides = {"num_fp16_res": 0} if args.precision == "fp32" else {"fp16_dtype": args.precision}
    for name in ("cbase", "cmax", "mapping_layers", "z_dim", "w_dim"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    plan = make_plan(args.preset, args.resolution, **overrides)
    cfg = TrainConfig(preset=args.preset, batch=args.batch).resolved()
    torch.manual_seed(0)
    with ops.reference_ops() if args.ops == "reference" else contextlib.nullcontext():
        trainer = Trainer(plan, cfg, device, use_compile=args.compile)
        result = time_training(trainer, args.iters, args.warmup)
    return {
        "preset": args.preset, "resolution": plan.resolution_text, "channels": list(plan.channels),
        "batch": args.batch, "device": str(device), "ops": args.ops,
        "precision": args.precision if device.type == "cuda" else "fp32", "compile": args.compile, **result,
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
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"], help="GPU reduced precision")
    ap.add_argument("--ops", default="fast", choices=["fast", "reference"], help="ganforge fast paths or reference ops")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--iters", type=int, default=16, help="timed iterations (16 = one lazy-regularization cycle)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first (iteration 0 runs every phase)")
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
    print(f"{'preset':<10} {'res':>9} {'batch':>5} {'device':>6} {'ops':>9} {'prec':>5} {'img/s':>9} {'sec/kimg':>9} "
          f"{'peak mem':>14}")
    print(f"{r['preset']:<10} {r['resolution']:>9} {r['batch']:>5} {r['device']:>6} {r['ops']:>9} {r['precision']:>5} "
          f"{r['img_per_s']:>9.2f} {r['sec_per_kimg']:>9.1f} {mem:>14}")
    print("phase seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in r["phase_seconds"].items()))
    return r


if __name__ == "__main__":
    main()
