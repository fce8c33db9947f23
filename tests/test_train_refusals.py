"""`ganforge train` refuses bad input with one line, exit 1 (2 for usage), and leaves no run folder behind."""

import subprocess
import sys
import zipfile

import pytest

from ganforge.data.demo import make_demo_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("d") / "shapes", count=16, resolution=(16, 16))


def common(data, out):
    return [
        "train",
        "--data",
        data,
        "--outdir",
        out,
        "--preset",
        "tiny",
        "--kimg",
        "0.016",
        "--batch",
        "8",
        "--workers",
        "0",
        "--no-tensorboard",
    ]


def assert_one_line(code, err, expect_code, *words):
    assert code == expect_code, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)


def make_bad_data(tmp_path, kind):
    if kind == "missing":
        return tmp_path / "missing.zip"
    if kind == "empty_folder":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty"
    if kind == "non_images":
        (tmp_path / "texts").mkdir()
        for i in range(3):
            (tmp_path / "texts" / f"{i}.txt").write_text("not an image")
        return tmp_path / "texts"
    if kind == "zip_without_images":
        with zipfile.ZipFile(tmp_path / "docs.zip", "w") as z:
            z.writestr("readme.txt", "hello")
        return tmp_path / "docs.zip"
    if kind == "text_file":
        (tmp_path / "notes.txt").write_text("hello")
        return tmp_path / "notes.txt"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, words",
    [
        ("missing", ["does not exist"]),
        ("empty_folder", ["holds no images"]),
        ("non_images", ["holds no images"]),
        ("zip_without_images", ["holds no images"]),
        ("text_file", ["not a zip"]),
    ],
)
def test_bad_data_is_one_line(tmp_path, cli, kind, words):
    bad = make_bad_data(tmp_path, kind)
    code, _, err = cli(*common(bad, tmp_path / "runs"))
    assert_one_line(code, err, 1, str(bad), *words)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "args, expect_code, words",
    [
        (["--freeze", "generator"], 1, ["--freeze 'generator' is not a freeze spec"]),
        (["--freeze", "G:b999"], 1, ["matches no layer", "b4, b8, b16"]),
        (["--device", "foo"], 1, ["--device 'foo' is not a device"]),
        (["--device", "cuda"], 1, ["no CUDA GPU is visible"]),
        (
            ["--resolution", "32"],
            1,
            ["are 16x16", "ganforge dataset prepare", "--resolution 32x32", "drop --resolution"],
        ),
        (["--resolution", "100"], 1, ["nearest valid sizes"]),
        (["--gamma", "nan"], 2, ["--gamma nan: give a finite number"]),
        (["--g-lr", "inf"], 2, ["finite"]),
        (["--g-lr", "-1"], 2, ["--g-lr value -1 is out of range"]),
        (["--batch-gpu", "3"], 1, ["--batch-gpu 3 must divide the per-process batch 8", "1, 2, 4, 8"]),
        (["--resume", "nowhere.safetensors"], 1, ["no such checkpoint file"]),
        (["--init", "nowhere.safetensors"], 1, ["does not exist"]),
        (["--seed", "99999999999"], 2, ["--seed 99999999999: give a number in 0..4,294,967,295"]),
        (["--bogus"], 2, ["No such option: --bogus"]),
    ],
)
def test_bad_options_are_one_line_and_leave_no_run_folder(tmp_path, cli, data, args, expect_code, words):
    code, _, err = cli(*common(data, tmp_path / "runs"), *args)
    assert_one_line(code, err, expect_code, *words)
    assert not (tmp_path / "runs").exists()


def test_bad_config_file_values(tmp_path, cli, data):
    cases = (
        ('batch = "8"\n', "--batch '8': give a whole number"),
        ('mirror = "no"\n', "--mirror 'no': give true or false"),
        ("kimg = nan\n", "--kimg nan: give a finite number"),
        ('cbase = "abc"\n', "--cbase 'abc': give a whole number"),
        ("[model]\nmapping_layers = 2.5\n", "--map 2.5: give a whole number"),  # An older [model] table.
        ("conv_clamp = nan\n", "--conv-clamp nan: give a finite number"),
        ("cmax = 99999\n", "--cmax 99999: give a number in 1..16,384"),
        ("lerning_rate = 1\n", "unknown option 'lerning_rate'"),
        ("g_lrr = 1\n", "unknown option 'g_lrr': did you mean g_lr?"),
    )
    for text, words in cases:
        toml = tmp_path / "run.toml"
        toml.write_text(f'data = "{data}"\noutdir = "{tmp_path / "runs"}"\n' + text)
        code, _, err = cli("train", "--config", toml)
        assert_one_line(code, err, 2, words)
    assert not (tmp_path / "runs").exists()


def test_output_under_a_file_is_one_line(tmp_path, cli, data):
    (tmp_path / "afile").write_text("x")
    code, _, err = cli(*common(data, tmp_path / "afile" / "runs"))
    assert_one_line(code, err, 1, f"--outdir {tmp_path / 'afile' / 'runs'}: {tmp_path / 'afile'} is a file")


def test_memory_check_refuses_and_names_the_batch_gpu_that_fits(tmp_path, cli, data, monkeypatch):
    import ganforge.metrics.features as features
    from ganforge.inspector import estimate_peak_bytes, inspect_plan
    from ganforge.plan import make_plan

    info = inspect_plan(make_plan("tiny", 16))
    free = estimate_peak_bytes(info, "train", 2) + 1  # Room for 2 images per pass, not 8.
    monkeypatch.setattr(features, "available_memory", lambda device: free)
    code, _, err = cli(*common(data, tmp_path / "runs"))
    assert_one_line(code, err, 1, "8 image(s) per pass needs an estimated", "use --batch-gpu 2", "--no-memory-check")
    assert not (tmp_path / "runs").exists()
    code, out, err = cli(*common(data, tmp_path / "runs"), "--batch-gpu", "2")  # The suggestion works.
    assert code == 0, err
    code, out, err = cli(*common(data, tmp_path / "runs2"), "--no-memory-check")
    assert code == 0, err


def test_refusal_in_a_real_process_has_no_traceback(tmp_path, data):
    proc = subprocess.run(
        [sys.executable, "-m", "ganforge", *map(str, common(data, tmp_path / "runs")), "--freeze", "generator"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert not (tmp_path / "runs").exists()
