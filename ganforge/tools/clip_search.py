"""CLIP-guided latent search: move a seed's w until the generator's image matches a text prompt.

Recipe: start at w = mapping(z(seed)) truncated toward w_avg (ψ = 0.7); optimise w (one vector shared by every
layer, or one per layer in w+) with Adam at a gentle learning rate (CLIP-guided optimisation in W works with
rather gentle learning rates). The loss of a step is

    mean over cutouts k of (1 - cos(E_img(cut_k(G(w))), E_txt(prompt)))      the prompt, as a cosine distance
    + λ_neg · mean over k of cos(E_img(cut_k(G(w))), E_txt(negative))         away from the negative prompt
    + λ_w · mean over layers and dims of ((w - μ_w) / σ_w)²                    stay near the w distribution

where cut_k are random square crops (flipped half the time; the first is always the centre square) resized to
CLIP's input, and μ_w, σ_w are the per-dimension mean and std of mapped ws. The crops keep the search from
fooling CLIP with adversarial pixel patterns at one scale; the prior keeps w where the generator makes images.
Everything random comes from the seed, so a run is reproducible. Noise maps stay constant (noise_mode const),
so `ganforge generate --ws w.safetensors` redraws result.png exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ganforge.devices import parse_device
from ganforge.images import check_output_dir
from ganforge.latents import SEED_MAX, check_psi, z_from_seed
from ganforge.models import is_stylegan
from ganforge.tools.generate import ToolError, class_labels
from ganforge.tools.mix import synthesize

if TYPE_CHECKING:
    from ganforge.models.generator import Generator
    from ganforge.tools.clip_model import Clip

SPACES = ("w", "w+")
MAX_STEPS = 10_000  # Steps of one search (an hour of 1024 px on one GPU); more is a typo.
MAX_LR = 1.0  # Adam moves each w coordinate by about lr per step; w's std is about 1, so beyond 1 it jumps off.
MAX_CUTOUTS = 64  # Crops per step: each costs one CLIP image forward and backward.
MAX_PROMPT = 1000  # Characters; CLIP reads 77 tokens anyway.
VIDEO_FRAMES = 100  # Frames of the optimisation video, spread evenly over the steps.


@dataclass(frozen=True)
class ClipSearchConfig:
    steps: int = 200  # Adam steps.
    lr: float = 0.02  # Adam learning rate on w.
    space: str = "w"  # w: one vector broadcast to every layer; w+: one vector per layer.
    seed: int = 0  # z of the start and every cutout.
    truncation_psi: float = 0.7  # Of the start w; 1 = off.
    cutouts: int = 8  # Crops that CLIP sees per step; the first is always the centre square.
    cut_min: float = 0.6  # Smallest crop side, as a fraction of the image's short side.
    w_weight: float = 0.05  # λ_w of the penalty keeping w near the distribution of mapped ws; 0 = off.
    negative_weight: float = 0.5  # λ_neg of the negative prompt's similarity.
    w_samples: int = 10_000  # Mapped z for μ_w and σ_w.

    def __post_init__(self) -> None:
        check_steps(self.steps)
        check_lr(self.lr)
        check_psi(self.truncation_psi)
        if self.space not in SPACES:
            raise ToolError(f"--space {self.space!r}: choose w (one vector for every layer) or w+ (one per layer)")
        if not 0 <= self.seed <= SEED_MAX:
            raise ToolError(f"--seed {self.seed}: pass a seed in 0..{SEED_MAX}")
        if not 1 <= self.cutouts <= MAX_CUTOUTS:
            raise ToolError(f"--cutouts {self.cutouts}: pass 1..{MAX_CUTOUTS} crops per step (8 typical)")
        check_weight(self.w_weight, "--w-weight")
        check_weight(self.negative_weight, "negative_weight")
        if not 0 < self.cut_min <= 1:
            raise ToolError(f"cut_min={self.cut_min}: pass a fraction of the image side in (0, 1]")
        if self.w_samples < 2:
            raise ToolError(f"w_samples={self.w_samples}: pass at least 2 samples")


def check_steps(steps: int) -> int:
    if not 1 <= steps <= MAX_STEPS:
        raise ToolError(f"--steps {steps}: pass 1..{MAX_STEPS:,} optimisation steps (200 typical)")
    return steps


def check_lr(lr: float) -> float:
    lr = float(lr)
    if not 0 < lr <= MAX_LR:  # Also refuses NaN.
        raise ToolError(f"--lr {lr:g}: pass a learning rate in (0, {MAX_LR:g}] (0.01-0.03 works well in w)")
    return lr


def check_weight(weight: float, flag: str) -> float:
    weight = float(weight)
    if not 0 <= weight <= 1e4:  # Also refuses NaN.
        raise ToolError(f"{flag} {weight:g}: pass a weight in 0..10000 (0 = off)")
    return weight


@dataclass
class Search:
    start: torch.Tensor  # [num_ws, w_dim]: the truncated w of the seed.
    w: torch.Tensor  # [num_ws, w_dim]: the result.
    frames: list[torch.Tensor]  # [num_ws, w_dim] each: the start, then w after evenly spread steps.
    log: list[dict[str, float]] = field(default_factory=list)  # Loss terms per step (before its update).
    start_clip: float = math.nan  # 1 - cos(prompt) of the centre view at the start.
    final_clip: float = math.nan  # The same at the result.


# ----------------------------------------------------------------------------
# Pieces of the loss.


def make_cutouts(
    images: torch.Tensor, n: int, size: int, cut_min: float, gen: torch.Generator
) -> torch.Tensor:  # [N, C, H, W] => [N·n, C, size, size]
    """n square crops per image resized to size x size: the centre square first, then n - 1 random ones with
    sides uniform in [cut_min, 1] of the short side, flipped horizontally half the time."""
    h, w = images.shape[2:]
    short = min(h, w)
    y0, x0 = (h - short) // 2, (w - short) // 2
    crops = [images[:, :, y0 : y0 + short, x0 : x0 + short]]
    for _ in range(n - 1):
        u = torch.rand(4, generator=gen).tolist()  # CPU draws: the same crops on every device.
        side = max(1, round(short * (cut_min + (1 - cut_min) * u[0])))
        y, x = int(u[1] * (h - side + 1)), int(u[2] * (w - side + 1))
        crop = images[:, :, y : y + side, x : x + side]
        crops.append(crop.flip(3) if u[3] < 0.5 else crop)
    resized = [torch.nn.functional.interpolate(c, size=(size, size), mode="bilinear", antialias=True) for c in crops]
    return torch.cat(resized)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - a·b for unit vectors a [N, D] and b [D]: 0 = same direction, 1 = unrelated, 2 = opposite. [N]"""
    return 1 - a @ b


def w_prior(w: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """mean(((w - μ_w) / σ_w)²): about 1 for a mapped w, ψ² for one truncated by ψ."""
    return ((w - mean) / std).square().mean()


@torch.no_grad()
def w_stats(G: Generator, n: int, c: torch.Tensor | None, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ_w, σ_w), [w_dim] each, from n mapped z of RandomState(123) (as projection's w_avg), 1000 at a time."""
    z = torch.from_numpy(np.random.RandomState(123).randn(n, G.z_dim)).float()
    total, total_sq = torch.zeros(G.w_dim, dtype=torch.float64), torch.zeros(G.w_dim, dtype=torch.float64)
    for chunk in z.split(1000):
        cc = None if c is None else c[:1].expand(len(chunk), -1)
        w = G.mapping(chunk.to(device), cc, truncation_psi=1.0)[:, 0].double().cpu()
        total, total_sq = total + w.sum(0), total_sq + w.square().sum(0)
    mean = total / n
    std = ((total_sq / n - mean.square()).clamp_min(0) * n / (n - 1)).sqrt().clamp_min(1e-8)
    return mean.float().to(device), std.float().to(device)


# ----------------------------------------------------------------------------
# The search.


def require_w(G: torch.nn.Module) -> Generator:
    if not is_stylegan(G):
        raise ToolError(
            f"clip-search optimises w, and this checkpoint holds a {type(G).__name__}, which has no mapping "
            f"network or w: use a StyleGAN2 or StyleGAN3 checkpoint"
        )
    return G  # type: ignore[return-value]  # A StyleGAN2 or StyleGAN3 generator: mapping, synthesis, num_ws.


def clip_search(
    G: torch.nn.Module,
    clip: Clip,
    prompt: str,
    negative: str | None = None,
    cfg: ClipSearchConfig = ClipSearchConfig(),
    class_idx: int | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> Search:
    """Optimise the seed's w toward the prompt (see the module docstring); runs on CLIP's device. G's weights get
    requires_grad False; nothing else of G changes."""
    G = require_w(G).requires_grad_(False).to(clip.device)
    device = clip.device
    c = class_labels(G, 1, class_idx)
    c = None if c is None else c.to(device)
    texts = clip.embed_text([prompt] + ([negative] if negative else []))
    target, avoid = texts[0], (texts[1] if negative else None)
    mean, std = w_stats(G, cfg.w_samples, c, device)

    # Start at the seed's truncated w.
    with torch.no_grad():
        start = G.mapping(z_from_seed(cfg.seed, G.z_dim)[None].to(device), c, truncation_psi=cfg.truncation_psi)
    w_opt = (start[:, :1] if cfg.space == "w" else start).clone().requires_grad_(True)  # [1, 1 or num_ws, w_dim]
    opt = torch.optim.Adam([w_opt], lr=cfg.lr, betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(cfg.seed)
    keep = set(video_steps(cfg.steps, VIDEO_FRAMES))
    frames, log = [start[0].cpu()], []

    for step in range(cfg.steps):
        # Loss terms on the cutouts.
        images = G.synthesis(w_opt.expand(-1, G.num_ws, -1), noise_mode="const")
        embeds = clip.embed_images(make_cutouts(images, cfg.cutouts, clip.size, cfg.cut_min, gen))
        terms = {"clip": cosine_distance(embeds, target).mean(), "w_prior": w_prior(w_opt, mean, std)}
        total = terms["clip"] + cfg.w_weight * terms["w_prior"]
        if avoid is not None:
            terms["negative"] = (embeds @ avoid).mean()
            total = total + cfg.negative_weight * terms["negative"]
        if not torch.isfinite(total):
            raise ToolError(f"the loss became {float(total)} at step {step}: pass a smaller --lr than {cfg.lr:g}")

        # Step.
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        log.append({"step": step, "total": float(total.detach()), **{k: float(v.detach()) for k, v in terms.items()}})
        if step in keep:
            frames.append(w_opt.detach()[0].expand(G.num_ws, -1).cpu())
        if on_step is not None:
            on_step(step, log[-1])

    w = w_opt.detach()[0].expand(G.num_ws, -1).cpu().clone()
    result = Search(start[0].cpu(), w, frames, log)
    result.start_clip, result.final_clip = (centre_distance(G, clip, ws, target) for ws in (result.start, w))
    return result


@torch.no_grad()
def centre_distance(G: Generator, clip: Clip, ws: torch.Tensor, target: torch.Tensor) -> float:
    """1 - cos(prompt) of the centre square of G(ws), the one view without randomness."""
    images = G.synthesis(ws[None].to(clip.device), noise_mode="const")
    cut = make_cutouts(images, 1, clip.size, 1.0, torch.Generator())
    return float(cosine_distance(clip.embed_images(cut), target)[0])


def video_steps(num_steps: int, max_frames: int) -> list[int]:
    """At most max_frames step indices, evenly spread, always ending at the last step."""
    stride = max(1, math.ceil(num_steps / max_frames))
    return sorted({*range(stride - 1, num_steps, stride), num_steps - 1})


# ----------------------------------------------------------------------------
# Files.


def save_search(
    G: Generator, result: Search, outdir: Path, meta: dict, save_video: bool = True, fps: float = 10
) -> dict[str, Path]:
    """start.png, result.png, w.npz (key w) and w.safetensors (tensor w), both [num_ws, w_dim]; the video of the
    search (mp4, or a GIF without imageio-ffmpeg) and log.json. Returns the paths by role."""
    from ganforge.modelio.checkpoint import atomic_write_text, save_checkpoint
    from ganforge.tools.mix import save_image
    from ganforge.tools.video import write_video

    outdir.mkdir(parents=True, exist_ok=True)
    hwc = lambda img: img.permute(1, 2, 0).numpy()
    images = synthesize(G, torch.stack([result.start, result.w]).to(next(G.parameters()).device))
    paths = {
        "start": save_image(hwc(images[0]), outdir / "start.png"),
        "result": save_image(hwc(images[1]), outdir / "result.png"),
        "npz": outdir / "w.npz",
        "safetensors": outdir / "w.safetensors",
        "log": outdir / "log.json",
    }
    np.savez(paths["npz"], w=result.w.numpy())
    summary = {**meta, "start_clip": result.start_clip, "final_clip": result.final_clip}
    save_checkpoint(paths["safetensors"], {"w": result.w}, {"kind": "ws", **summary})
    atomic_write_text(paths["log"], json.dumps({**summary, "losses": result.log}, indent=1) + "\n")
    if save_video:
        device = next(G.parameters()).device
        frames = (hwc(img) for img in synthesize(G, torch.stack(result.frames).to(device), batch=8))
        paths["video"], _ = write_video(frames, outdir / "search.mp4", fps)
    return paths


def check_prompt(text: str | None, flag: str) -> str | None:
    if text is None:
        return None
    if not text.strip():
        raise ToolError(f"{flag} is empty: describe the image in words, e.g. {flag} 'a smiling face'")
    if len(text) > MAX_PROMPT:
        raise ToolError(f"{flag} is {len(text):,} characters long: CLIP reads about 77 tokens, write a shorter one")
    return text


def clip_search_file(
    checkpoint: str | Path,
    prompt: str,
    clip_model: str,
    outdir: str | Path = "clip",
    negative: str | None = None,
    cfg: ClipSearchConfig = ClipSearchConfig(),
    allow_download: bool = False,
    class_idx: int | None = None,
    device: str | torch.device = "cpu",
    save_video: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[Search, dict[str, Path]]:
    """Search a checkpoint's G_ema for the prompt and write the results to outdir (see save_search). Every option
    is checked, and the model and CLIP loaded, before the output folder is made."""
    from ganforge.modelio.load import load_generator
    from ganforge.tools.clip_model import load_clip

    device = parse_device(device)
    prompt = check_prompt(prompt, "--prompt") or ""
    negative = check_prompt(negative, "--negative")
    outdir = check_output_dir(outdir)
    G = require_w(load_generator(checkpoint))
    class_labels(G, 0, class_idx)
    clip = load_clip(clip_model, allow_download, device)
    result = clip_search(G, clip, prompt, negative, cfg, class_idx, on_step)
    meta = {"checkpoint": Path(checkpoint).name, "prompt": prompt, "negative": negative, "clip_model": clip.name}
    meta.update(asdict(cfg))
    return result, save_search(G, result, outdir, meta, save_video)
