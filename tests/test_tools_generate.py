"""Generation from seeds on a tiny checkpoint (the `tiny` / `tiny_cond` fixtures of conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.images import make_grid
from ganforge.modelio.load import load_generator
from ganforge.tools.generate import generate, generate_images


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
