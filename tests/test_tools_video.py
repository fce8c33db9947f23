"""Latent walk videos: interpolation, frame counts, GIF and mp4 files read back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.tools import video
from ganforge.tools.generate import generate
from ganforge.tools.video import loop_times, slerp, split_walks, walk_frames, walk_video, walk_ws, write_video

needs_ffmpeg = pytest.mark.skipif(not video.have_ffmpeg(), reason="imageio + imageio-ffmpeg are not installed")


def gif_frames(path) -> int:
    with Image.open(path) as img:
        return img.n_frames


def test_slerp_ends_norms_and_parallel_fallback():
    a, b = torch.randn(5, 64), torch.randn(5, 64)
    assert torch.allclose(slerp(a, b, torch.zeros(5, 1)), a, atol=1e-5)
    assert torch.allclose(slerp(a, b, torch.ones(5, 1)), b, atol=1e-5)
    unit_a, unit_b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    mid = slerp(unit_a, unit_b, torch.full([5, 1], 0.5))
    assert torch.allclose(mid.norm(dim=1), torch.ones(5), atol=1e-5)  # Stays on the sphere, unlike lerp.
    assert torch.allclose(slerp(a, 2 * a, torch.full([5, 1], 0.25)), 1.25 * a, atol=1e-5)


def test_loop_times_visit_every_key_and_wrap():
    a, b, t = loop_times(3, 4)
    assert a.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and b.tolist() == [1] * 4 + [2] * 4 + [0] * 4
    assert t[:4, 0].tolist() == [0, 0.25, 0.5, 0.75]


@pytest.mark.parametrize("space", ["w", "z"])
def test_walk_starts_at_the_seed_images(tiny, space):
    G, _ = tiny
    ws = walk_ws(G, [3, 8], frames=5, space=space, truncation_psi=0.7)
    assert ws.shape == (10, G.num_ws, G.w_dim)
    keys = G.mapping(
        torch.stack([torch.from_numpy(np.random.RandomState(s).randn(G.z_dim)).float() for s in (3, 8)]),
        None,
        truncation_psi=0.7,
    )
    assert torch.allclose(ws[0], keys[0], atol=1e-5) and torch.allclose(ws[5], keys[1], atol=1e-5)
    frames = list(walk_frames(G, [3, 8], frames=5, space=space, truncation_psi=0.7))
    assert len(frames) == 10 and frames[0].shape == (16, 16, 3)
    assert np.abs(frames[0].astype(int) - generate(G, [3], 0.7)[0].permute(1, 2, 0).numpy()).max() <= 1


def test_gif_has_the_expected_frame_count(tiny, tmp_path):
    _, path = tiny
    out, count = walk_video(path, [0, 1, 2], tmp_path / "walk.gif", frames=4, fps=10, progress=True)
    assert out.suffix == ".gif" and count == 12 and gif_frames(out) == 12
    assert Image.open(out).size == (16, 16)


def test_grid_of_walks(tiny, tmp_path):
    G, path = tiny
    frames = list(walk_frames(G, list(range(6)), frames=2, grid=(3, 1)))
    assert len(frames) == 4 and frames[0].shape == (16, 48, 3)
    out, count = walk_video(path, list(range(8)), tmp_path / "grid.gif", frames=3, grid=(2, 2), progress=False)
    assert count == 6 and gif_frames(out) == 6 and Image.open(out).size == (32, 32)
    with pytest.raises(ValueError, match="cannot make 4 walks"):
        split_walks(list(range(6)), (2, 2))


@needs_ffmpeg
def test_mp4_has_the_expected_frame_count(tiny, tmp_path):
    import imageio.v3 as iio

    _, path = tiny
    out, count = walk_video(path, [0, 1], tmp_path / "walk.mp4", frames=5, space="z", fps=25, progress=False)
    assert out.suffix == ".mp4" and count == 10
    frames = list(iio.imiter(out))
    assert len(frames) == 10 and frames[0].shape == (16, 16, 3)


def test_mp4_falls_back_to_gif_without_ffmpeg(monkeypatch, tmp_path):
    monkeypatch.setattr(video, "have_ffmpeg", lambda: False)
    frames = [np.full([8, 8, 1], i * 20, np.uint8) for i in range(5)]
    out, count = write_video(frames, tmp_path / "x.mp4", fps=5)
    assert out == tmp_path / "x.gif" and count == 5 and gif_frames(out) == 5


def test_bad_arguments_are_named(tiny, tmp_path):
    G, path = tiny
    with pytest.raises(ValueError, match="--space 'q'"):
        walk_frames(G, [0, 1], space="q")
    with pytest.raises(ValueError, match="--fps 0"):
        write_video([], tmp_path / "a.gif", fps=0)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        walk_video(path, [0], tmp_path / "a.gif")
