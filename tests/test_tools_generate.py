"""Generation from seeds on a tiny checkpoint, and the tiny checkpoints the other tools tests use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge import build_generator, make_plan
from ganforge.checkpoint import save_checkpoint
from ganforge.images import make_grid
from ganforge.tools.generate import generate, generate_images, load_generator


def tiny_generator(c_dim: int = 0, resolution: int | str = 16, seed: int = 0) -> torch.nn.Module:
    """A tiny StyleGAN2 G (num_ws = 6 at 16 px) with weights from a seeded generator and a non-zero w_avg."""
    torch.manual_seed(seed)
    plan = make_plan("tiny", resolution, c_dim=c_dim)
    G = build_generator(plan).eval()
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(256, G.z_dim), None if c_dim == 0 else
                                        torch.eye(c_dim)[torch.arange(256) % c_dim])[:, 0].mean(0))
        for name, p in G.named_parameters():  # Visible noise: noise_strength starts at 0 in a fresh network.
            if name.endswith("noise_strength"):
                p.fill_(0.3)
    return G.requires_grad_(False)


def save_tiny(G: torch.nn.Module, path: Path) -> Path:
    """An export checkpoint that load_generator reads."""
    save_checkpoint(path, {f"G_ema.{k}": v for k, v in G.state_dict().items()},
                    {"kind": "export", "plan": G.plan.to_dict()})
    return path


def tiny_checkpoint(tmp_path_factory, c_dim: int = 0) -> tuple[torch.nn.Module, Path]:
    """(G, checkpoint path): the unconditional tiny 16 px model, or a conditional one (seeded differently)."""
    G = tiny_generator(c_dim=c_dim, seed=c_dim)
    return G, save_tiny(G, tmp_path_factory.mktemp("tiny") / f"tiny-c{c_dim}.safetensors")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_cond(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    return tiny_checkpoint(tmp_path_factory, c_dim=3)


def test_checkpoint_loads_the_same_network(tiny):
    G, path = tiny
    loaded = load_generator(path)
    z = torch.randn(2, G.z_dim)
    assert torch.equal(loaded(z, None, noise_mode="const"), G(z, None, noise_mode="const"))


def test_seeds_give_identical_images_twice_whatever_the_batch(tiny):
    G, path = tiny
    a = generate(load_generator(path), [0, 1, 2, 7], truncation_psi=0.7)
    b = generate(load_generator(path), [0, 1, 2, 7], truncation_psi=0.7, batch=3)
    c = generate(G, [7], truncation_psi=0.7)
    assert a.dtype == torch.uint8 and a.shape == (4, 3, 16, 16)
    assert torch.equal(a, b) and torch.equal(a[3:], c)
    assert not torch.equal(a[0], a[1])


def test_grid_has_the_expected_size(tiny, tmp_path):
    G, path = tiny
    images = generate(G, list(range(5)))
    assert make_grid(images).shape == (32, 48, 3)  # 5 images -> 3 columns x 2 rows.
    assert make_grid(images, cols=5).shape == (16, 80, 3)
    paths = generate_images(path, [0, 1, 2, 3, 4], tmp_path, grid=True)
    assert [p.name for p in paths][-1] == "grid.png"
    assert np.asarray(Image.open(paths[-1])).shape == (32, 48, 3)
    assert np.array_equal(np.asarray(Image.open(paths[0])), images[0].permute(1, 2, 0).numpy())


def test_conditional_generation_needs_a_class(tiny_cond):
    G, _ = tiny_cond
    with pytest.raises(ValueError, match="pass --class 0..2"):
        generate(G, [0])
    assert not torch.equal(generate(G, [0], class_idx=0), generate(G, [0], class_idx=1))
