"""The run's progress image (progress.png) and its progress line."""

import numpy as np
import pytest
from conftest import MemDataset, quiet, tiny_run_config
from PIL import Image

from ganforge.training import run as run_mod
from ganforge.training.loop import train
from ganforge.training.run import format_kimg, format_time, progress_picks


def progress(run_dir) -> np.ndarray:
    return np.asarray(Image.open(run_dir / "progress.png"))


def column(grid: np.ndarray, cols: int, count: int = 8, tile: int = 16) -> np.ndarray:
    """The first `count` tiles of a sample grid, stacked: one column of the progress image."""
    tiles = [grid[i // cols * tile :][:tile, i % cols * tile :][:, :tile] for i in range(count)]
    return np.concatenate(tiles)


def test_progress_image_grows_to_its_cap_and_survives_a_resume(tmp_path, monkeypatch):
    drawn = []
    write = run_mod.write_progress

    def recording(run_dir, cur_nimg, images):
        path = write(run_dir, cur_nimg, images)
        drawn.append(np.asarray(Image.open(path)))
        return path

    monkeypatch.setattr(run_mod, "write_progress", recording)
    monkeypatch.setattr(run_mod, "PROGRESS_SNAPSHOTS", 4)
    opts = dict(snap=0.008, tick=0.008, grid="4x3")  # 12 seeds: the first 8 are drawn, one row each.
    a = train(tiny_run_config(tmp_path, kimg=0.016, **opts), MemDataset(), log=quiet)  # Snapshots at 0, 8, 16.
    first = progress(a.run_dir)
    assert [d.shape for d in drawn] == [(128, 16, 3), (128, 32, 3), (128, 48, 3)]
    assert np.array_equal(first[:, 32:], column(np.asarray(Image.open(a.run_dir / "fakes_latest.png")), cols=4))
    assert not list(a.run_dir.glob(".progress.png*"))  # Written through a temporary file, then renamed.

    # Resumed: the earlier columns come back from the fakes-*.png files and each new snapshot goes on the right;
    # past the cap (4) the snapshots are spread evenly, the first and the newest always kept.
    b = train(tiny_run_config(tmp_path, kimg=0.032, **opts), MemDataset(), log=quiet)  # Snapshots at 24 and 32 images.
    at24, at32 = drawn[3:]
    assert at24.shape == at32.shape == (128, 64, 3) and np.array_equal(at24[:, :48], first)
    assert np.array_equal(at32[:, :32], first[:, :32]) and np.array_equal(at32[:, 32:48], at24[:, 48:])  # 0, 8, 24
    assert np.array_equal(at32[:, 48:], column(np.asarray(Image.open(b.run_dir / "fakes_latest.png")), cols=4))
    assert np.array_equal(progress(b.run_dir), at32)


def test_progress_image_skips_snapshots_of_a_rolled_back_run_and_broken_files(tmp_path):
    import torch

    images = torch.randint(0, 255, (4, 1, 8, 8), dtype=torch.uint8)  # Grayscale, 4 seeds: all 4 drawn.
    (tmp_path / "fakes-000000000010.png").write_bytes(b"not a png")  # Unreadable: left out.
    Image.fromarray(np.zeros((8, 24), np.uint8)).save(tmp_path / "fakes-000000000020.png")  # 3 tiles, not 4.
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(tmp_path / "fakes-000000000030.png")  # Good.
    Image.fromarray(np.full((16, 16), 9, np.uint8)).save(tmp_path / "fakes-000000000090.png")  # Newer: rolled back.
    arr = np.asarray(Image.open(run_mod.write_progress(tmp_path, 40, images)))
    assert arr.shape == (32, 16) and (arr[:, :8] == 7).all()
    assert np.array_equal(arr[:, 8:], images[:, 0].reshape(32, 8).numpy())


def test_progress_tiles_are_shrunk_for_large_models(tmp_path):
    import torch

    images = torch.randint(0, 255, (2, 3, 512, 1024), dtype=torch.uint8)
    arr = np.asarray(Image.open(run_mod.write_progress(tmp_path, 0, images)))
    assert arr.shape == (2 * 128, 256, 3)


def test_progress_picks_spread_evenly():
    assert progress_picks([0, 1, 2], most=4) == [0, 1, 2]
    assert progress_picks(list(range(10)), most=4) == [0, 3, 6, 9]
    assert progress_picks(list(range(100)))[0] == 0 and progress_picks(list(range(100)))[-1] == 99
    assert len(progress_picks(list(range(100)))) == run_mod.PROGRESS_SNAPSHOTS


@pytest.mark.parametrize(
    "done, total, text",
    [(16, 16, "0.016/0.016"), (24, 20, "0.02/0.02"), (1020, 12000, "1.02/12.00"), (8, 16, "0.008/0.016")],
)
def test_progress_kimg_never_passes_the_total(done, total, text):
    assert format_kimg(min(done, total), total) == text


def test_progress_line_past_the_total_shows_the_total_and_no_negative_eta():
    import torch

    class State:
        cur_nimg = 24

    line = run_mod.progress_line(State(), {"Timing/sec_per_kimg": 100.0}, 20, 5.0, torch.device("cpu"))
    assert line.startswith("kimg 0.02/0.02 | 100.00 s/kimg | ETA 0s |"), line
    assert format_time(-1.0) == "0s" and format_time(float("nan")) == "0s" and format_time(3725) == "1h 02m"


def test_demo_ends_by_saying_where_to_look():
    from pathlib import Path

    from ganforge.cli_train import demo_pointers

    run, ckpt = Path("runs/demo/run"), Path("runs/demo/run/checkpoint-000000012000.safetensors")
    text = "\n".join(demo_pointers(run, ckpt, Path("runs/demo")))
    assert "progress: runs/demo/run/progress.png" in text and "latest samples: runs/demo/run/fakes_latest.png" in text
    assert f"ganforge explore --checkpoint {ckpt} --runs runs/demo" in text
