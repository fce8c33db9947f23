"""Projection: find the w (or w+) whose image reproduces a target, by optimisation (official projector.py recipe).

Recipe (StyleGAN2-ADA projector.py): start at w_avg (mean of 10,000 mapped z), optimise w and the per-layer
noise maps with Adam (β = 0.9, 0.999) for 1000 steps; the learning rate 0.1 ramps up over the first 5% of
steps and down (cosine) over the last 25%; Gaussian noise of 0.05·w_std is added to w and decays
quadratically to zero over the first 75%; the loss is the LPIPS distance between VGG16 features of the
256x256 target and synthesis, plus 1e5 × a regularizer that keeps every noise map (and its 2x2-pooled
pyramid down to 8x8) free of spatial autocorrelation; the noise maps are renormalised after each step.

Unlike the official script, the saved image and video are rendered with the optimised noise maps (the loss was
computed with them), and those maps are saved beside w.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.devices import parse_device
from ganforge.images import check_output_dir, to_uint8
from ganforge.latents import SEED_MAX
from ganforge.tools.generate import ToolError, class_labels
from ganforge.tools.mix import require_stylegan

if TYPE_CHECKING:
    from ganforge.models.generator import Generator

LOSSES = ("lpips", "mse")
FEATURE_SIZE = 256  # Images are shrunk (area) to at most this side before the VGG16 features, as official.
MAX_STEPS = 10_000  # Every step's w is kept for the video: 10,000 steps x 18 x 512 floats = 370 MB at 1024 px.


@dataclass(frozen=True)
class ProjectConfig:
    num_steps: int = 1000  # Optimisation steps.
    w_avg_samples: int = 10000  # Mapped z used for w_avg and w_std.
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05  # Std of the noise added to w at step 0, in units of w_std.
    lr_rampdown_length: float = 0.25  # Fraction of steps of the cosine ramp-down at the end.
    lr_rampup_length: float = 0.05  # Fraction of steps of the linear ramp-up at the start.
    noise_ramp_length: float = 0.75  # Fraction of steps over which the w noise decays to 0.
    regularize_noise_weight: float = 1e5
    w_plus: bool = False  # True = optimise one w per layer ([num_ws, w_dim]) instead of one shared w.
    seed: int = 0  # Seeds the initial noise maps and the w noise; w_avg uses RandomState(123) as official.

    def __post_init__(self) -> None:
        if not 1 <= self.num_steps <= MAX_STEPS:
            raise ToolError(f"--steps {self.num_steps}: pass 1..{MAX_STEPS:,} steps (1000 as official)")
        if not 0 <= self.seed <= SEED_MAX:
            raise ToolError(f"--seed {self.seed}: pass a seed in 0..{SEED_MAX}")
        if self.w_avg_samples < 2:
            raise ToolError(f"w_avg_samples={self.w_avg_samples}: pass at least 2 samples")


@dataclass
class Projection:
    w_steps: torch.Tensor  # [num_steps, num_ws, w_dim]: w after each step (w+ rows differ; w rows are copies).
    noise: dict[str, torch.Tensor]  # Optimised noise_const maps, by buffer name in G.synthesis.
    losses: list[float] = field(default_factory=list)  # Distance term per step (with the w noise of that step).
    start_dist: float = math.nan  # Distance at w_avg before any step (no w noise).
    final_dist: float = math.nan  # Distance at the final w (no w noise).
    G: Generator | None = None  # The generator copy holding the optimised noise maps.

    @property
    def w(self) -> torch.Tensor:
        """[1, num_ws, w_dim], the final w (official projected_w.npz layout)."""
        return self.w_steps[-1:].clone()


# ----------------------------------------------------------------------------
# Schedules (pure functions of progress t = step / num_steps).


def learning_rate(t: float, cfg: ProjectConfig) -> float:
    """lr0 · cosine ramp-down over the last rampdown fraction · linear ramp-up over the first rampup fraction."""
    down = min(1.0, (1.0 - t) / cfg.lr_rampdown_length)
    down = 0.5 - 0.5 * math.cos(down * math.pi)
    return cfg.initial_learning_rate * down * min(1.0, t / cfg.lr_rampup_length)


def w_noise_scale(t: float, w_std: float, cfg: ProjectConfig) -> float:
    """w_std · noise_factor · max(0, 1 - t / noise_ramp)²."""
    return w_std * cfg.initial_noise_factor * max(0.0, 1.0 - t / cfg.noise_ramp_length) ** 2


# ----------------------------------------------------------------------------
# Pieces of the loss.


@torch.no_grad()
def w_stats(G: Generator, n: int, c: torch.Tensor | None, device: torch.device) -> tuple[torch.Tensor, float]:
    """(w_avg [1, 1, w_dim], w_std) of n mapped z from RandomState(123); w_std = sqrt(Σ‖w - w_avg‖² / n)."""
    z = torch.from_numpy(np.random.RandomState(123).randn(n, G.z_dim)).float().to(device)
    c = None if c is None else c[:1].expand(n, -1).to(device)
    w = G.mapping(z, c)[:, :1].double()  # [n, 1, w_dim]
    w_avg = w.mean(0, keepdim=True)
    return w_avg.float(), float(((w - w_avg).square().sum() / n).sqrt())


def noise_buffers(G: Generator) -> dict[str, torch.Tensor]:
    """The synthesis network's constant noise maps, [H, W] each, by buffer name."""
    return {name: buf for name, buf in G.synthesis.named_buffers() if "noise_const" in name}


def noise_regularization(noise: dict[str, torch.Tensor]) -> torch.Tensor:
    """Σ over maps and their 2x2-pooled pyramid (down to 8 px) of mean(n·roll_x(n))² + mean(n·roll_y(n))²."""
    terms = []
    for buf in noise.values():
        x = buf[None, None]  # [1, 1, H, W]
        while True:
            terms.append((x * x.roll(1, dims=3)).mean().square() + (x * x.roll(1, dims=2)).mean().square())
            if min(x.shape[2:]) <= 8:
                break
            x = F.avg_pool2d(x, kernel_size=2)
    return torch.stack(terms).sum() if terms else torch.zeros([])


def shrink(images: torch.Tensor, size: int = FEATURE_SIZE) -> torch.Tensor:
    """Area-downsample [N, C, H, W] so that the long side is at most `size` (official: 256x256)."""
    h, w = images.shape[2:]
    if max(h, w) <= size:
        return images
    scale = size / max(h, w)
    return F.interpolate(images, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area")


def feature_space(features: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """VGG16 LPIPS features of float [N, C, H, W] in [-1, 1]: to 0..255, shrunk to ≤ 256 px, grayscale as RGB."""
    x = shrink((images + 1) * (255 / 2))
    return features(x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x)


def make_distance(loss: str, target: torch.Tensor, features: Callable | None) -> Callable:
    """dist(synth) to the target (float [1, C, H, W] in [-1, 1]).

    lpips: Σ (φ(target) - φ(synth))² over VGG16 LPIPS features (official). mse: mean (synth - target)² in pixel
    space, which needs no detector but gives blurrier results.
    """
    if loss == "mse":
        return lambda synth: (synth - target).square().mean()
    if loss != "lpips":
        raise ToolError(f"--loss {loss!r}: choose lpips (needs the VGG16 detector) or mse")
    if features is None:
        raise ToolError("--loss lpips needs the VGG16 detector: pass --vgg PATH/vgg16.pt, or use --loss mse")
    with torch.no_grad():
        target_features = feature_space(features, target)
    return lambda synth: (target_features - feature_space(features, synth)).square().sum()


def load_vgg(vgg: str | Path | Callable | None, device: str | torch.device) -> Callable:
    """VGG16 LPIPS features: a callable is used as is, a path (or None = the cache folder) goes to load_detector."""
    if callable(vgg) and not isinstance(vgg, (str, Path)):
        return vgg
    from ganforge.metrics.detectors import cache_dir, load_detector, spec_for

    spec = spec_for("vgg16")
    if vgg is None and not (cache_dir() / spec.filename).is_file():
        raise ToolError(
            f"--loss lpips (the default) needs the VGG16 weights {spec.filename}, which are not in {cache_dir()}: "
            f"download {spec.url} and pass it with --vgg PATH (or put it in that folder), or use --loss mse, "
            f"which needs no weights"
        )
    if vgg is not None and not Path(vgg).expanduser().is_file():
        what = "is a folder" if Path(vgg).expanduser().is_dir() else "does not exist"
        raise ToolError(
            f"--vgg {vgg} {what}: pass the path of {spec.filename} (TorchScript, from {spec.url}), or use "
            f"--loss mse, which needs no weights"
        )
    return load_detector("vgg16", vgg, allow_download=False, device=device, flag="--vgg").features


# ----------------------------------------------------------------------------
# The optimisation.


def project(
    G: torch.nn.Module,
    target: torch.Tensor,
    cfg: ProjectConfig = ProjectConfig(),
    loss: str = "lpips",
    features: Callable | None = None,
    class_idx: int | None = None,
    device: str | torch.device = "cpu",
    on_step: Callable[[int, float], None] | None = None,
) -> Projection:
    """Optimise w (w+) so that G.synthesis(w) matches target (uint8 [C, H, W]); G itself is not modified.

    features: the VGG16 LPIPS feature function (float NCHW RGB in 0..255 -> [N, F], differentiable) for
    loss='lpips', e.g. load_vgg(path); on_step(step, distance) is called after every step.
    """
    G = require_stylegan(G, "projection")
    device = torch.device(device)
    if list(target.shape) != list(G.img_shape):
        raise ToolError(
            f"the target has shape {list(target.shape)} but the model makes {list(G.img_shape)} "
            f"images: resize it first (load_target does)"
        )
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    c = class_labels(G, 1, class_idx)
    c = None if c is None else c.to(device)
    w_avg, w_std = w_stats(G, cfg.w_avg_samples, c, device)
    distance = make_distance(loss, target[None].to(device, torch.float32) / 127.5 - 1, features)

    # Start at w_avg with fresh unit-variance noise maps.
    gen = torch.Generator(device).manual_seed(cfg.seed)
    w_opt = (w_avg.repeat(1, G.num_ws, 1) if cfg.w_plus else w_avg.clone()).requires_grad_(True)
    noise = noise_buffers(G)
    for buf in noise.values():
        buf[:] = torch.randn(buf.shape, generator=gen, device=device)
        buf.requires_grad = True
    opt = torch.optim.Adam([w_opt, *noise.values()], betas=(0.9, 0.999), lr=cfg.initial_learning_rate)
    synth = lambda w: G.synthesis(w.expand(-1, G.num_ws, -1), noise_mode="const")
    with torch.no_grad():
        start = float(distance(synth(w_opt)))

    w_steps = torch.empty([cfg.num_steps, G.num_ws, G.w_dim])
    losses = []
    for step in range(cfg.num_steps):
        t = step / cfg.num_steps
        for group in opt.param_groups:
            group["lr"] = learning_rate(t, cfg)
        w_noise = torch.randn(w_opt.shape, generator=gen, device=device) * w_noise_scale(t, w_std, cfg)
        dist = distance(synth(w_opt + w_noise))
        total = dist + noise_regularization(noise) * cfg.regularize_noise_weight
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        with torch.no_grad():  # Keep every noise map zero-mean, unit-variance.
            for buf in noise.values():
                buf -= buf.mean()
                buf *= buf.square().mean().rsqrt()
        w_steps[step] = w_opt.detach()[0].expand(G.num_ws, -1).cpu()
        losses.append(float(dist.detach()))
        if on_step is not None:
            on_step(step, losses[-1])

    for buf in noise.values():
        buf.requires_grad = False
    with torch.no_grad():
        final = float(distance(synth(w_steps[-1:].to(device))))
    return Projection(w_steps, {k: v.detach().cpu() for k, v in noise.items()}, losses, start, final, G)


@torch.no_grad()
def render(G: Generator, ws: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """uint8 [N, C, H, W] of ws [N, num_ws, w_dim] with G's (optimised) constant noise."""
    device = next(G.parameters()).device
    return torch.cat(
        [
            to_uint8(G.synthesis(ws[i : i + batch].to(device), noise_mode="const")).cpu()
            for i in range(0, len(ws), batch)
        ]
    )


# ----------------------------------------------------------------------------
# Files: the target image in, the result, w and a progress video out.


def load_target(path: str | Path, shape: tuple[int, int, int]) -> torch.Tensor:
    """The image at `path` as uint8 [C, H, W] for a model making `shape` images: centre-cropped to the model's
    aspect ratio, resized with LANCZOS, converted to RGB (or grayscale for 1 channel)."""
    from PIL import Image, ImageOps

    channels, h, w = shape
    if not Path(path).is_file():
        what = "is a folder" if Path(path).is_dir() else "does not exist"
        raise ToolError(f"--target {path} {what}: pass the image file to reproduce (PNG or JPEG)")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("L" if channels == 1 else "RGB")
    except Image.DecompressionBombError:
        raise ToolError(
            f"--target {path} has too many pixels to decode safely: shrink it below "
            f"{Image.MAX_IMAGE_PIXELS:,} pixels first"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's ways of saying 'not an image I can read'.
        raise ToolError(
            f"--target {path}: cannot read it as an image ({str(e)[:200]}): pass a PNG or JPEG file"
        ) from None
    img = ImageOps.fit(img, (w, h), method=Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8).reshape(h, w, channels)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def video_steps(num_steps: int, max_frames: int) -> list[int]:
    """At most max_frames step indices, evenly spread, always ending at the last step."""
    stride = max(1, math.ceil(num_steps / max_frames))
    return sorted({*range(stride - 1, num_steps, stride), num_steps - 1})


def _hwc(img: torch.Tensor) -> np.ndarray:
    return img.permute(1, 2, 0).numpy()


def save_projection(
    result: Projection,
    target: torch.Tensor,
    outdir: str | Path,
    save_video: bool = True,
    fps: float = 10,
    max_frames: int = 200,
    meta: dict | None = None,
) -> dict[str, Path]:
    """target.png, proj.png, projected_w.npz (key w, [1, num_ws, w_dim]), projected_w.safetensors (w and the
    noise maps) and the target|projection video (mp4, or GIF without ffmpeg). Returns the paths by role."""
    from ganforge.modelio.checkpoint import save_checkpoint
    from ganforge.tools.mix import save_image
    from ganforge.tools.video import write_video

    G = result.G
    if G is None:
        raise ToolError("the projection holds no generator (result.G): save the Projection that project() returns")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    w = result.w.numpy()
    paths = {
        "target": save_image(_hwc(target), outdir / "target.png"),
        "image": save_image(_hwc(render(G, result.w)[0]), outdir / "proj.png"),
        "npz": outdir / "projected_w.npz",
        "safetensors": outdir / "projected_w.safetensors",
    }
    np.savez(paths["npz"], w=w)
    tensors = {"w": result.w, **{f"noise.{k}": v for k, v in result.noise.items()}}
    info = {"kind": "projection", "start_dist": result.start_dist, "final_dist": result.final_dist, **(meta or {})}
    save_checkpoint(paths["safetensors"], tensors, info)
    if save_video:
        steps = video_steps(len(result.w_steps), max_frames)
        frames = (np.concatenate([_hwc(target), _hwc(img)], axis=1) for img in render(G, result.w_steps[steps]))
        paths["video"], _ = write_video(frames, outdir / "proj.mp4", fps)
    return paths


def project_file(
    checkpoint: str | Path,
    target: str | Path,
    outdir: str | Path = "proj",
    steps: int = 1000,
    w_plus: bool = False,
    vgg: str | Path | Callable | None = None,
    loss: str = "lpips",
    seed: int = 0,
    save_video: bool = True,
    class_idx: int | None = None,
    device: str | torch.device = "cpu",
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[Projection, dict[str, Path]]:
    """Project an image file onto a checkpoint's G_ema and write the results to outdir (see save_projection)."""
    from ganforge.modelio.load import load_generator

    device = parse_device(device)
    cfg = ProjectConfig(num_steps=steps, w_plus=w_plus, seed=seed)
    if loss not in LOSSES:
        raise ToolError(f"--loss {loss!r}: choose lpips (needs the VGG16 detector) or mse")
    outdir = check_output_dir(outdir)
    G = load_generator(checkpoint)
    require_stylegan(G, "projection")
    class_labels(G, 0, class_idx)
    image = load_target(target, G.img_shape)
    features = load_vgg(vgg, device) if loss == "lpips" else None
    result = project(G, image, cfg, loss, features, class_idx, device, on_step)
    meta = {
        "checkpoint": Path(checkpoint).name,
        "target": Path(target).name,
        "loss": loss,
        "steps": steps,
        "w_plus": w_plus,
        "seed": seed,
    }
    return result, save_projection(result, image, outdir, save_video, meta=meta)
