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
    assert np.asarray(Image.open(paths[-1])).shape == (16, 80, 3)  # 5 seeds: one row, no empty cell.
    assert np.array_equal(np.asarray(Image.open(paths[0])), images[0].permute(1, 2, 0).numpy())
    paths = generate_images(path, list(range(8)), tmp_path / "eight", grid=True)
    assert np.asarray(Image.open(paths[-1])).shape == (32, 64, 3)  # 8 seeds: 4x2, not 3x3 with an empty cell.


@pytest.mark.parametrize(
    "n, shape",
    [(1, (1, 1)), (2, (2, 1)), (7, (7, 1)), (8, (4, 2)), (9, (3, 3)), (12, (4, 3)), (32, (8, 4)), (11, (4, 3))],
)
def test_grid_shape_fills_every_cell_unless_that_makes_a_long_strip(n, shape):
    from ganforge.images import grid_shape

    cols, rows = grid_shape(n)
    assert (cols, rows) == shape and cols >= rows and cols * rows >= n
    assert cols * rows == n or n == 11  # 11 is prime: 11x1 would be a strip, so 4x3 with one empty cell.


def test_conditional_generation_needs_a_class(tiny_cond):
    G, _ = tiny_cond
    with pytest.raises(ValueError, match="pass --class 0..2"):
        generate(G, [0])
    assert not torch.equal(generate(G, [0], class_idx=0), generate(G, [0], class_idx=1))


def test_a_folder_given_as_checkpoint_lists_its_checkpoints_newest_first(tmp_path):
    from ganforge.modelio.checkpoint import CheckpointError

    for nimg in (0, 4000, 8000, 12000):
        (tmp_path / f"checkpoint-{nimg:012d}.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError) as info:
        load_generator(tmp_path)
    newest = ", ".join(str(tmp_path / f"checkpoint-{n:012d}.safetensors") for n in (12000, 8000, 4000))
    assert str(info.value) == (
        f"checkpoint {tmp_path} is a folder: pass one of its checkpoints, newest first: {newest} (and 1 older)"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="is a folder with no checkpoint in it: pass a checkpoint file"):
        generate_images(empty, [0], tmp_path / "out")
    assert not (tmp_path / "out").exists()
