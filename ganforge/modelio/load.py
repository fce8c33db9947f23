"""`load_generator`: a trained generator from a ganforge checkpoint or an official StyleGAN2-ADA / StyleGAN3 pickle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ganforge import build_generator
from ganforge.modelio import check
from ganforge.modelio import checkpoint as ck

if TYPE_CHECKING:
    from typing import TypeAlias

    from ganforge.models.dcgan import DCGANGenerator
    from ganforge.models.generator import Generator
    from ganforge.models.stylegan3 import StyleGAN3Generator

    AnyGenerator: TypeAlias = Generator | StyleGAN3Generator | DCGANGenerator  # What load_generator returns.


def load_generator(path: str | Path, which: str = "G_ema") -> AnyGenerator:
    """G_ema (or `which`) in eval mode on the CPU, from a ganforge checkpoint or an official .pkl (StyleGAN2-ADA, or
    the StyleGAN3 repository's StyleGAN2, StyleGAN3-T and StyleGAN3-R).

    Called as G(z, c, truncation_psi=1.0, truncation_cutoff=None, noise_mode='const') -> [N, C, H, W] in [-1, 1].
    """
    if not str(path).strip():
        raise ck.CheckpointError("no checkpoint path was given: pass a .safetensors checkpoint or an official .pkl")
    path = Path(path)
    if path.suffix == ".pkl":
        from ganforge.modelio.official import load_official_pkl

        snap = load_official_pkl(path)
        G = getattr(snap, which)
        if G is None:
            raise ck.CheckpointError(
                f"{path} has no {which} network: give a network-snapshot-*.pkl written by the official training loop"
            )
        return G.eval().requires_grad_(False)
    # Metadata, Plan and every tensor shape are checked before the network is built (bounded memory).
    contents = check.inspect_file(path)
    if which not in contents.nets:
        have = ", ".join(contents.nets)
        raise ck.CheckpointError(f"{path} holds no {which} network (it has {have})")
    part = ck.split(contents.file.read(parts=(which,)), which)
    G = build_generator(contents.plan)  # The Plan's family's generator.
    check.load_into(G, part, f"{which} in {path}")
    return G.eval().requires_grad_(False)
