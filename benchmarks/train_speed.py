"""Training speed: img/s, sec/kimg and peak memory of full training iterations.

Each iteration runs every phase as the loop does (G main, D main, lazy R1 every 16, lazy path
length every 4, style mixing, EMA, optimizer steps) on random "real" images.

    python benchmarks/train_speed.py --preset tiny --resolution 32 --batch 16 --device cpu
    python benchmarks/train_speed.py --preset paper256 --resolution 256 --batch 64 --device cuda --json
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from ganforge.plan import make_plan
from ganforge.train.config import TrainConfig
from ganforge.train.ema import ema_beta, update_ema
from ganforge.train.loss import GeneratorStep, StyleGAN2Loss
from ganforge.train.state import build_state, make_phases


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def run(args) -> dict:
    device = torch.device(args.device)
    overrides = {"num_fp16_res": 0} if args.precision == "fp32" else {"fp16_dtype": args.precision}
    plan = make_plan(args.preset, args.resolution, **overrides)
    cfg = TrainConfig(preset=args.preset, batch=args.batch).resolved()
    torch.manual_seed(0)
    state = build_state(plan, cfg, device)
    G_step = GeneratorStep(state.G, cfg.style_mixing)
    loss = StyleGAN2Loss(G_step, state.D, r1_gamma=cfg.gamma, pl_weight=cfg.pl_weight).to(device)
    if args.compile:
        state.G.synthesis = torch.compile(state.G.synthesis)
        state.D = torch.compile(state.D)
    phases = make_phases(cfg, True)
    real = torch.rand([args.batch, 3, plan.height, plan.width], device=device) * 2 - 1
    c = torch.zeros([args.batch, 0], device=device)

    def step(i: int) -> None:
        for phase in phases:
            if i % phase.interval:
                continue
            net, opt = (state.G, state.opt_G) if phase.net == "G" else (state.D, state.opt_D)
            opt.zero_grad(set_to_none=True)
            net.requires_grad_(True)
            loss.accumulate(phase.name, real, c, torch.randn([args.batch, plan.z_dim], device=device), c,
                            gain=phase.interval)
            net.requires_grad_(False)
            opt.step()
        update_ema(state.G_ema, state.G, ema_beta(args.batch, 10**6, cfg.ema_kimg, None))

    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(args.iters):
        step(i)  # 16 iterations cover every lazy phase once.
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    img_s = args.iters * args.batch / dt
    return {
        "preset": args.preset, "resolution": plan.resolution_text, "batch": args.batch, "device": str(device),
        "precision": args.precision if device.type == "cuda" else "fp32", "compile": args.compile, "iters": args.iters,
        "img_per_s": img_s, "sec_per_kimg": 1000 / img_s,
        "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        "peak_rss_gb": peak_rss_gb(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--resolution", default="32")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--iters", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    r = run(args)
    if args.json:
        print(json.dumps(r))
        return
    gpu = r["peak_gpu_mem_gb"]
    mem = f"{gpu:.2f} GB GPU" if gpu is not None else f"{r['peak_rss_gb']:.2f} GB RSS"
    print(f"{'preset':<10} {'res':>9} {'batch':>5} {'device':>6} {'prec':>5} {'img/s':>9} {'sec/kimg':>9} "
          f"{'peak mem':>14}")
    print(f"{r['preset']:<10} {r['resolution']:>9} {r['batch']:>5} {r['device']:>6} {r['precision']:>5} "
          f"{r['img_per_s']:>9.1f} {r['sec_per_kimg']:>9.1f} {mem:>14}")


if __name__ == "__main__":
    main()
