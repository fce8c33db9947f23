"""ws files: latents saved by `clip-search` and `project`, drawn again by `ganforge generate --ws FILE`.

A ws file is an .npz (array `w` or `ws`, read without pickle) or a .safetensors file (tensor `w` or `ws`, any
metadata), holding float ws of one of these shapes for a generator with num_ws ws of w_dim values:

    [num_ws, w_dim]        one image (clip-search's w.npz / w.safetensors)
    [N, num_ws, w_dim]     N images (the official projector's projected_w.npz has N = 1)
    [N, 1, w_dim]          N images, each one w for every layer
    [w_dim]                one image, one w for every layer

The images are drawn by the synthesis network alone, so the ws are used as saved (no truncation, no labels).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from ganforge.images import check_canvas, grid_shape, make_grid, save_png, to_uint8
from ganforge.latents import MAX_SEEDS
from ganforge.tools.generate import ToolError

if TYPE_CHECKING:
    from ganforge.models.generator import Generator

WS_KEYS = ("w", "ws")
WS_SUFFIXES = (".npz", ".safetensors")


def read_ws_array(path: Path, flag: str = "--ws") -> torch.Tensor:
    """The `w` (or `ws`) array of an .npz or .safetensors file, as float32, or one sentence."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ToolError(f"{flag} {path} {what}: pass a ws file (.npz or .safetensors) such as clip-search's w.npz")
    suffix = path.suffix.lower()
    if suffix not in WS_SUFFIXES:
        raise ToolError(f"{flag} {path}: pass an .npz or .safetensors file holding an array named w")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                key = next((k for k in WS_KEYS if k in npz.files), None)
                array = None if key is None else torch.from_numpy(np.array(npz[key]))
                names = list(npz.files)
        else:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                names = list(f.keys())
                key = next((k for k in WS_KEYS if k in names), None)
                array = None if key is None else f.get_tensor(key)
    except Exception as e:  # numpy, zipfile and safetensors each have their own ways of saying 'not this format'.
        raise ToolError(f"{flag} {path} cannot be read as {suffix} ({type(e).__name__}): pass a ws file") from None
    if array is None:
        shown = ", ".join(names[:5]) or "nothing"
        raise ToolError(f"{flag} {path} holds no array named w or ws (it holds {shown}): pass a ws file")
    if not (array.is_floating_point() and array.numel() > 0):
        raise ToolError(f"{flag} {path}: its {key} is {array.dtype} {list(array.shape)}, not float ws")
    return array.float()


def shape_ws(array: torch.Tensor, num_ws: int, w_dim: int, source: str) -> torch.Tensor:
    """[num_ws, w_dim], [N, num_ws, w_dim], [N, 1, w_dim] or [w_dim] -> [N, num_ws, w_dim], or one sentence."""
    shape = list(array.shape)
    if shape == [w_dim]:
        array = array[None, None]
    elif shape == [num_ws, w_dim]:
        array = array[None]
    if array.ndim != 3 or array.shape[1] not in (1, num_ws) or array.shape[2] != w_dim or len(array) == 0:
        raise ToolError(
            f"{source} holds ws of shape {shape}, and this model takes [{num_ws}, {w_dim}] per image "
            f"(num_ws, w_dim; or [N, {num_ws}, {w_dim}] for N images): pass ws saved from this model"
        )
    if len(array) > MAX_SEEDS:
        raise ToolError(f"{source} holds {len(array):,} ws, more than the {MAX_SEEDS:,} of one call: split the file")
    if not torch.isfinite(array).all():
        raise ToolError(f"{source} holds NaN or infinite values: pass ws saved from a finished run")
    return array.expand(-1, num_ws, -1)


def load_ws(path: str | Path, num_ws: int, w_dim: int, flag: str = "--ws") -> torch.Tensor:
    """[N, num_ws, w_dim] float32 ws from a ws file (see the module docstring)."""
    path = Path(path).expanduser()
    return shape_ws(read_ws_array(path, flag), num_ws, w_dim, f"{flag} {path}")


@torch.no_grad()
def draw_ws(
    G: Generator,
    ws: torch.Tensor,  # [N, num_ws, w_dim]
    outdir: Path,
    noise_mode: str = "const",
    grid: bool = False,
    device: str | torch.device = "cpu",
    batch: int = 16,
) -> list[Path]:
    """Write ws%04d.png per w (and grid.png with grid=True), drawn by G.synthesis; returns the written paths."""
    _, h, w = G.img_shape
    if grid:
        check_canvas(len(ws), h, w, "--grid")
    G = G.to(device)
    outdir.mkdir(parents=True, exist_ok=True)
    paths, kept = [], []
    for i in range(0, len(ws), batch):
        images = to_uint8(G.synthesis(ws[i : i + batch].to(device), noise_mode=noise_mode)).cpu()
        for k, img in enumerate(images):
            arr = img.permute(1, 2, 0).numpy()
            paths.append(outdir / f"ws{i + k:04d}.png")
            save_png(arr[:, :, 0] if arr.shape[2] == 1 else arr, paths[-1])
        kept += [images] if grid else []  # Bounded by check_canvas.
    if grid:
        paths.append(outdir / "grid.png")
        save_png(make_grid(torch.cat(kept), cols=grid_shape(len(ws))[0]), paths[-1])
    return paths


def generate_from_ws(
    G: torch.nn.Module,
    ws_file: str | Path,
    outdir: Path,
    noise_mode: str = "const",
    grid: bool = False,
    device: str | torch.device = "cpu",
    translate: tuple[float, float] | None = None,
    rotate: float | None = None,
    unused: tuple[str, ...] = (),  # Flags given that only act on seeds (--trunc, --class, --direction ...).
) -> list[Path]:
    """`generate --ws`: every check first (the generator, the flags, the file against the model), then the images."""
    from ganforge.models import is_stylegan
    from ganforge.tools.generate import NOISE_MODES, move_input

    if not is_stylegan(G):
        raise ToolError(
            f"--ws draws ws with a StyleGAN2 or StyleGAN3 synthesis network, and this checkpoint holds a "
            f"{type(G).__name__}: pass a StyleGAN checkpoint"
        )
    if unused:
        flags = " and ".join(unused)
        raise ToolError(
            f"{flags} act{'s' if len(unused) == 1 else ''} on seeds, and --ws draws its ws as saved: drop {flags}"
        )
    if noise_mode not in NOISE_MODES:
        raise ToolError(f"--noise-mode {noise_mode!r}: choose const, random or none")
    sg = cast("Generator", G)
    ws = load_ws(ws_file, sg.num_ws, sg.w_dim)
    move_input(sg, translate, rotate)
    return draw_ws(sg, ws, outdir, noise_mode, grid, device)
