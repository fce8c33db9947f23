"""Load a trained generator (ganforge checkpoint or official .pkl) and generate images from seeds."""

from __future__ import annotations

from pathlib import Path

import torch

from ganforge import build_generator
from ganforge import checkpoint as ck
from ganforge import checkpoint_check as check
from ganforge.images import make_grid, save_png, to_uint8
from ganforge.latents import z_from_seeds


def load_generator(path: str | Path, which: str = "G_ema") -> torch.nn.Module:
    """G_ema (or `which`) in eval mode on the CPU, from a ganforge checkpoint or an official StyleGAN2-ADA .pkl.

    Called as G(z, c, truncation_psi=1.0, truncation_cutoff=None, noise_mode='const') -> [N, C, H, W] in [-1, 1].
    """
    path = Path(path)
    if path.suffix == ".pkl":
        from ganforge.tools.import_official import load_official_pkl

        snap = load_official_pkl(path)
        G = getattr(snap, which)
        if G is None:
            raise ck.CheckpointError(f"{path} has no {which} network")
        return G.eval().requires_grad_(False)
    # Metadata, Plan and every tensor shape are checked before the network is built (bounded memory).
    contents = check.inspect_file(path)
    if which not in contents.nets:
        have = ", ".join(contents.nets)
        raise ck.CheckpointError(f"{path} holds no {which} network (it has {have})")
    part = ck.split(contents.file.read(parts=(which,)), which)
    G = build_generator(contents.plan)
    check.load_into(G, part, f"{which} in {path}")
    return G.eval().requires_grad_(False)


def class_labels(G: torch.nn.Module, n: int, class_idx: int | None) -> torch.Tensor | None:
    c_dim = getattr(G, "c_dim", 0)
    if c_dim == 0:
        if class_idx is not None:
            raise ValueError("--class was given but this model is unconditional (c_dim=0): drop --class")
        return None
    if class_idx is None:
        raise ValueError(f"this model is conditional with {c_dim} classes: pass --class 0..{c_dim - 1}")
    if not 0 <= class_idx < c_dim:
        raise ValueError(f"--class {class_idx} is out of range: this model has classes 0..{c_dim - 1}")
    return torch.nn.functional.one_hot(torch.full([n], class_idx), c_dim).float()


@torch.no_grad()
def generate(G: torch.nn.Module, seeds: list[int], truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
             noise_mode: str = "const", class_idx: int | None = None, batch: int = 16,
             device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 [N, C, H, W] for the seeds; image k depends only on seeds[k] (not on the batch)."""
    G = G.to(device)
    z = z_from_seeds(seeds, G.z_dim)
    c = class_labels(G, len(seeds), class_idx)
    out = []
    stylegan = hasattr(G, "mapping")
    for i in range(0, len(seeds), batch):
        zb = z[i : i + batch].to(device)
        cb = None if c is None else c[i : i + batch].to(device)
        if stylegan:
            img = G(zb, cb, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, noise_mode=noise_mode)
        else:
            img = G(zb, cb)
        out.append(to_uint8(img).cpu())
    return torch.cat(out)


def generate_images(checkpoint: str | Path, seeds: list[int], outdir: str | Path, truncation_psi: float = 1.0,
                    truncation_cutoff: int | None = None, noise_mode: str = "const", class_idx: int | None = None,
                    grid: bool = False, device: str = "cpu") -> list[Path]:
    """Write seed%04d.png per seed (and grid.png with grid=True). Returns the written paths."""
    G = load_generator(checkpoint)
    images = generate(G, seeds, truncation_psi, truncation_cutoff, noise_mode, class_idx, device=device)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, img in zip(seeds, images, strict=True):
        arr = img.permute(1, 2, 0).numpy()
        p = outdir / f"seed{seed:04d}.png"
        save_png(arr[:, :, 0] if arr.shape[2] == 1 else arr, p)
        paths.append(p)
    if grid:
        p = outdir / "grid.png"
        save_png(make_grid(images), p)
        paths.append(p)
    return paths
