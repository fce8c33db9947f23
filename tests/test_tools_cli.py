"""The tools' command functions (style-mix, video, export, project), run through a Typer app and the top-level
handler (run_cli) as ganforge's CLI does: refusals are one line, exit 1 (checked against the model) or 2 (usage)."""

from __future__ import annotations

import numpy as np
import pytest
import typer
from PIL import Image

from ganforge.console import run_cli
from ganforge.tools import cli

app = typer.Typer()
app.command("style-mix")(cli.style_mix)
app.command("video")(cli.video)
app.command("export")(cli.export)
app.command("project")(cli.project)


@pytest.fixture
def run(capsys):
    def invoke(*args: str, code: int = 0) -> str:
        with pytest.raises(SystemExit) as exit_:
            run_cli(app, [str(a) for a in args])
        out = capsys.readouterr()
        assert exit_.value.code == code, out
        assert "Traceback" not in out.err
        return " ".join((out.out + out.err).split())  # Rich wraps long lines at the terminal width.

    return invoke


def test_style_mix_command(tiny, tmp_path, run):
    _, ckpt = tiny
    out = tmp_path / "mix.png"
    run("style-mix", "--checkpoint", ckpt, "--rows", "0-1", "--cols", "2-4", "--styles", "0-2", "--out", out)
    assert np.asarray(Image.open(out)).shape == (48, 64, 3)
    error = run("style-mix", "--checkpoint", ckpt, "--out", out, code=1)  # Default --styles 0-6, but num_ws = 6.
    assert "out of range" in error and "0-5" in error


def test_video_command_says_what_it_wrote(tiny, tmp_path, run):
    _, ckpt = tiny
    output = run(
        "video",
        "--checkpoint",
        ckpt,
        "--seeds",
        "0-3",
        "--frames",
        "2",
        "--grid",
        "2x1",
        "--out",
        tmp_path / "walk.gif",
    )
    assert "4 frames as animated GIF" in output
    assert "--grid 'big'" in run("video", "--checkpoint", ckpt, "--grid", "big", code=2)


def test_export_command_reports_the_difference(tiny, tmp_path, run):
    _, ckpt = tiny
    output = run("export", ckpt, "--format", "torchscript", "--out", tmp_path / "G.pt")
    assert "max |exported - eager| =" in output and (tmp_path / "G.pt").is_file()


def test_project_command(tiny, tmp_path, run):
    G, ckpt = tiny
    Image.fromarray(np.full([16, 16, 3], 128, np.uint8)).save(tmp_path / "grey.png")
    output = run(
        "project",
        "--checkpoint",
        ckpt,
        "--target",
        tmp_path / "grey.png",
        "--outdir",
        tmp_path / "p",
        "--steps",
        "5",
        "--loss",
        "mse",
        "--no-save-video",
    )
    assert "mse distance" in output and (tmp_path / "p" / "projected_w.npz").is_file()
    assert not list((tmp_path / "p").glob("proj.*[fp]4"))


@pytest.mark.parametrize("loss", ["lpips"])
def test_project_command_without_a_detector_fails_cleanly(tiny, tmp_path, monkeypatch, loss, run):
    _, ckpt = tiny
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "empty-cache"))
    Image.fromarray(np.zeros([16, 16, 3], np.uint8)).save(tmp_path / "black.png")
    output = run(
        "project",
        "--checkpoint",
        ckpt,
        "--target",
        tmp_path / "black.png",
        "--loss",
        loss,
        "--outdir",
        tmp_path / "p",
        code=1,
    )
    assert "vgg16" in output and "--vgg" in output and not (tmp_path / "p").exists()
