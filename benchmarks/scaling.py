"""Scaling: time and peak memory per training iteration and per generated image, as the resolution grows
(config-f, 32 -> 1024) and as the capacity grows (config-f -> XXXL at 1024), next to the inspector's estimate.

Each measurement runs in its own subprocess (its peak RSS, or peak GPU memory, is its own). A row is
measured when its predicted time (the last measured row scaled by the ratio of multiply-adds) and its
estimated memory fit the limits; otherwise only the inspector's estimate is printed ('estimate').

Training: one iteration with every phase (G main, path length, D main, R1) after one untimed iteration;
seconds per iteration are cycle-weighted: Gmain + Dmain + Greg / 4 + Dreg / 16. Inference: G_ema forward,
const noise. Memory is the peak above the process's resident memory before the networks were built.

Inspector estimate (`ganforge inspect`, ganforge.inspector.memory_model): training = 30 bytes per G and D
parameter + 4 per G parameter (G_ema) + 112 MiB + batch x 2.8 x (G + D activation_bytes_per_image); inference =
4 bytes per G parameter + 112 MiB + batch x G activation_bytes_per_image.

    python -m benchmarks.scaling --device cpu                     # about 5 minutes on 2 CPU cores
    python -m benchmarks.scaling --device cuda --train-batch 8 --max-seconds 300 --json
    python -m benchmarks.scaling --quick --max-seconds 20         # tiny sweep: a smoke test
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from ganforge.resources import available_ram_bytes, peak_rss_gb, rss_gb

RESOLUTIONS = (32, 64, 128, 256, 512, 1024)
CAPACITIES = ("config-f", "M", "L", "XL", "XXL", "XXXL")


def available_gb() -> float:
    free = available_ram_bytes()
    return float("inf") if free is None else free / 2**30


# ----------------------------------------------------------------------------
# Estimates from the inspector.


def estimate(preset: str, res: int, train_batch: int, infer_batch: int) -> dict:
    from ganforge.inspector import estimate_peak_bytes, inspect_plan
    from ganforge.plan import make_plan

    info = inspect_plan(make_plan(preset, res))
    g, d = info["generator"], info["discriminator"]
    macs = 0  # Multiply-adds per image, G + D (weights x output pixels): the time predictor.
    for row in g["layers"] + d["layers"]:
        if len(row["output_shape"]) == 3:
            macs += row["params"] * row["output_shape"][1] * row["output_shape"][2]
        else:
            macs += row["params"]
    return {
        "params_G": g["params"],
        "params_D": d["params"],
        "act_G": g["activation_bytes_per_image"],
        "act_D": d["activation_bytes_per_image"],
        "train_gb": estimate_peak_bytes(info, "train", train_batch) / 2**30,
        "infer_gb": estimate_peak_bytes(info, "infer", infer_batch) / 2**30,
        "macs_per_image": macs,
    }


# ----------------------------------------------------------------------------
# Measurements (worker side).


def measure(spec: dict) -> dict:
    from benchmarks.train_speed import Trainer
    from ganforge import build_generator
    from ganforge.plan import make_plan
    from ganforge.training.config import TrainConfig, with_preset

    device = torch.device(spec["device"])
    base, t_start = rss_gb(), time.perf_counter()  # After the imports: the networks' memory only.
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    plan = make_plan(spec["preset"], spec["resolution"])
    torch.manual_seed(0)
    if spec["task"] == "train":
        cfg = with_preset(TrainConfig(preset=spec["preset"], batch=spec["batch"]).resolved(), plan.height, plan.width)
        trainer = Trainer(plan, cfg, device)
        trainer.step(0)  # Untimed: every phase once.
        trainer.phase_seconds.clear()
        trainer.step(0)
        ph = trainer.phase_seconds
        seconds = ph.get("Gmain", 0) + ph.get("Dmain", 0) + ph.get("Greg", 0) / 4 + ph.get("Dreg", 0) / 16
        out = {"seconds_per_iter": seconds, "phase_seconds": dict(ph)}
    else:
        G = build_generator(plan).eval().requires_grad_(False).to(device)
        z = torch.randn([spec["batch"], G.z_dim], device=device)
        with torch.no_grad():
            G(z, None, noise_mode="const")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            G(z, None, noise_mode="const")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        out = {"seconds_per_image": (time.perf_counter() - t0) / spec["batch"]}
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else peak_rss_gb() - base
    return {**out, "peak_gb": peak, "compute_seconds": time.perf_counter() - t_start}


def spawn(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.scaling", "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(
            cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit code {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------
# The sweep.


def rows_for(args) -> list[tuple[str, str, int]]:
    if args.quick:
        return [("resolution", "tiny", r) for r in (16, 32)] + [("capacity", p, 32) for p in ("tiny", "config-f")]
    resolutions = [int(r) for r in args.resolutions.split(",") if r]
    capacities = [p for p in args.capacities.split(",") if p and p != "none"]
    return [("resolution", "config-f", r) for r in resolutions] + [("capacity", p, 1024) for p in capacities]


def run(args) -> dict:
    results, last = [], {}
    for sweep, preset, res in rows_for(args):
        est = estimate(preset, res, args.train_batch, args.infer_batch)
        row = {"sweep": sweep, "preset": preset, "resolution": res, "estimate": est}
        for task, batch, mem_key in (("train", args.train_batch, "train_gb"), ("infer", args.infer_batch, "infer_gb")):
            predicted = None
            if task in last:
                ref_time, ref_macs = last[task]
                predicted = ref_time * est["macs_per_image"] / ref_macs
            fits = est[mem_key] * args.mem_margin < available_gb() * args.mem_fraction
            if not fits or (predicted is not None and predicted > args.max_seconds):
                why = "memory" if not fits else f"predicted {predicted:.0f} s > --max-seconds"
                row[task] = {"measured": False, "why": why, "predicted_seconds": predicted}
                continue
            spec = dict(task=task, preset=preset, resolution=res, batch=batch, device=args.device)
            t0 = time.perf_counter()
            m = spawn(spec, timeout=max(3 * args.max_seconds, 60))
            wall = time.perf_counter() - t0
            m.update(measured="error" not in m, wall_seconds=wall)
            if m["measured"]:
                m["ratio_to_estimate"] = m["peak_gb"] / est[mem_key]
                last[task] = (m["compute_seconds"], est["macs_per_image"])
            row[task] = m
            print(f"{sweep} {preset} {res} {task}: {wall:.1f} s", file=sys.stderr, flush=True)
        results.append(row)
    ratios = [r[t]["ratio_to_estimate"] for r in results for t in ("train", "infer") if r[t].get("measured")]
    return {
        "device": args.device,
        "train_batch": args.train_batch,
        "infer_batch": args.infer_batch,
        "threads": torch.get_num_threads(),
        "rows": results,
        "measured_to_estimate": {"min": min(ratios), "max": max(ratios)} if ratios else None,
    }


def print_table(r: dict) -> None:
    print(
        f"Scaling on {r['device']} ({r['threads']} threads): training batch {r['train_batch']} "
        f"(s/iteration, cycle-weighted), inference batch {r['infer_batch']} (ms/image); "
        f"memory in GiB: measured peak | inspector estimate | measured/estimate"
    )
    print(
        f"{'sweep':<10} {'preset':<9} {'res':>5} {'params':>8} | {'s/iter':>8} {'train peak':>10} {'est':>7} "
        f"{'ratio':>6} | {'ms/img':>9} {'G peak':>7} {'est':>7} {'ratio':>6}"
    )
    for row in r["rows"]:
        est = row["estimate"]
        cells = []
        for task, est_key, scale in (("train", "train_gb", 1), ("infer", "infer_gb", 1000)):
            m = row[task]
            key = "seconds_per_iter" if task == "train" else "seconds_per_image"
            if m.get("measured"):
                cells.append(
                    f"{m[key] * scale:>8.2f}{'' if task == 'train' else ' '} {m['peak_gb']:>10.2f} "
                    f"{est[est_key]:>7.2f} {m['ratio_to_estimate']:>6.2f}"
                )
            else:
                cells.append(f"{'estimate':>9} {'-':>9} {est[est_key]:>7.2f} {'-':>6}")
        params = (est["params_G"] + est["params_D"]) / 1e6
        print(f"{row['sweep']:<10} {row['preset']:<9} {row['resolution']:>5} {params:>7.1f}M | {cells[0]} | {cells[1]}")
    if r["measured_to_estimate"]:
        print(
            f"measured / inspector estimate: {r['measured_to_estimate']['min']:.2f} .. "
            f"{r['measured_to_estimate']['max']:.2f}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--train-batch", type=int, default=4)
    ap.add_argument("--infer-batch", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=90.0, help="skip rows predicted to take longer")
    ap.add_argument(
        "--mem-fraction",
        type=float,
        default=0.7,
        help="skip rows whose estimate exceeds this share of the available memory",
    )
    ap.add_argument("--mem-margin", type=float, default=2.0, help="safety factor on the inspector's estimate")
    ap.add_argument("--resolutions", default=",".join(map(str, RESOLUTIONS)), help="config-f resolutions")
    ap.add_argument("--capacities", default=",".join(CAPACITIES[1:]), help="presets at 1024 (or none)")
    ap.add_argument("--quick", action="store_true", help="tiny models: a smoke test")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.worker:
        r = measure(json.loads(args.worker))
        print(json.dumps(r))
        return r
    r = run(args)
    if args.json:
        print(json.dumps(r))
    else:
        print_table(r)
    return r


if __name__ == "__main__":
    main()
