"""One schema: for every TrainConfig field, the command line, a TOML file and --dry-run agree, and bad values
are refused with the option's name. The cases are generated from the schema, not listed by hand."""

import dataclasses
import json

import pytest

from ganforge.training.config import FIELDS, Opt, TrainConfig, flag

SPECIAL = {  # Fields whose valid values are not implied by their type and range.
    "data": "",
    "run_name": "my-run",
    "resolution": "16",
    "device": "cpu",
    "resume": "latest",
    "init": "weights.safetensors",
    "freeze": "mapping",
    "diffaugment": "color",
    "metrics": "fid50k_full",
    "detector_inception": "inception.pt",
    "detector_vgg": "vgg16.pt",
    "channels": "4=16,8=16,16=8",
    "conv_clamp": "none",
    "grid": "4x2",
    "outdir": "elsewhere",
}


def kinds(f):
    return {k.strip() for k in str(f.type).split("|")}


def sample(f: dataclasses.Field):
    """A valid value that differs from the default."""
    o: Opt = f.metadata["opt"]
    if f.name in SPECIAL:
        return SPECIAL[f.name]
    if o.choices:
        return next(c for c in reversed(o.choices) if c != f.default)
    if kinds(f) == {"bool"}:
        return not f.default
    if o.schedule:
        return "0.5,0.25@10"
    hi = o.hi if o.hi is not None else 10
    step = 1 if "int" in kinds(f) else 0.25
    candidates = [min(hi, (o.lo or 0) + k * step) for k in (3, 5)]
    value = next(v for v in candidates if v != f.default)
    return int(value) if "int" in kinds(f) else float(value)


def toml_value(value) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def cli_args(name, value) -> list[str]:
    if isinstance(value, bool):
        return [flag(name) if value else "--no-" + name.replace("_", "-")]
    return [flag(name), str(value)]


CLI_FIELDS = [f for f in FIELDS.values() if f.metadata["opt"].cli]
AGREE_FIELDS = [f for f in CLI_FIELDS if f.name != "data"]  # With data, a dry run fills the preset (tested below).


def test_every_field_has_a_flag_and_help():
    assert len(CLI_FIELDS) == len(FIELDS)
    for f in FIELDS.values():
        assert f.metadata["opt"].help.endswith((".", ")")), f.name


@pytest.mark.parametrize("f", AGREE_FIELDS, ids=lambda f: f.name)
def test_cli_toml_and_dry_run_agree(f, tmp_path, cli):
    value = sample(f)
    code, out, err = cli("train", "--dry-run", *cli_args(f.name, value))
    assert code == 0, err
    from_cli = json.loads(out)
    toml = tmp_path / "run.toml"
    toml.write_text(f"{f.name.replace('_', '-')} = {toml_value(value)}\n")
    code, out, err = cli("train", "--dry-run", "--config", toml)
    assert code == 0, err
    from_toml = json.loads(out)
    assert from_cli == from_toml  # Every key, not only the one set.
    expected = TrainConfig.from_dict({f.name: value}).resolved().to_dict()
    assert from_cli == expected and from_cli[f.name] != dataclasses.asdict(TrainConfig())[f.name]
    dump = tmp_path / "dump.json"  # A dry run's output is itself a valid config file.
    dump.write_text(json.dumps(from_cli))
    code, out, err = cli("train", "--dry-run", "--config", dump)
    assert code == 0 and json.loads(out) == from_cli, err


def bad_values(f: dataclasses.Field):
    """(value, words in the refusal) for each bad-value class that applies to the field."""
    o: Opt = f.metadata["opt"]
    k = kinds(f)
    cases = []
    if k & {"int", "float"} and not o.schedule and f.name != "conv_clamp":
        cases.append(("abc", "give a"))
        if o.hi is not None:
            cases.append((o.hi * 10 + 1, "give a number in"))
    if "float" in k:
        cases.append((float("nan"), "finite"))
    if o.choices:
        cases.append(("bogus", "is not one of"))
    if o.schedule:
        cases.append(("1,2@x", "is not VALUE or VALUE@KIMG"))
    if k == {"bool"}:
        cases.append(("no", "give true or false"))
    return cases


BAD = [(f, v, w) for f in FIELDS.values() for v, w in bad_values(f)]


@pytest.mark.parametrize("f, value, words", BAD, ids=[f"{f.name}={v}" for f, v, _ in BAD])
def test_bad_values_are_refused_with_the_option_name(f, value, words, tmp_path, cli):
    toml = tmp_path / "run.toml"
    text = f'"{value}"' if isinstance(value, str) else ("nan" if value != value else repr(value))
    toml.write_text(f"{f.name} = {text}\n")
    code, _, err = cli("train", "--dry-run", "--config", toml)
    assert code == 2 and err.startswith(f"error: {flag(f.name)}") and words in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "key, near", [("g_lrr", "g_lr"), ("gama", "gamma"), ("batchsize", "batch"), ("mirorr", "mirror")]
)
def test_unknown_keys_name_the_nearest(key, near, tmp_path, cli):
    toml = tmp_path / "run.toml"
    toml.write_text(f"{key} = 1\n")
    code, _, err = cli("train", "--dry-run", "--config", toml)
    assert code == 2 and f"unknown option '{key}': did you mean {near}?" in err


def test_channel_table_in_toml_with_string_or_integer_keys(tmp_path, cli):
    toml = tmp_path / "run.toml"
    toml.write_text('[channels]\n4 = 16\n"8" = 16\n16 = 8\n')
    code, out, err = cli("train", "--dry-run", "--config", toml)
    assert code == 0, err
    assert json.loads(out)["channels"] == {"4": 16, "8": 16, "16": 8}


def test_dry_run_with_data_fills_the_preset_from_the_data(tmp_path, cli):
    from ganforge.data.demo import make_demo_dataset

    data = make_demo_dataset(tmp_path / "shapes", count=8, resolution=(32, 32))
    code, out, err = cli("train", "--dry-run", "--data", data)
    assert code == 0, err
    resolved = json.loads(out)
    # Official auto at 32 px on one process: batch 32, γ 0.0002·32²/32, lr 0.0025, EMA 10 kimg, 2 mapping layers.
    assert (resolved["batch"], resolved["g_lr"], resolved["ema_kimg"], resolved["model"]) == (32, 0.0025, 10.0, "auto")
    assert resolved["gamma"] == pytest.approx(0.0064) and resolved["data"] == str(data)
