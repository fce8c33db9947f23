"""Throughput of `ganforge dataset prepare`: generated JPEGs -> a StyleGAN2-ADA zip, per worker count.

    python benchmarks/prepare_speed.py                      # 1000 512x512 JPEGs -> 256x256, 1 and 2 workers
    python benchmarks/prepare_speed.py --count 200 --workers 1,2,4 --compress 0,1,6

The JPEGs (random noise plus random shapes, quality 90) are written to a temporary folder that is
deleted at the end. Images/s counts source images read per second of wall time, including the
PNG encoding and the zip writing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ganforge.data.prepare import PrepareOptions, prepare_dataset


def make_jpegs(folder: Path, count: int, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = (int(v) for v in rng.integers(0, size - 16, 2))
            x1, y1 = x0 + int(rng.integers(16, size // 2)), y0 + int(rng.integers(16, size // 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
        img.save(folder / f"img{i:05d}.jpg", "JPEG", quality=90)


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="JPEGs to generate")
    parser.add_argument("--size", type=int, default=512, help="side of the generated JPEGs")
    parser.add_argument("--resolution", default="256", help="prepare --resolution")
    parser.add_argument("--workers", type=ints, default=[1, 2], help="comma-separated worker counts")
    parser.add_argument("--compress", type=ints, default=[1], help="comma-separated PNG zlib levels")
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting (the best is reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ganforge-bench-") as tmp:
        src = Path(tmp) / "src"
        t0 = time.perf_counter()
        make_jpegs(src, args.count, args.size)
        mb = sum(p.stat().st_size for p in src.iterdir()) / 1e6
        print(
            f"generated {args.count} {args.size}x{args.size} JPEGs ({mb:.0f} MB) in {time.perf_counter() - t0:.1f} s;"
            f" {os.cpu_count()} CPUs"
        )
        print(f"{'workers':>7} {'png level':>9} {'seconds':>8} {'images/s':>9} {'zip MB':>7}")
        for level in args.compress:
            for workers in args.workers:
                best = float("inf")
                for r in range(args.repeat):
                    dest = Path(tmp) / f"out-{workers}-{level}-{r}.zip"
                    opts = PrepareOptions(resolution=args.resolution, workers=workers, compress_level=level)
                    t0 = time.perf_counter()
                    prepare_dataset(src, dest, opts)
                    best = min(best, time.perf_counter() - t0)
                    size_mb = dest.stat().st_size / 1e6
                    dest.unlink()
                print(f"{workers:>7} {level:>9} {best:>8.2f} {args.count / best:>9.1f} {size_mb:>7.1f}")


if __name__ == "__main__":
    main()
