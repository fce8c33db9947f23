"""Hostile and malformed checkpoint metadata: every class is refused with a sentence, fast, in bounded memory.

Each file is small (a tiny model's tensors) but its metadata asks for something else: a huge latent, a
ten-million-layer mapping network, 16384 channels, impossible sizes, wrong JSON types, damaged loop
counters or optimizer records, missing and misshapen tensors. They run in one child process with an
address-space limit, which reports per case what was raised and how long it took, and its peak RSS.
"""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from ganforge import build_discriminator, build_generator, make_plan
from ganforge.modelio import checkpoint as ck
from ganforge.training.config import TrainConfig, with_preset
from ganforge.training.state import build_state, save_state


def tiny_export(plan_edit=None, tensor_edit=None, meta_edit=None):
    """(tensors, meta JSON text) of a tiny export checkpoint, with edits applied."""
    plan = make_plan("tiny", 16)
    tensors = ck.join(G_ema=build_generator(plan).state_dict())
    meta = {"format": ck.FORMAT, "version": ck.VERSION, "kind": "export", "plan": plan.to_dict()}
    if plan_edit:
        plan_edit(meta["plan"])
    if meta_edit:
        meta_edit(meta)
    if tensor_edit:
        tensor_edit(tensors)
    return tensors, json.dumps(meta)


def setp(**kw):
    return lambda plan: plan.update(kw)


EXPORT_CASES = {
    "z_dim_8192": (setp(z_dim=8192), None, None, "mapping.fc0.weight has shape"),
    "z_dim_24000": (setp(z_dim=24000), None, None, "z_dim must be a number in 1..8192"),
    "mapping_1e7_layers": (setp(mapping_layers=10_000_000), None, None, "mapping_layers must be a number in 1..64"),
    "channels_16384": (setp(channels=[16384] * 3), None, None, "has shape"),
    "height_0": (setp(height=0), None, None, "height must be a number in 1..16384"),
    "height_99999": (setp(height=99999, width=99999), None, None, "height must be a number"),
    "plan_blocks_mismatch": (setp(height=32, width=32), None, None, "lists 3 block widths but its size 32x32 has 4"),
    "plan_base_mismatch": (setp(height=20, width=20), None, None, "base 4x4 does not fit its size 20x20"),
    "z_dim_string": (setp(z_dim="512"), None, None, "is not a whole number"),
    "z_dim_bool": (setp(z_dim=True), None, None, "is not a whole number"),
    "z_dim_float": (setp(z_dim=512.0), None, None, "is not a whole number"),
    "channels_string": (setp(channels="abc"), None, None, "channels must be a list"),
    "channels_huge_list": (setp(channels=list(range(1, 10**5))), None, None, "channels must be a list"),
    "family_unknown": (setp(family="stylegan9"), None, None, "family='stylegan9' is not valid"),
    "unknown_field": (setp(evil=1), None, None, "unknown fields"),
    "plan_not_object": (None, None, lambda m: m.update(plan=[1, 2]), "not an object of plan fields"),
    "no_plan": (None, None, lambda m: m.pop("plan"), "holds no model plan"),
    "conv_clamp_nan": (setp(conv_clamp=float("nan")), None, None, "conv_clamp"),
    "missing_tensor": (None, lambda t: t.pop("G_ema.mapping.fc0.weight"), None, "lacks the tensor(s) mapping.fc0"),
    "extra_tensor": (None, lambda t: t.update({"G_ema.evil": torch.zeros(2)}), None, "holds tensor(s) evil"),
    "wrong_shape": (
        None,
        lambda t: t.update({"G_ema.mapping.fc0.weight": torch.zeros(3, 3)}),
        None,
        "mapping.fc0.weight has shape [3, 3]",
    ),
    "no_networks": (None, lambda t: t.clear(), None, "holds no G, D or G_ema"),
}


def training_checkpoint(path):
    cfg = with_preset(TrainConfig(preset="tiny", resolution="16").resolved(), 16, 16)
    plan = make_plan("tiny", 16)
    state = build_state(plan, cfg, torch.device("cpu"))
    for p in state.G.parameters():  # One Adam step so that the optimizers hold state.
        p.grad = torch.zeros_like(p)
    for p in state.D.parameters():
        p.grad = torch.zeros_like(p)
    state.opt_G.step()
    state.opt_D.step()
    save_state(state, path)
    return ck.load_checkpoint(path)


def settrain(key, value):
    return lambda m: m.update({key: value})


TRAINING_CASES = {
    "cur_nimg_negative": (settrain("cur_nimg", -1), None, "cur_nimg=-1 is not a count"),
    "cur_nimg_string": (settrain("cur_nimg", "x"), None, "cur_nimg=x is not a count"),
    "cur_nimg_huge": (settrain("cur_nimg", 10**300), None, "is not a count"),
    "lr_scale_nan": (settrain("lr_scale", float("nan")), None, "lr_scale=nan is not a positive number"),
    "config_string": (settrain("config", "hello"), None, "its config is not an object"),
    "opt_groups_missing": (settrain("opt_G", {}), None, "opt_G record has no param_groups"),
    "opt_params_wrong": (lambda m: m["opt_D"]["param_groups"][0].update(params=[0, 1]), None, "opt_D lists 2"),
    "opt_state_shape": (None, lambda t: t.update({"opt_G.0.exp_avg": torch.zeros(7)}), "opt_G.0.exp_avg has shape"),
    "opt_state_key": (None, lambda t: t.update({"opt_G.0.evil": torch.zeros(())}), "is not Adam state"),
    "no_pl_mean": (None, lambda t: t.pop("loss.pl_mean"), "lacks loss.pl_mean"),
    "no_D": (None, lambda t: [t.pop(k) for k in list(t) if k.startswith("D.")], "without D"),
}


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    for name, (plan_edit, tensor_edit, meta_edit, _) in EXPORT_CASES.items():
        tensors, text = tiny_export(plan_edit, tensor_edit, meta_edit)
        ck.write_raw(root / f"{name}.safetensors", tensors, text)
    base_tensors, base_meta = training_checkpoint(root / "train-good.safetensors")
    for name, (meta_edit, tensor_edit, _) in TRAINING_CASES.items():
        meta, tensors = json.loads(json.dumps(base_meta)), dict(base_tensors)
        if meta_edit:
            meta_edit(meta)
        if tensor_edit:
            tensor_edit(tensors)
        ck.write_raw(root / f"train-{name}.safetensors", tensors, json.dumps(meta))
    return root


CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    from ganforge.modelio import check
    from ganforge.errors import GanforgeError
    from ganforge.modelio.load import load_generator
    from ganforge.tools.transfer import transfer
    from ganforge.resources import peak_rss_gb
    out = {}
    for path in sorted(Path(sys.argv[1]).glob("*.safetensors")):
        t0 = time.perf_counter()
        try:
            if path.name.startswith("train-"):
                problem = check.problem(path)
                result = "ok" if problem is None else "refused: " + problem
            else:
                load_generator(path)
                result = "ok"
        except GanforgeError as e:
            result = "refused: " + str(e)
        if not path.name.startswith("train-"):  # The same file through `ganforge transfer`.
            try:
                transfer(path, Path(sys.argv[1]) / "out" / path.name)
                result += " | transfer ok"
            except GanforgeError as e:
                result += " | transfer refused"
        out[path.stem] = [result, time.perf_counter() - t0]
    out["peak_rss_gib"] = peak_rss_gb()
    print(json.dumps(out))
""")


def test_hostile_metadata_is_refused_fast_in_bounded_memory(hostile_dir):
    proc = subprocess.run([sys.executable, "-c", CHILD, str(hostile_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]  # Never a signal, never an uncaught error.
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["peak_rss_gib"] < 1.5, out["peak_rss_gib"]
    assert out["train-good"][0] == "ok"
    for name, (*_, words) in EXPORT_CASES.items():
        result, seconds = out[name]
        assert result.startswith("refused: ") and words in result and "transfer refused" in result, (name, result)
        assert "\n" not in result and seconds < 10, (name, seconds)
    for name, (*_, words) in TRAINING_CASES.items():
        result, seconds = out[f"train-{name}"]
        assert result.startswith("refused: ") and words in result, (name, result)
        assert seconds < 10, (name, seconds)


def test_resume_and_init_refuse_hostile_checkpoints_with_one_line(hostile_dir, tmp_path, cli):
    from ganforge.data.demo import make_demo_dataset

    data = make_demo_dataset(tmp_path / "shapes", count=16, resolution=(16, 16))
    common = [
        "train",
        "--data",
        data,
        "--outdir",
        tmp_path / "runs",
        "--kimg",
        "0.016",
        "--batch",
        "8",
        "--workers",
        "0",
        "--no-tensorboard",
    ]
    code, _, err = cli(*common, "--resume", hostile_dir / "train-lr_scale_nan.safetensors")
    assert code == 1 and err.startswith("error: --resume") and "lr_scale=nan" in err and err.count("\n") == 1
    code, _, err = cli(*common, "--init", hostile_dir / "z_dim_8192.safetensors")
    assert code == 1 and err.startswith("error: --init") and "has shape" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()  # Refused before a run folder was made.
    code, _, err = cli(
        "generate", "--checkpoint", hostile_dir / "mapping_1e7_layers.safetensors", "--outdir", tmp_path / "gen"
    )
    assert code == 1 and "mapping_layers must be a number in 1..64" in err and not (tmp_path / "gen").exists()
    code, _, err = cli("metrics", "--checkpoint", hostile_dir / "train-no_D.safetensors", "--data", data)
    assert code == 1 and "training checkpoint without D" in err and err.count("\n") == 1
    code, _, err = cli("transfer", hostile_dir / "wrong_shape.safetensors", "--out", tmp_path / "t.safetensors")
    assert code == 1 and "mapping.fc0.weight has shape [3, 3]" in err and not (tmp_path / "t.safetensors").exists()


def test_checks_do_not_refuse_real_checkpoints(tmp_path):
    """The same checks pass every network a real model has: DCGAN with PatchGAN, conditional, non-square."""
    from ganforge.modelio import check

    for plan, patch in (
        (make_plan("tiny", "32x16", family="dcgan"), True),
        (make_plan("tiny", 16, c_dim=3), False),
        (make_plan("tiny", "64x32"), False),
    ):
        tensors = ck.join(G=build_generator(plan).state_dict(), D=build_discriminator(plan, patch=patch).state_dict())
        path = tmp_path / f"{plan.family}-{plan.resolution_text}.safetensors"
        ck.save_checkpoint(path, tensors, {"kind": "export", "plan": plan.to_dict(), "config": {"patch_d": patch}})
        assert check.problem(path) is None, path


@pytest.mark.parametrize(
    "plan_args",
    [
        ("config-f", 1024),
        ("XXXL", 1024),
        ("paper256", "512x256"),
        ("cifar", 32, {"c_dim": 10}),
        ("tiny", 16, {"style": "adain", "g_input": "noconst"}),
        ("tiny", "32x16", {"family": "dcgan"}),
        ("tiny", 64, {"family": "dcgan", "c_dim": 5}),
        ("tiny", 16, {"z_dim": 8192, "w_dim": 8192, "mapping_layers": 64}),
        ("tiny", 56, {"cbase": 2**24, "cmax": 16384}),
        ("stylegan2", 256, {"family": "stylegan3-r"}),
        ("tiny", 16, {"family": "stylegan3-t", "sg3_cbase": 2**24, "sg3_cmax": 16384}),  # G far wider than D.
    ],
)
def test_rough_size_bounds_the_real_networks(plan_args):
    """rough_bytes decides CPU or meta for the shape check: it must never underestimate a real network."""
    from ganforge.netcheck import parameter_count, rough_bytes

    preset, res, *kw = plan_args
    plan = make_plan(preset, res, **(kw[0] if kw else {}))
    real = 4 * (parameter_count(plan, "G") + parameter_count(plan, "D") + parameter_count(plan, "D", patch=True))
    assert real <= rough_bytes(plan)
