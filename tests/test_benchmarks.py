"""The benchmark scripts run end to end at tiny sizes (so that they never rot)."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `pytest` without `python -m`: the benchmarks folder is not importable otherwise.
    sys.path.insert(0, str(REPO))

from conftest import OFFICIAL_SG2, OFFICIAL_SG3, require_shared  # noqa: E402

from benchmarks import infer_speed, quality_vs_official, scaling, train_speed, vs_official  # noqa: E402


def test_train_speed_tiny(capsys):
    r = train_speed.main(
        [
            "--preset",
            "tiny",
            "--resolution",
            "16",
            "--batch",
            "4",
            "--iters",
            "2",
            "--warmup",
            "1",
            "--device",
            "cpu",
            "--json",
        ]
    )
    assert r["img_per_s"] > 0 and r["peak_rss_gb"] > 0
    assert set(r["phase_seconds"]) == {"Gmain", "Dmain", "ema"}  # Iterations 1 and 2: no lazy regularization.
    assert json.loads(capsys.readouterr().out)["iters"] == 2


def test_train_speed_reference_ops_and_table(capsys):
    r = train_speed.main(
        [
            "--preset",
            "tiny",
            "--resolution",
            "16",
            "--batch",
            "4",
            "--iters",
            "2",
            "--warmup",
            "0",
            "--ops",
            "reference",
            "--device",
            "cpu",
        ]
    )
    assert r["ops"] == "reference"
    assert set(r["phase_seconds"]) == {"Gmain", "Greg", "Dmain", "Dreg", "ema"}  # Iteration 0 runs every phase.
    assert "img/s" in capsys.readouterr().out


def test_train_speed_sampled_cycle_with_ada_and_compile(capsys, monkeypatch):
    """The composed 16-iteration cycle (every phase timed), ADA on, the main phases through torch.compile."""
    from ganforge.nn import compile as compile_module

    monkeypatch.setattr(compile_module, "DEFAULT_BACKEND", "aot_eager")
    r = train_speed.main(
        [
            "--preset",
            "tiny",
            "--resolution",
            "16",
            "--batch",
            "4",
            "--sampled",
            "1",
            "--augment",
            "ada",
            "--compile",
            "--device",
            "cpu",
            "--json",
        ]
    )
    assert r["augment"] == "ada" and r["compile"] and r["mode"].startswith("sampled cycle")
    ph = r["phase_seconds"]
    assert set(ph) == {"Gmain", "Greg", "Dmain", "Dreg", "ema"}
    cycle = 16 * (ph["Gmain"] + ph["Dmain"] + ph["ema"]) + 4 * ph["Greg"] + ph["Dreg"]
    assert r["seconds"] == pytest.approx(cycle) and r["img_per_s"] == pytest.approx(16 * 4 / cycle)


def test_infer_speed_tiny_in_subprocesses():
    r = infer_speed.main(
        ["--preset", "tiny", "--resolution", "16", "--iters", "2", "--max-batch", "2", "--device", "cpu", "--json"]
    )
    assert [row["batch"] for row in r["rows"]] == [1, 2]
    assert all(row["img_per_s"] > 0 and row["peak_rss_gb"] > 0 for row in r["rows"])
    assert r["largest_batch"] == 2


def test_infer_speed_script_in_process():
    """As a script (its documented use), bf16 opt-in, one process."""
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/infer_speed.py",
            "--preset",
            "tiny",
            "--resolution",
            "16",
            "--iters",
            "2",
            "--max-batch",
            "2",
            "--in-process",
            "--precision",
            "bf16",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    r = json.loads(out)
    assert r["precision"] == "bf16" and len(r["rows"]) == 2


def test_scaling_quick():
    r = scaling.main(["--quick", "--max-seconds", "1", "--device", "cpu", "--json"])  # The first rows only.
    measured = [row for row in r["rows"] if row["train"].get("measured")]
    assert measured, r
    for row in measured:
        assert row["train"]["seconds_per_iter"] > 0 and row["train"]["peak_gb"] > 0
        assert row["estimate"]["train_gb"] > 0


def test_vs_official_quick():
    OFFICIAL = require_shared(OFFICIAL_SG2, "training/networks.py", "the benchmark runs the official code beside ours")
    r = vs_official.main(
        ["--official", str(OFFICIAL), "--quick", "--configs", "narrow", "--infer-res", "16", "--reps", "1", "--json"]
    )
    assert r["train_ratio"] > 0 and r["infer_ratio"] > 0 and r["peak_rss_ratio"] > 0
    assert r["fp32_train_ratio"] > 0 and r["fp32_peak_rss_ratio"] > 0
    assert r["parity_ok"], r["parity"]
    assert {row["task"] for row in r["rows"]} == {"train", "infer"}
    assert [row["default"] for row in r["rows"] if row["task"] == "infer"] == [True]  # Inference: fp32 either way.
    for row in r["rows"]:  # Both tools report the phases of one cycle.
        if row["task"] == "train":
            assert {"Gmain", "Greg", "Dmain", "Dreg", "ema"} <= set(row["official_phase_seconds"])
            assert {"Gmain", "Greg", "Dmain", "Dreg", "ema"} <= set(row["ganforge_phase_seconds"])


def test_vs_official_sg3_quick():
    """The StyleGAN3-T and -R rows at their --quick size: official StyleGAN3 code and ganforge, each in its workers."""
    OFFICIAL = require_shared(
        OFFICIAL_SG3, "training/networks_stylegan3.py", "the benchmark runs the official StyleGAN3 code beside ours"
    )
    # Without --families: every family whose official folder was given (both StyleGAN3 ones).
    args = argparse.Namespace(official=None, official_sg3=str(OFFICIAL), families=None)
    vs_official.check_families(args)
    assert args.families == "stylegan3-t,stylegan3-r"
    # One family end to end (the R networks, the less regular of the two), to keep the suite short; both
    # families' numerical parity with the official code is tested in tests/test_parity_sg3.py.
    r = vs_official.main(
        ["--official-sg3", str(OFFICIAL), "--families", "stylegan3-r", "--quick", "--reps", "1", "--json"]
    )
    assert r["families"] == ["stylegan3-r"]
    assert r["parity_ok"], r["parity"]
    assert set(r["parity"]) == {"stylegan3-r"}
    for family, ratios in r["by_family"].items():
        assert ratios["train_ratio"] > 0 and ratios["infer_ratio"] > 0 and ratios["peak_rss_ratio"] > 0, family
    assert {(row["family"], row["task"]) for row in r["rows"]} == {("stylegan3-r", task) for task in ("train", "infer")}
    for row in r["rows"]:  # The StyleGAN3 recipe: no path length, so no Greg phase on either side.
        if row["task"] == "train":
            assert set(row["official_phase_seconds"]) == {"Gmain", "Dmain", "Dreg", "ema"}
            assert set(row["ganforge_phase_seconds"]) == {"Gmain", "Dmain", "Dreg", "ema"}


def test_vs_official_families_need_their_folders():
    with pytest.raises(SystemExit, match="--official-sg3"):
        vs_official.main(["--official", "somewhere", "--families", "stylegan2,stylegan3-r"])
    with pytest.raises(SystemExit, match="--official "):
        vs_official.main(["--families", "stylegan2"])
    with pytest.raises(SystemExit, match="'stylegan4'"):
        vs_official.main(["--official-sg3", "somewhere", "--families", "stylegan4"])


def test_quality_vs_official_quick(tmp_path, capsys):
    """The quality race end to end at its --quick size: the official training loop and ganforge.train on the same
    prepared data, snapshots at the same image counts, FID by a stand-in detector (no Inception needed)."""
    OFFICIAL = require_shared(OFFICIAL_SG2, "training/training_loop.py", "the race runs the official training loop")
    from ganforge.data.demo import make_demo_dataset

    data = make_demo_dataset(tmp_path / "shapes", count=64, resolution=(32, 32))
    argv = ["--official", str(OFFICIAL), "--data", str(data), "--workdir", str(tmp_path / "race"), "--quick", "--json"]
    r = quality_vs_official.main(argv)
    assert json.loads(capsys.readouterr().out) == r
    assert {"fid_official", "fid_ganforge", "fid_ratio", "time_ratio", "curve"} <= set(r)
    for key in ("fid_official", "fid_ganforge", "fid_ratio", "time_ratio"):
        assert math.isfinite(r[key]) and r[key] > 0, (key, r[key])
    points = r["race"]["snapshot_nimg"]
    assert points[0] == 0 and len(points) == r["race"]["points"] + 1
    assert [row["nimg"] for row in r["curve"]] == points
    assert all(math.isfinite(row["fid_official"]) and math.isfinite(row["fid_ganforge"]) for row in r["curve"])
    assert r["official_nimg"] == r["ganforge_nimg"] == points[-1]  # Both trainers showed D the same images.
    assert r["num_real"] == 64 and r["num_gen"] == 64
    assert r["importer_max_abs_diff"] < 1e-4  # ganforge reads the official snapshot as the official code runs it.
    # With two cores or more the sides train and are measured at the same time, each pinned to its own half.
    halves = quality_vs_official.core_halves("cpu")
    assert r["side_by_side"] == (halves is not None)
    if halves is not None:
        assert not halves[0] & halves[1] and len(halves[0]) == len(halves[1]) == r["threads"]
        assert (tmp_path / "race" / "fid-official.log").is_file() and (tmp_path / "race" / "fid-ganforge.log").is_file()
    assert quality_vs_official.core_halves("cuda") is None  # One accelerator is never split between the sides.


@pytest.mark.parametrize(
    "flag, value",
    [("--pl-weight", "nan"), ("--pl-weight", "-1"), ("--style-mixing", "1.5"), ("--kimg", "inf"), ("--lr", "0")],
)
def test_quality_vs_official_refuses_bad_numbers_in_one_line(flag, value, capsys):
    """A NaN, negative or out-of-range recipe number is refused before any data is prepared or training starts."""
    with pytest.raises(SystemExit) as e:
        quality_vs_official.main(["--official", "nowhere", "--data", "nowhere.zip", flag, value])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{flag} " in err and "out of range" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["truncated zip", "text file", "empty folder", "workdir is a file"])
def test_quality_vs_official_refuses_bad_data_or_workdir_in_one_line(kind, tmp_path, capsys):
    """Damaged or foreign --data, or a --workdir that is a file, is one line before any training."""
    official = tmp_path / "official"
    (official / "training").mkdir(parents=True)
    (official / "training" / "training_loop.py").write_text("")
    data, workdir = tmp_path / "data", tmp_path / "work"
    if kind == "truncated zip":
        with zipfile.ZipFile(tmp_path / "full.zip", "w") as z:
            for k in range(4):
                z.writestr(f"{k}.png", bytes(range(256)) * 64)
        data = tmp_path / "cut.zip"
        data.write_bytes((tmp_path / "full.zip").read_bytes()[:5000])
    elif kind == "text file":
        data = tmp_path / "notes.txt"
        data.write_text("not images")
    else:
        data.mkdir()
    if kind == "workdir is a file":
        workdir.write_text("")
    argv = ["--official", str(official), "--data", str(data), "--quick", "--workdir", str(workdir)]
    with pytest.raises(SystemExit) as e:
        quality_vs_official.main(argv)
    message = e.value.code if isinstance(e.value.code, str) else capsys.readouterr().err.strip().splitlines()[-1]
    assert "Traceback" not in message and "\n" not in message.strip()
    assert ("--workdir" if kind == "workdir is a file" else "--data") in message
    assert not (tmp_path / "work" / "official").exists()  # No training started.


def test_quality_vs_official_a_failed_side_stops_the_other(tmp_path, monkeypatch):
    """The side that fails first is reported at once and the other side's process is stopped, not left running."""
    pid_file = tmp_path / "sleeper.pid"
    commands = {
        "official": [
            sys.executable,
            "-c",
            f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)",
        ],
        "ganforge": [
            sys.executable,
            "-c",
            "import sys, time; time.sleep(2); print('bad data', file=sys.stderr); raise SystemExit(3)",
        ],
    }
    monkeypatch.setattr(quality_vs_official, "worker_command", lambda task, spec: commands[task])
    jobs = [(task, {}, tmp_path / f"{task}.log", None) for task in commands]
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"(?s)the ganforge worker failed \(exit 3\).*bad data"):
        quality_vs_official.spawn(jobs)
    assert time.perf_counter() - t0 < 60
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # Killed and reaped.
        os.kill(pid, 0)


def test_vs_official_summary_without_workers():
    """The table and ratios from canned worker results (no official code needed)."""
    common = dict(config="wide", resolution=32, batch=16, cpu_seconds_total=1.0, phase_seconds={"Gmain": 1.0})
    results = [
        dict(common, task="train", tool="official", precision="fp32", img_per_s=1.0, peak_rss_gb=4.0),
        dict(common, task="train", tool="ganforge", precision="fp32", img_per_s=2.0, peak_rss_gb=2.0),
        dict(common, task="infer", tool="official", precision="fp32", img_per_s=5.0, peak_rss_gb=1.0),
        dict(common, task="infer", tool="ganforge", precision="fp32", img_per_s=6.0, peak_rss_gb=1.0),
        dict(task="parity", tool="both", config="wide", G_eval=1e-6, G_train=1e-6, D=2e-6, R1=1e-5),
    ]
    s = vs_official.summarize(results, "plain")
    assert s["train_ratio"] == 2.0 and s["infer_ratio"] == 1.2 and s["peak_rss_ratio"] == 1.0 and s["parity_ok"]
    assert s["fp32_train_ratio"] == 2.0  # Without a 'default' flag, the fp32 rows are ganforge's default.
    vs_official.print_table(s, "header")
    bf16 = dict(common, task="train", tool="ganforge", precision="bf16", default=True, img_per_s=3.0, peak_rss_gb=1.0)
    results = [
        {**r, "default": False} if r.get("precision") == "fp32" and r["tool"] == "ganforge" else r for r in results
    ] + [bf16]
    s = vs_official.summarize(results, "plain")
    assert s["train_ratio"] == 3.0 and s["fp32_train_ratio"] == 2.0 and s["default_precision"]["train"] == "bf16"
    sg3 = dict(common, family="stylegan3-r", config="stylegan3-r", task="infer", precision="fp32", peak_rss_gb=1.0)
    results += [  # Two batch sizes of one configuration: each row is matched with the official run of its batch.
        dict(sg3, tool="official", batch=1, img_per_s=1.0),
        dict(sg3, tool="ganforge", batch=1, img_per_s=0.5),
        dict(sg3, tool="official", batch=8, img_per_s=2.0),
        dict(sg3, tool="ganforge", batch=8, img_per_s=4.0),
    ]
    s = vs_official.summarize(results, "plain")
    assert s["by_family"]["stylegan3-r"]["infer_ratio"] == 0.5
    assert s["by_family"]["stylegan2"]["fp32_infer_ratio"] == 1.2
    assert s["infer_ratio"] == 0.5  # The lowest over every family.
    assert [row["family"] for row in s["rows"]][-2:] == ["stylegan3-r"] * 2
    vs_official.print_table(s, "header")


def test_fid_speed_quick(capsys):
    """Every stage of the FID speed table at --quick size (stand-in detector with default_1.pt's layout)."""
    from benchmarks import fid_speed

    r = fid_speed.main(["--quick", "--json"])
    assert json.loads(capsys.readouterr().out) == r
    stages = [row["stage"] for row in r["rows"]]
    assert stages == [
        "decode",
        "resize",
        "forward file",
        "forward copy",
        "features",
        "frechet",
        "frechet",
        "metrics",
        "metrics cached",
    ]
    assert all(row["seconds"] > 0 for row in r["rows"])
    assert all(row["images_per_s"] > 0 for row in r["rows"] if row["stage"] != "frechet")
    assert r["forward_copy_max_abs_diff"] < 1e-4  # The CPU copy computes the file's features.
    fid = r["fid"]
    assert abs(fid["ganforge"] - fid["sqrtm"]) < 1e-6 and abs(fid["command"] - fid["ganforge"]) < 1e-4


def test_demo_quality_quick(tmp_path, capsys):
    """The demo recipe trains from scratch and gets an FID (a few iterations, stand-in detector)."""
    from benchmarks import demo_quality

    rows = demo_quality.main(["--quick", "--json", "--workdir", str(tmp_path)])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["recipe"] for r in rows] == ["demo"] and printed[0]["recipe"] == "demo"
    row = rows[0]
    assert row["preset"] == "demo" and row["family"] == "stylegan2" and row["train_seconds"] > 0
    assert math.isfinite(row["fid"]) and row["fid"] > 0 and row["fid_num_gen"] == 16 and row["fid_num_real"] == 96
    assert Path(row["checkpoint"]).is_file() and (tmp_path / "demo" / "run" / "progress.png").is_file()

    # The calibration row alone: background-only images (the gradients, no shape) against the same data.
    (bg,) = demo_quality.main(["--quick", "--json", "--backgrounds", "--workdir", str(tmp_path)])
    assert bg["recipe"] == "backgrounds" and math.isfinite(bg["fid"]) and bg["fid"] >= 0
    assert bg["fid_num_gen"] == 16 and len(list((tmp_path / "backgrounds-16" / "00000").glob("*.png"))) == 16


@pytest.mark.parametrize("argv", [["--num-gen", "0"], ["--num-gen", "-5"], ["--workdir", "FILE"]])
def test_demo_quality_refuses_bad_arguments_in_one_line(tmp_path, capsys, argv):
    from benchmarks import demo_quality

    (tmp_path / "FILE").write_text("not a folder")
    argv = [str(tmp_path / "FILE") if a == "FILE" else a for a in argv]
    with pytest.raises(SystemExit) as e:
        demo_quality.main(["--backgrounds", "--quick", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert ("at least 2 generated images" in err) or ("is a file: give a folder" in err)
    assert not list(tmp_path.glob("backgrounds*"))
