"""Settings -> pixels: seeds to z, z to ws (walk, truncation, style mixing), ws to a uint8 image or grid.

Plain seeds take exactly the path of `ganforge generate` (mapping then synthesis, the same batches), so a saved
image without a walk or a mix is reproduced bit for bit by the command written beside it.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from PIL import Image

from ganforge.devices import parse_device
from ganforge.explore.edits import apply_directions, move
from ganforge.explore.params import ParamError, RenderSettings, check_for_model
from ganforge.images import make_grid, to_uint8
from ganforge.latents import z_from_seeds
from ganforge.modelio.load import load_generator
from ganforge.models import is_stylegan
from ganforge.tools.generate import class_labels
from ganforge.tools.mix import require_stylegan

if TYPE_CHECKING:
    from ganforge.modelio.load import AnyGenerator
    from ganforge.models.generator import Generator
    from ganforge.models.stylegan3 import StyleGAN3Generator
    from ganforge.tools.directions import Directions

DEFAULT_MAX_PIXELS = 4 * 1024 * 1024  # Output pixels per request: 16 images at 512², 4 at 1024².


@dataclass
class LoadedModel:
    key: str  # 'main' for --checkpoint, else the run id whose latest checkpoint this is.
    checkpoint: Path
    G: AnyGenerator
    device: torch.device
    home_transform: torch.Tensor | None = None  # StyleGAN3: the input transform it was loaded with.

    @property
    def stylegan(self) -> bool:
        return is_stylegan(self.G)

    @property
    def sg3(self) -> bool:
        return bool(getattr(getattr(self.G, "plan", None), "is_sg3", False))

    @property
    def num_ws(self) -> int:
        return int(getattr(self.G, "num_ws", 0) or 0)

    @property
    def c_dim(self) -> int:
        return int(getattr(self.G, "c_dim", 0) or 0)

    @property
    def nbytes(self) -> int:
        """Bytes of weights and buffers: what keeping this model loaded costs."""
        return sum(t.numel() * t.element_size() for t in (*self.G.parameters(), *self.G.buffers()))

    @property
    def img_shape(self) -> tuple[int, int, int]:
        c, h, w = self.G.img_shape
        return int(c), int(h), int(w)

    def check(self, settings: RenderSettings, max_pixels: int) -> RenderSettings:
        """Settings checked against this model, and the request's pixel count against the cap (413)."""
        settings = check_for_model(settings, self.num_ws, self.c_dim, self.stylegan)
        _, h, w = self.img_shape
        if settings.grid * h * w > max_pixels:
            fit = max(max_pixels // (h * w), 1)
            raise ParamError(
                f"grid={settings.grid} images of {w}x{h} are {settings.grid * h * w:,} pixels, over this "
                f"server's cap of {max_pixels:,} per request: ask for grid={fit} or fewer",
                status=413,
            )
        return settings

    def info(self) -> dict:
        c, h, w = self.img_shape
        return dict(
            model=self.key,
            checkpoint=self.checkpoint.name,
            z_dim=int(self.G.z_dim),
            c_dim=self.c_dim,
            w_dim=int(getattr(self.G, "w_dim", 0) or 0),
            num_ws=self.num_ws,
            img_shape=[c, h, w],
            stylegan=self.stylegan,
            sg3=self.sg3,
            layers=layer_labels(self.G),
            device=str(self.device),
        )


def out_of_memory(e: BaseException) -> bool:
    """MemoryError, a CUDA out-of-memory error, or the CPU allocator's failure (torch raises RuntimeError there)."""
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return isinstance(e, (MemoryError, oom)) or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e))


def resolve_device(name: str) -> torch.device:
    """'auto' = the first CUDA GPU when there is one, else the CPU; anything else must name a device here."""
    return parse_device(name)


def load_model(key: str, checkpoint: Path, device: torch.device, max_pixels: int) -> LoadedModel:
    """The checkpoint's G_ema on `device`; models whose single image is over the pixel cap are refused."""
    model = LoadedModel(key, Path(checkpoint), load_generator(checkpoint).to(device), device)
    if model.sg3:
        model.home_transform = cast("StyleGAN3Generator", model.G).synthesis.input.transform.clone()
    c, h, w = model.img_shape
    if h * w > max_pixels:
        raise ParamError(
            f"{Path(checkpoint).name} makes {w}x{h} images ({h * w:,} pixels), over this server's cap "
            f"of {max_pixels:,} pixels per request",
            status=413,
        )
    return model


def layer_labels(G: torch.nn.Module) -> list[str]:
    """One label per w index: the synthesis block it styles ('b16' …; 'b16 rgb' for the last ToRGB)."""
    synthesis = getattr(G, "synthesis", None)
    if synthesis is None:
        return []
    labels: list[str] = []
    for name in getattr(synthesis, "block_names", []):
        block = getattr(synthesis, name)
        labels += [name] * block.num_conv
        if block.is_last:
            labels += [f"{name} rgb"] * block.num_torgb
    return labels


def slerp_z(z_a: torch.Tensor, z_b: torch.Tensor, t: float) -> torch.Tensor:
    """z = cos(θ)·z_a + sin(θ)·z_b with θ = t·π/2: a great circle that keeps |z| near √z_dim (t=1 gives z_b)."""
    theta = t * math.pi / 2
    return math.cos(theta) * z_a + math.sin(theta) * z_b


def settings_ws(G: Generator, s: RenderSettings, device: torch.device) -> torch.Tensor:
    """[grid, num_ws, w_dim]: mapping of the seeds with the walk, truncation and style mix applied."""
    n = s.grid
    c = class_labels(G, n, s.class_idx)
    c = None if c is None else c.to(device)
    z = z_from_seeds(s.seeds, G.z_dim).to(device)
    trunc = dict(truncation_psi=s.psi, truncation_cutoff=s.cutoff)
    walk_seed = s.walk_seed if s.walking else None
    if walk_seed is not None and s.space == "z":
        z = slerp_z(z, z_from_seeds([walk_seed], G.z_dim).to(device), s.walk)
    ws = G.mapping(z, c, **trunc)
    if walk_seed is not None and s.space == "w":
        target = G.mapping(z_from_seeds([walk_seed], G.z_dim).to(device), c[:1] if c is not None else None, **trunc)
        ws = ws.lerp(target.expand_as(ws), s.walk)
    if s.mix_seed is not None:  # s.mixing
        layers = slice(s.mix_from, s.mix_to + 1)
        mix = G.mapping(z_from_seeds([s.mix_seed], G.z_dim).to(device), c[:1] if c is not None else None, **trunc)
        ws = ws.clone()
        ws[:, layers] = mix[:, layers].expand(n, -1, -1)
    return ws


@torch.no_grad()
def render(model: LoadedModel, s: RenderSettings, directions: Directions | None = None) -> torch.Tensor:
    """uint8 [grid, C, H, W] on the CPU; `directions` is the --directions file the `dirs` strengths refer to."""
    G, device = model.G, model.device
    if not model.stylegan:
        c = class_labels(G, s.grid, s.class_idx)
        z = z_from_seeds(s.seeds, G.z_dim).to(device)
        return to_uint8(G(z, None if c is None else c.to(device))).cpu()
    stylegan = require_stylegan(G, "rendering ws")
    ws = apply_directions(settings_ws(stylegan, s, device), s, directions)
    move(model, s)
    return to_uint8(stylegan.synthesis(ws, noise_mode=s.noise)).cpu()


def image_array(images: torch.Tensor) -> np.ndarray:
    """uint8 [N, C, H, W] -> what the PNG holds: one image [H, W, C] (or [H, W]) or the generate --grid layout."""
    if len(images) == 1:
        arr = images[0].permute(1, 2, 0).numpy()
        return arr[:, :, 0] if arr.shape[2] == 1 else arr
    return make_grid(images)


def encode_png(array: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes; level 1 is ~5x faster than the default for ~20% larger files, right for a live preview."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def digest(array: np.ndarray) -> str:
    """A short fingerprint of the pixels (not of the PNG bytes), for clients and tests to compare images."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]
