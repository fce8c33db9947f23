"""Seeds -> latents, reproducible across runs, batch sizes and devices (one RandomState per seed)."""

from __future__ import annotations

import numpy as np
import torch


def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """z for one seed: np.random.RandomState(seed).randn(z_dim), as the official generate.py. [z_dim]"""
    return torch.from_numpy(np.random.RandomState(seed).randn(z_dim)).to(torch.float32)


def z_from_seeds(seeds: list[int], z_dim: int) -> torch.Tensor:
    """[len(seeds), z_dim]"""
    return torch.stack([z_from_seed(s, z_dim) for s in seeds])


def parse_seeds(text: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            a, b = part.split("-", 1) if not part.startswith("-") else (part, part)
            lo, hi = int(a), int(b)
            if hi < lo:
                raise ValueError(f"seed range {part!r} is reversed: write {hi}-{lo}")
            seeds.extend(range(lo, hi + 1))
        else:
            seeds.append(int(part))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}: write e.g. 0-7 or 1,5,9")
    if any(s < 0 or s >= 2**32 for s in seeds):
        raise ValueError("seeds must be in 0..4294967295")
    return seeds
