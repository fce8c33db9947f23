"""Style mixing grids on a tiny model (official style_mixing.py layout)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.tools.generate import generate
from ganforge.tools.mix import check_layers, mixed_ws, parse_layers, style_mix, style_mix_file


def cell(grid: np.ndarray, row: int, col: int, size: int = 16) -> np.ndarray:
    return grid[row * size : (row + 1) * size, col * size : (col + 1) * size]


def as_hwc(img: torch.Tensor) -> np.ndarray:
    return img.permute(1, 2, 0).numpy()


def test_grid_layout_and_size(tiny):
    G, _ = tiny
    rows, cols = [0, 1, 2], [3, 4]
    grid = style_mix(G, rows, cols, [0, 1], truncation_psi=0.7)
    assert grid.dtype == np.uint8 and grid.shape == (4 * 16, 3 * 16, 3)
    assert not cell(grid, 0, 0).any()  # Blank corner.
    row_imgs, col_imgs = generate(G, rows, 0.7), generate(G, cols, 0.7)
    for j in range(2):
        assert np.array_equal(cell(grid, 0, j + 1), as_hwc(col_imgs[j]))
    for i in range(3):
        assert np.array_equal(cell(grid, i + 1, 0), as_hwc(row_imgs[i]))
    mixes = [cell(grid, i + 1, j + 1) for i in range(3) for j in range(2)]
    assert all(not np.array_equal(m, as_hwc(row_imgs[k // 2])) for k, m in enumerate(mixes))


def test_mixing_every_layer_gives_the_column_image(tiny):
    G, _ = tiny
    grid = style_mix(G, [0, 1], [5], range(G.num_ws))
    for i in range(2):
        assert np.array_equal(cell(grid, i + 1, 1), cell(grid, 0, 1))


def test_mixed_ws_copies_exactly_the_chosen_indices():
    row_ws, col_ws = torch.randn(2, 6, 4), torch.randn(3, 6, 4)
    ws = mixed_ws(row_ws, col_ws, [1, 4]).reshape(2, 3, 6, 4)
    for r in range(2):
        for c in range(3):
            assert torch.equal(ws[r, c, [1, 4]], col_ws[c, [1, 4]])
            assert torch.equal(ws[r, c, [0, 2, 3, 5]], row_ws[r, [0, 2, 3, 5]])


def test_layers_out_of_range_are_refused_with_the_valid_range(tiny):
    G, _ = tiny
    with pytest.raises(ValueError, match=r"style layers \[6\] are out of range: this model has ws 0\.\.5"):
        style_mix(G, [0], [1], parse_layers("0-6"))
    with pytest.raises(ValueError, match="no style layers"):
        check_layers([], 6)
    with pytest.raises(ValueError, match="--styles 'a-b'"):
        parse_layers("a-b")
    assert check_layers([3, 1, 1], 6) == [1, 3]


def test_file_and_conditional_model(tiny_cond, tmp_path):
    _, path = tiny_cond
    out = style_mix_file(path, [0, 1], [2, 3, 4], range(0, 3), tmp_path / "mix.png", class_idx=2)
    assert np.asarray(Image.open(out)).shape == (48, 64, 3)
    with pytest.raises(ValueError, match="pass --class"):
        style_mix_file(path, [0], [1], [0], tmp_path / "x.png")
