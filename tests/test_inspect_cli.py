import json

import pytest
from typer.testing import CliRunner

from ganforge.cli import app
from ganforge.inspector import inspect_plan
from ganforge.plan import make_plan

runner = CliRunner()


def run_json(*args):
    result = runner.invoke(app, ["inspect", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_inspect_config_f_1024_json():
    info = run_json("--preset", "config-f", "--resolution", "1024")
    g, d = info["generator"], info["discriminator"]
    assert g["params"] == 30_370_060 and d["params"] == 29_012_513
    assert abs(g["params"] + d["params"] - 59.4e6) / 59.4e6 < 0.001
    assert g["num_ws"] == 18 and g["output_shape"] == [3, 1024, 1024]
    names = [row["name"] for row in g["layers"]]
    assert "synthesis.b1024.torgb" in names and "mapping.fc7" in names


def test_inspect_xxxl_on_meta_and_non_square():
    info = run_json("--preset", "XXXL", "--resolution", "1024")
    assert abs(info["total_params"] - 253.68e6) / 253.68e6 < 0.01
    info = run_json("--preset", "tiny", "--resolution", "512x256")
    assert info["generator"]["output_shape"] == [3, 256, 512]
    assert info["generator"]["activation_bytes_per_image"] > 0


def test_inspect_layer_rows_match_real_forward_shapes():
    plan = make_plan("tiny", "64x32")
    info = inspect_plan(plan)
    rows = {r["name"]: r["output_shape"] for r in info["generator"]["layers"]}
    assert rows["synthesis.b32x64.conv1"] == [plan.channels[-1], 32, 64]
    assert rows["synthesis.b4x8.conv1"] == [plan.channels[0], 4, 8]
    assert sum(r["params"] for r in info["generator"]["layers"]) == info["generator"]["params"]


def test_inspect_dcgan_family():
    info = run_json("--preset", "tiny", "--resolution", "64", "--family", "dcgan")
    assert info["generator"]["output_shape"] == [3, 64, 64]
    assert info["discriminator"]["params"] > 0


def test_inspect_shows_the_flattened_size_that_feeds_each_linear_layer():
    info = run_json("--preset", "tiny", "--resolution", "28", "--family", "dcgan")
    head = {r["name"]: r for r in info["discriminator"]["layers"]}["b7.conv"]  # A 7x7 conv on the 7x7 map.
    assert head["linear_in"] == [32, 7, 7] and head["linear_out"] == [1]
    base = {r["name"]: r for r in info["generator"]["layers"]}["b7.conv"]  # z as a 1x1 map -> the 7x7 base.
    assert base["linear_in"] == [64] and base["linear_out"] == [32, 7, 7]
    result = runner.invoke(app, ["inspect", "--preset", "tiny", "--resolution", "28", "--family", "dcgan"])
    assert "32×7×7 = 1568 → Linear" in result.stdout
    rows = {r["name"]: r for r in inspect_plan(make_plan("tiny", 32))["discriminator"]["layers"]}
    assert rows["b4.fc"]["linear_in"] == [32, 4, 4] and rows["b4.out"]["linear_in"] == [32]  # fc(x.flatten(1)).
    assert rows["b4.conv"]["linear_in"] is None  # A 3x3 conv with padding is not a Linear map.


def test_inspect_table_output():
    result = runner.invoke(app, ["inspect", "--preset", "tiny", "--resolution", "32"])
    assert result.exit_code == 0
    assert "num_ws: 8" in result.stdout and "G+D:" in result.stdout


@pytest.mark.parametrize(
    "args,text",
    [
        (["--resolution", "100"], "nearest valid sizes: 96x96"),
        (["--preset", "nope"], "--preset 'nope' is not one of"),
        (["--resolution", "32", "--channels", "4=16"], "no entry for resolution 8"),
        (["--map", "0"], "--map 0: give a number in 1..64"),
        (["--resolution", "80", "--input", "noconst"], "even sides"),
    ],
)
def test_inspect_errors_are_one_sentence(args, text):
    result = runner.invoke(app, ["inspect", *args])
    assert result.exit_code == 2
    assert text in " ".join(result.output.split())
    assert "Traceback" not in result.output
