"""ganforge.nn.filtered.upfirdn2d: separable taps, upsampled one axis at a time, against the 2-D filter they make."""

from __future__ import annotations

import pytest
import torch

from ganforge.nn.filtered import upfirdn2d


@pytest.mark.parametrize("up, down", [(1, 1), (2, 1), (4, 1), (1, 2), (2, 2)])
@pytest.mark.parametrize("padding", [(0, 0, 0, 0), (6, 5, 4, 7), (-3, 8, 9, -2)])
def test_separable_taps_equal_their_outer_product(up, down, padding):
    """The separable path filters x before y's zero insertion; the 2-D path inserts zeros on both axes first."""
    gen = torch.Generator().manual_seed(up * 10 + down)
    x = torch.randn([2, 3, 9, 10], generator=gen, dtype=torch.float64)
    taps = torch.randn([8], generator=gen, dtype=torch.float64)
    separable = upfirdn2d(x, taps, up=up, down=down, padding=padding, gain=up**2)
    full = upfirdn2d(x, taps[:, None] * taps[None, :], up=up, down=down, padding=padding, gain=up**2)
    assert separable.shape == full.shape
    assert torch.allclose(separable, full, rtol=0, atol=1e-12)
