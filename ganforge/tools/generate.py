"""Load a trained generator (ganforge checkpoint or official .pkl) and generate images from seeds.

`generate_images` checks every option against the loaded model (truncation, cutoff, class, grid size, output folder)
before the output folder is made, and renders the seeds batch by batch, so a long seed list never sits in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from ganforge.devices import parse_device
from ganforge.errors import GanforgeError
from ganforge.images import check_canvas, check_output_dir, grid_shape, make_grid, save_png, to_uint8
from ganforge.latents import LatentError, check_cutoff, check_psi, z_from_seeds
from ganforge.latents import class_labels as labels_for
from ganforge.modelio.load import load_generator
from ganforge.models import is_stylegan

if TYPE_CHECKING:
    from ganforge.modelio.load import AnyGenerator
    from ganforge.models.generator import Generator
    from ganforge.tools.directions import DirectionEdit

NOISE_MODES = ("const", "random", "none")


class ToolError(GanforgeError, ValueError):
    """A tool (generate, style-mix, video, export, project) cannot run as asked; the message says what to change."""


def class_labels(G: torch.nn.Module, n: int, class_idx: int | None) -> torch.Tensor | None:
    """One-hot [n, c_dim] labels for G, or None when G is unconditional (a LatentError names --class)."""
    return labels_for(getattr(G, "c_dim", 0), n, class_idx)


def check_generate(
    G: AnyGenerator,
    num_seeds: int,
    truncation_psi: float,
    truncation_cutoff: int | None,
    noise_mode: str,
    class_idx: int | None,
    grid: bool = False,
    moves: tuple[str, ...] = (),  # The flags given among --translate and --rotate.
) -> None:
    """Every option that depends on the model, checked before anything is rendered or written."""
    if num_seeds < 1:
        raise LatentError("no seeds to generate: pass --seeds such as 0-7")
    if noise_mode not in NOISE_MODES:
        raise ToolError(f"--noise-mode {noise_mode!r}: choose const, random or none")
    if not is_stylegan(G) and (truncation_psi != 1 or truncation_cutoff is not None):
        given = ["--trunc"] if truncation_psi != 1 else []
        given += ["--trunc-cutoff"] if truncation_cutoff is not None else []
        flags = " and ".join(given)
        raise LatentError(
            f"{flags} {'has' if len(given) == 1 else 'have'} no effect on a DCGAN generator (truncation pulls w "
            f"toward a StyleGAN2 mapping network's average w, and a DCGAN has neither): drop {flags}"
        )
    check_cutoff(truncation_cutoff, getattr(G, "num_ws", None))
    check_moves(G, moves)
    class_labels(G, 0, class_idx)
    if grid:
        _, h, w = G.img_shape
        check_canvas(num_seeds, h, w, "--grid")


def check_moves(G: AnyGenerator, moves: tuple[str, ...]) -> None:
    """--translate and --rotate move a StyleGAN3 generator's Fourier input; other generators have none."""
    if moves and not getattr(getattr(G, "plan", None), "is_sg3", False):
        kind = "DCGAN" if not is_stylegan(G) else "StyleGAN2"
        flags = " and ".join(moves)
        raise ToolError(
            f"{flags} only move{'s' if len(moves) == 1 else ''} the Fourier-feature input of a StyleGAN3 generator, "
            f"and this is a {kind} generator: drop {flags}"
        )


def input_transform(translate: tuple[float, float] = (0.0, 0.0), rotate: float = 0.0) -> torch.Tensor:
    """The [3, 3] inverse of m = [[cos a, sin a, x], [−sin a, cos a, y], [0, 0, 1]], a = `rotate` degrees in radians,
    (x, y) = `translate`: what a StyleGAN3 `synthesis.input.transform` holds to rotate and shift the image, as the
    official gen_images.py sets it."""
    a = math.radians(rotate)
    x, y = translate
    m = torch.tensor(
        [[math.cos(a), math.sin(a), x], [-math.sin(a), math.cos(a), y], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    return torch.linalg.inv(m).float()


@torch.no_grad()
def move_input(G: AnyGenerator, translate: tuple[float, float] | None, rotate: float | None) -> None:
    """Rotate and shift what a StyleGAN3 generator draws (`input_transform`); refused for other generators."""
    check_moves(G, tuple(f for f, v in (("--translate", translate), ("--rotate", rotate)) if v is not None))
    if translate is not None or rotate is not None:
        transform = cast(torch.Tensor, G.synthesis.input.transform)  # type: ignore[union-attr]  # Checked above.
        transform.copy_(input_transform(translate or (0.0, 0.0), rotate or 0.0).to(transform.device))


@torch.no_grad()
def generate_batches(
    G: AnyGenerator,
    seeds: list[int],
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    class_idx: int | None = None,
    batch: int = 16,
    device: str | torch.device = "cpu",
    edit: DirectionEdit | None = None,  # A latent direction added to the ws (`ganforge.tools.directions`).
) -> Iterator[torch.Tensor]:
    """uint8 [n, C, H, W] per batch of seeds, in order; z is made per batch, so memory does not grow with the seeds."""
    G = G.to(device)
    c = class_labels(G, 1, class_idx)
    stylegan = is_stylegan(G)
    for i in range(0, len(seeds), batch):
        zb = z_from_seeds(seeds[i : i + batch], G.z_dim).to(device)
        cb = None if c is None else c.expand(len(zb), -1).to(device)
        if stylegan and edit is not None:
            sg = cast("Generator", G)  # StyleGAN2 or 3: the same mapping and synthesis calls.
            ws = sg.mapping(zb, cb, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
            img = sg.synthesis(edit.apply(ws), noise_mode=noise_mode)
        elif stylegan:
            img = G(zb, cb, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, noise_mode=noise_mode)
        else:
            img = G(zb, cb)
        yield to_uint8(img).cpu()


def generate(
    G: AnyGenerator,
    seeds: list[int],
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    class_idx: int | None = None,
    batch: int = 16,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """uint8 [N, C, H, W] for the seeds; image k depends only on seeds[k] (not on the batch)."""
    return torch.cat(
        list(generate_batches(G, seeds, truncation_psi, truncation_cutoff, noise_mode, class_idx, batch, device))
    )


def generate_images(
    checkpoint: str | Path,
    seeds: list[int],
    outdir: str | Path,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    class_idx: int | None = None,
    grid: bool = False,
    device: str | torch.device = "cpu",
    translate: tuple[float, float] | None = None,
    rotate: float | None = None,
    direction: tuple[str, int] | None = None,
    strength: float | None = None,
    layers: list[int] | None = None,
    ws: str | Path | None = None,
) -> list[Path]:
    """Write seed%04d.png per seed (and grid.png with grid=True: `images.grid_shape`, no empty cell unless the
    number of seeds is a large prime or alike). Returns the written paths. `translate` (x, y) and `rotate`
    (degrees) move a StyleGAN3 generator's image (`input_transform`); `direction` (FILE, K) adds `strength` times
    direction K of a directions file to the ws `layers` (default: the file's; `ganforge.tools.directions`).
    With `ws` (a ws file, `ganforge.tools.ws_files`), the saved ws are drawn instead of the seeds, as ws%04d.png.

    Nothing is created when an option is refused: the output folder is made after every check passed.
    """
    device = parse_device(device)
    truncation_psi = check_psi(truncation_psi)
    outdir = check_output_dir(outdir)
    G = load_generator(checkpoint)
    if ws is not None:
        from ganforge.tools.ws_files import generate_from_ws

        flags = ("--trunc", "--trunc-cutoff", "--class", "--direction", "--strength", "--layers")
        values = (truncation_psi != 1 or None, truncation_cutoff, class_idx, direction, strength, layers)
        unused = tuple(f for f, v in zip(flags, values) if v is not None)
        return generate_from_ws(G, ws, outdir, noise_mode, grid, device, translate, rotate, unused)
    moves = tuple(f for f, v in (("--translate", translate), ("--rotate", rotate)) if v is not None)
    check_generate(G, len(seeds), truncation_psi, truncation_cutoff, noise_mode, class_idx, grid, moves)
    from ganforge.tools.directions import direction_edit

    edit = direction_edit(G, direction, strength, layers)
    move_input(G, translate, rotate)
    outdir.mkdir(parents=True, exist_ok=True)
    paths, kept, names = [], [], (outdir / f"seed{seed:04d}.png" for seed in seeds)
    batches = generate_batches(
        G, seeds, truncation_psi, truncation_cutoff, noise_mode, class_idx, device=device, edit=edit
    )
    for images in batches:
        for img, path in zip(images, names):
            save_png(_hwc(img), path)
            paths.append(path)
        kept += [images] if grid else []  # Bounded by check_canvas.
    if grid:
        paths.append(outdir / "grid.png")
        save_png(make_grid(torch.cat(kept), cols=grid_shape(len(seeds))[0]), paths[-1])  # 8 seeds: 4x2.
    return paths


def _hwc(img: torch.Tensor) -> np.ndarray:
    """uint8 [C, H, W] -> [H, W, C], or [H, W] for one channel (a grayscale PNG)."""
    arr = img.permute(1, 2, 0).numpy()
    return arr[:, :, 0] if arr.shape[2] == 1 else arr
