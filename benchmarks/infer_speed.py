"""Generator inference speed: img/s and peak memory per batch size (G_ema forward, const noise).

Batch sizes double from --min-batch up to --max-batch, or up to the largest that fits: on GPUs until
an out-of-memory error, on CPUs while the measured peak, scaled to the next batch, stays under
--mem-fraction of the memory available at the start. On CPUs every batch size runs in its own
subprocess, so each peak RSS is that batch size's own high-water mark (--in-process: one process,
monotone peaks).

    python benchmarks/infer_speed.py --preset paper256 --resolution 256 --cbase 4096 --cmax 256 --device cpu
    python benchmarks/infer_speed.py --preset config-f --resolution 1024 --device cuda --max-batch 64 --json
    python benchmarks/infer_speed.py --preset tiny --resolution 32 --iters 2 --max-batch 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from ganforge import build_generator
from ganforge.nn.compile import compiled
from ganforge.plan import make_plan
from ganforge.resources import available_ram_bytes, peak_rss_gb


def available_gb() -> float:
    """Free RAM in GiB (infinity where the system does not say)."""
    free = available_ram_bytes()
    return float("inf") if free is None else free / 2**30


def make_plan_from(args):
    overrides = {}
    for name in ("cbase", "cmax", "mapping_layers"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.precision == "fp32":
        overrides["num_fp16_res"] = 0
    else:
        overrides["fp16_dtype"] = args.precision
    return make_plan(args.preset, args.resolution, **overrides)


@torch.no_grad()
def measure(args, batch: int) -> dict:
    """img/s of G(z, noise_mode='const') at one batch size, in this process."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    # Reduced precision on CPUs is opt-in for inference: --precision bf16|fp16 asks for it.
    G = build_generator(make_plan_from(args), cpu_reduced_precision=args.precision != "fp32", ops=args.ops)
    G = G.eval().requires_grad_(False).to(device)
    G = compiled(G, args.compile)  # Compiling happens in the warm-up call, outside the timing.
    z = torch.randn([batch, G.z_dim], device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.warmup):
        G(z, None, noise_mode="const")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(args.iters):
        G(z, None, noise_mode="const")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    gpu = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "batch": batch,
        "img_per_s": args.iters * batch / dt,
        "ms_per_img": 1000 * dt / (args.iters * batch),
        "peak_gpu_mem_gb": gpu,
        "peak_rss_gb": peak_rss_gb(),
    }


def measure_in_subprocess(args, batch: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(batch), *args.argv]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return {"batch": batch, "error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    plan = make_plan_from(args)
    rows, batch, budget = [], args.min_batch, available_gb() * args.mem_fraction
    while batch <= args.max_batch:
        if args.device.startswith("cuda") or args.in_process:
            try:
                row = measure(args, batch)
            except torch.cuda.OutOfMemoryError as e:
                rows.append({"batch": batch, "error": f"out of memory: {str(e).splitlines()[0]}"})
                break
        else:
            row = measure_in_subprocess(args, batch)
        rows.append(row)
        if "error" in row:
            break
        if row["peak_gpu_mem_gb"] is None and row["peak_rss_gb"] * 2 > budget:
            break  # The next batch size would not fit in the memory available.
        batch *= 2
    ok = [r for r in rows if "error" not in r]
    best = max(ok, key=lambda r: r["img_per_s"]) if ok else None
    return {
        "preset": args.preset,
        "resolution": plan.resolution_text,
        "channels": list(plan.channels),
        "device": args.device,
        "ops": args.ops,
        "precision": args.precision,
        "compile": args.compile,
        "iters": args.iters,
        "threads": torch.get_num_threads(),
        "rows": rows,
        "best": best,
        "largest_batch": ok[-1]["batch"] if ok else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--resolution", default="64")
    ap.add_argument("--cbase", type=int, default=None)
    ap.add_argument("--cmax", type=int, default=None)
    ap.add_argument("--mapping-layers", dest="mapping_layers", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="reduced precision for the plan's top num_fp16_res blocks (on CPUs: opt-in)",
    )
    ap.add_argument("--ops", default="fast", choices=["fast", "reference"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the generator (eager fallback)")
    ap.add_argument("--min-batch", type=int, default=1)
    ap.add_argument("--max-batch", type=int, default=64, help="cap on the batch size")
    ap.add_argument("--mem-fraction", type=float, default=0.8, help="CPU: stop before this share of free memory")
    ap.add_argument("--iters", type=int, default=5, help="timed batches per batch size")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--in-process", action="store_true", help="CPU: measure every batch size in this process")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    raw = list(sys.argv[1:] if argv is None else argv)
    if "--worker" in raw:
        i = raw.index("--worker")
        raw = raw[:i] + raw[i + 2 :]
    args.argv = raw
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.worker is not None:
        r = measure(args, args.worker)
        print(json.dumps(r))
        return r
    r = run(args)
    if args.json:
        print(json.dumps(r))
        return r
    print(
        f"G inference, {r['preset']} at {r['resolution']} (channels {r['channels']}), {r['device']}, "
        f"{r['precision']}, ops {r['ops']}, {r['threads']} threads, const noise"
    )
    print(f"{'batch':>6} {'img/s':>9} {'ms/img':>9} {'peak mem':>14}")
    for row in r["rows"]:
        if "error" in row:
            print(f"{row['batch']:>6} {row['error']}")
            continue
        gpu = row["peak_gpu_mem_gb"]
        mem = f"{gpu:.2f} GB GPU" if gpu is not None else f"{row['peak_rss_gb']:.2f} GB RSS"
        print(f"{row['batch']:>6} {row['img_per_s']:>9.2f} {row['ms_per_img']:>9.1f} {mem:>14}")
    return r


if __name__ == "__main__":
    main()
