"""Style mixing: rows of seeds take the styles of column seeds at chosen layers (official style_mixing.py).

The grid: the top row holds the column seeds' images, the left column the row seeds' images, and cell (r, c)
is row seed r's ws with column seed c's ws copied into the chosen w indices; the top-left cell is blank.
Coarse indices (0-3 at 1024 px) carry pose and shape, fine ones colour and texture.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from ganforge.devices import parse_device
from ganforge.images import IMAGE_SUFFIXES, check_canvas, check_output_file, save_png, to_uint8
from ganforge.latents import check_psi, parse_ranges, z_from_seeds
from ganforge.models import is_stylegan
from ganforge.tools.generate import ToolError, class_labels

if TYPE_CHECKING:
    from ganforge.models.generator import Generator

MAX_LAYERS = 1024  # --styles indices at once, a typo guard (num_ws is 26 at 16384 px); the model checks the rest.


def require_stylegan(G: torch.nn.Module, what: str) -> Generator:
    """Refuse generators without a mapping network (DCGAN): the tool works on ws. Returns G, typed as the
    StyleGAN2 Generator whose interface (mapping, synthesis, num_ws, w_dim) it has."""
    if not is_stylegan(G):
        raise ToolError(
            f"{what} needs a StyleGAN2 generator (mapping + synthesis), but this checkpoint holds a "
            f"{type(G).__name__}: use a stylegan2 checkpoint"
        )
    return cast("Generator", G)


def parse_layers(text: str) -> list[int]:
    """'0-6' or '0,2,4' -> w indices (the same syntax as seeds; checked against num_ws by check_layers)."""
    return parse_ranges(text, "--styles", MAX_LAYERS, what="w indices")


def check_layers(layers: list[int] | range, num_ws: int) -> list[int]:
    """The w indices as a sorted list without duplicates, or a ToolError naming the valid range."""
    layers = sorted(set(int(i) for i in layers))
    if not layers:
        raise ToolError(f"no style layers given: pass w indices in 0..{num_ws - 1}")
    bad = [i for i in layers if not 0 <= i < num_ws]
    if bad:
        shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
        raise ToolError(
            f"style layers [{shown}] are out of range: this model has ws 0..{num_ws - 1} "
            f"(num_ws={num_ws}), pass --styles within 0-{num_ws - 1}"
        )
    return layers


@torch.no_grad()
def seeds_to_ws(
    G: Generator,
    seeds: list[int],
    truncation_psi: float = 1.0,
    class_idx: int | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """[len(seeds), num_ws, w_dim]: mapping(z(seed), c) truncated toward w_avg, as the official scripts."""
    z = z_from_seeds(seeds, G.z_dim).to(device)
    c = class_labels(G, len(seeds), class_idx)
    return G.mapping(z, None if c is None else c.to(device), truncation_psi=truncation_psi)


@torch.no_grad()
def synthesize(G: Generator, ws: torch.Tensor, noise_mode: str = "const", batch: int = 16) -> torch.Tensor:
    """uint8 [N, C, H, W] from ws [N, num_ws, w_dim], in batches (image k does not depend on the batch)."""
    out = [to_uint8(G.synthesis(ws[i : i + batch], noise_mode=noise_mode)).cpu() for i in range(0, len(ws), batch)]
    return torch.cat(out)


def mixed_ws(row_ws: torch.Tensor, col_ws: torch.Tensor, layers: list[int]) -> torch.Tensor:
    """[R·C, num_ws, w_dim]: cell (r, c) = row_ws[r] with col_ws[c] at the w indices `layers` (row-major)."""
    rows, cols = len(row_ws), len(col_ws)
    ws = row_ws[:, None].repeat(1, cols, 1, 1)  # [R, C, num_ws, w_dim]
    ws[:, :, layers] = col_ws[None, :, layers].expand(rows, -1, -1, -1)
    return ws.reshape(rows * cols, *row_ws.shape[1:])


def mix_canvas(row_imgs: torch.Tensor, col_imgs: torch.Tensor, cells: torch.Tensor) -> np.ndarray:
    """uint8 [(R+1)·H, (C+1)·W, ch]: column seeds on top, row seeds on the left, mixes inside, blank corner."""
    rows, cols = len(row_imgs), len(col_imgs)
    ch, h, w = row_imgs.shape[1:]
    canvas = torch.zeros([rows + 1, cols + 1, ch, h, w], dtype=torch.uint8)
    canvas[0, 1:] = col_imgs
    canvas[1:, 0] = row_imgs
    canvas[1:, 1:] = cells.reshape(rows, cols, ch, h, w)
    return canvas.permute(0, 3, 1, 4, 2).reshape((rows + 1) * h, (cols + 1) * w, ch).numpy()


def style_mix(
    G: torch.nn.Module,
    row_seeds: list[int],
    col_seeds: list[int],
    layers: list[int] | range,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    class_idx: int | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """The style-mixing grid as uint8 [(len(rows)+1)·H, (len(cols)+1)·W, C]."""
    G = require_stylegan(G, "style mixing")
    if not row_seeds or not col_seeds:
        raise ToolError("style mixing needs at least one row seed and one column seed: pass --rows and --cols")
    layers = check_layers(layers, G.num_ws)
    class_labels(G, 0, class_idx)
    _, h, w = G.img_shape
    check_canvas((len(row_seeds) + 1) * (len(col_seeds) + 1), h, w, "the style-mixing grid (--rows x --cols)")
    G = G.to(device)
    row_ws = seeds_to_ws(G, row_seeds, truncation_psi, class_idx, device)
    col_ws = seeds_to_ws(G, col_seeds, truncation_psi, class_idx, device)
    row_imgs = synthesize(G, row_ws, noise_mode)
    col_imgs = synthesize(G, col_ws, noise_mode)
    cells = synthesize(G, mixed_ws(row_ws, col_ws, layers), noise_mode)
    return mix_canvas(row_imgs, col_imgs, cells)


def save_image(array: np.ndarray, path: str | Path) -> Path:
    """Write uint8 [H, W, C] as a PNG (C = 1 as grayscale)."""
    save_png(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array, path)
    return Path(path)


def style_mix_file(
    checkpoint: str | Path,
    row_seeds: list[int],
    col_seeds: list[int],
    layers: list[int] | range,
    out: str | Path = "mix.png",
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    class_idx: int | None = None,
    device: str | torch.device = "cpu",
) -> Path:
    """Load the checkpoint's G_ema, build the style-mixing grid and write it as one PNG (every option is checked
    before anything is written)."""
    from ganforge.modelio.load import load_generator

    device = parse_device(device)
    truncation_psi = check_psi(truncation_psi)
    out = check_output_file(out, "--out", IMAGE_SUFFIXES)
    G = load_generator(checkpoint)
    grid = style_mix(G, row_seeds, col_seeds, layers, truncation_psi, noise_mode, class_idx, device)
    return save_image(grid, out)
