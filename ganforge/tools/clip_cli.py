"""`ganforge clip-search`: find the w whose image matches a text prompt, guided by a Hugging Face CLIP model.

Registered on the main app in ganforge.cli. Examples:
    ganforge clip-search --checkpoint ckpt.safetensors --prompt "a smiling face" --clip-model clip-vit-base-patch32/ \
        --outdir clip
    ganforge clip-search --checkpoint sg3.pkl --prompt "a red car" --negative "blurry" --space w+ --steps 300 \
        --clip-model openai/clip-vit-base-patch32 --outdir car
    ganforge generate --checkpoint ckpt.safetensors --ws clip/w.safetensors --outdir again   # result.png again

Needs `pip install "ganforge[clip]"` (transformers). The model is read from a folder or the Hugging Face cache;
nothing is downloaded unless --allow-download is given.
"""

from __future__ import annotations

from enum import Enum

import typer

from ganforge.console import console, err, usage
from ganforge.latents import SEED_MAX, check_psi
from ganforge.tools.cli import DEVICE_HELP
from ganforge.tools.clip_search import MAX_CUTOUTS, check_lr, check_steps, check_weight


class SearchSpace(str, Enum):
    w = "w"
    w_plus = "w+"


def clip_search(
    checkpoint: str = typer.Option(
        ...,
        help="StyleGAN2 or StyleGAN3 generator: ganforge checkpoint (.safetensors) or official .pkl.",
    ),
    prompt: str = typer.Option(..., help="What the image should show, in words."),
    negative: str = typer.Option(None, help="What it should not show, in words (optional)."),
    clip_model: str = typer.Option(
        ...,
        metavar="PATH_OR_NAME",
        help="Hugging Face CLIP model: a folder (config.json, weights, tokenizer) or a name in the local HF cache.",
    ),
    outdir: str = typer.Option("clip", help="Output folder."),
    space: SearchSpace = typer.Option(SearchSpace.w, help="w: one vector for every layer; w+: one per layer."),
    steps: int = typer.Option(200, callback=usage(check_steps), help="Optimisation steps, 1..10,000."),
    lr: float = typer.Option(0.02, callback=usage(check_lr), help="Adam learning rate on w, (0, 1]."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Seed of the start w and of the random crops."),
    trunc: float = typer.Option(0.7, callback=usage(check_psi), help="Truncation psi of the start w (1 = off)."),
    cutouts: int = typer.Option(8, min=1, max=MAX_CUTOUTS, help="Random crops CLIP sees per step."),
    w_weight: float = typer.Option(
        0.05, callback=usage(lambda v: check_weight(v, "--w-weight")), help="Weight keeping w near mapped ws; 0 = off."
    ),
    allow_download: bool = typer.Option(False, "--allow-download", help="Fetch a named model missing from the cache."),
    save_video: bool = typer.Option(True, "--save-video/--no-save-video", help="Write the search as a video."),
    class_idx: int = typer.Option(None, "--class", min=0, help="Class label for conditional models."),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
) -> None:
    """Search w for an image that matches a text prompt (CLIP-guided, from a seed's truncated w)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ganforge.tools.clip_search import ClipSearchConfig, clip_search_file

    cfg = ClipSearchConfig(
        steps=steps, lr=lr, space=space.value, seed=seed, truncation_psi=trunc, cutouts=cutouts, w_weight=w_weight
    )
    columns = (
        TextColumn("clip-search"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("clip {task.fields[clip]:.4f}"),
        TimeRemainingColumn(),
    )
    bar = Progress(*columns, console=err, transient=True)
    task = bar.add_task("clip-search", total=steps, clip=float("nan"))

    def on_step(step: int, terms: dict[str, float]) -> None:
        bar.start()  # From the first step on: loading shows no bar, so its errors print alone.
        bar.update(task, completed=step + 1, clip=terms["clip"])

    try:
        result, paths = clip_search_file(
            checkpoint,
            prompt,
            clip_model,
            outdir,
            negative,
            cfg,
            allow_download,
            class_idx,
            device,
            save_video,
            on_step,
        )
    finally:
        if bar.live.is_started:  # Progress.stop prints a blank line on a non-terminal even when never started.
            bar.stop()
    console.print(
        f"CLIP distance (1 - cos) to the prompt: {result.start_clip:.4f} at the start -> {result.final_clip:.4f}"
    )
    for role, path in paths.items():
        console.print(f"  {role}: {path}")
    video = paths.get("video")
    if video is not None and video.suffix.lower() == ".gif":
        console.print("The video is an animated GIF: install imageio-ffmpeg for mp4.")
