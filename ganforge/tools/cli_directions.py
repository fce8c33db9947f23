"""`ganforge directions`: interpretable w directions of a StyleGAN2 / StyleGAN3 model (SeFa or GANSpace).

Registered on the main app in ganforge.cli. Examples:
    ganforge directions --checkpoint ckpt.safetensors --method sefa --out sefa.safetensors
    ganforge directions --checkpoint ffhq.pkl --method sefa --layers 0-3 --num 8 --out pose.safetensors
    ganforge directions --checkpoint ckpt.safetensors --method ganspace --samples 100000 --out pca.safetensors
    ganforge generate --checkpoint ckpt.safetensors --seeds 0-7 --direction sefa.safetensors:0 --strength 3
"""

from __future__ import annotations

from enum import Enum
from typing import cast

import typer

from ganforge.console import console, usage
from ganforge.latents import SEED_MAX
from ganforge.tools.directions import layers_text, parse_layers
from ganforge.tools.factorize import MAX_SAMPLES


class Method(str, Enum):
    sefa = "sefa"
    ganspace = "ganspace"


def directions(
    checkpoint: str = typer.Option(..., help="ganforge checkpoint (.safetensors) or official StyleGAN2/3 .pkl."),
    method: Method = typer.Option(..., help="sefa (closed form, from the style weights) or ganspace (PCA of w)."),
    out: str = typer.Option(..., help="Directions file to write (.safetensors)."),
    layers: str = typer.Option(
        None,
        metavar="A-B",
        callback=usage(parse_layers),
        help="ws indices (0 = coarsest) whose style layers SeFa factorizes, and that the directions move by "
        "default; default: all.",
    ),
    num: int = typer.Option(16, min=1, max=4096, help="Directions to keep, strongest first (at most w_dim)."),
    samples: int = typer.Option(
        10_000, min=2, max=MAX_SAMPLES, help="GANSpace: w samples for the PCA (more = steadier axes)."
    ),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="GANSpace: seed of the z samples."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto (GANSpace maps the samples there)."),
) -> None:
    """Find directions in w that change the image in interpretable ways; apply them with generate/video --direction."""
    from ganforge.images import check_output_file
    from ganforge.tools.directions import save_directions
    from ganforge.tools.factorize import compute_directions

    path = check_output_file(out, "--out", (".safetensors",))
    chosen = cast("list[int] | None", layers)  # The option's callback parsed the text.
    d = compute_directions(checkpoint, method.value, chosen, num, samples, seed, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_directions(d, path)
    what = "eigenvalue" if d.method == "sefa" else "standard deviation"
    top = ", ".join(f"{v:.3g}" for v in d.values[:4].tolist())
    console.print(
        f"Wrote {path}: {d.count} {d.method} directions in w ({d.w_dim}-dimensional) for ws "
        f"{layers_text(d.layers)}; {what}s {top}{', ...' if d.count > 4 else ''}"
    )
