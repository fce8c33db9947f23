"""The top-level API: the names exist and are documented, `import ganforge` stays cheap, and the loaders work on
a ganforge checkpoint and on an official StyleGAN2-ADA pickle."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import OFFICIAL_PKLS, RandomImages, require_shared

import ganforge
from ganforge.modelio.checkpoint import CheckpointError, save_checkpoint

PKL_DIR = OFFICIAL_PKLS
API = (
    "make_plan",
    "Plan",
    "TrainConfig",
    "build_generator",
    "build_discriminator",
    "load_generator",
    "load_checkpoint",
    "Checkpoint",
    "train",
)


@pytest.mark.parametrize("name", API)
def test_exported_and_documented_with_an_example(name):
    assert name in ganforge.__all__
    doc = inspect.getdoc(getattr(ganforge, name)) or ""
    assert "Example" in doc and "```python" in doc, f"{name} needs a docstring with a short example"


def test_every_exported_name_exists():
    missing = [name for name in ganforge.__all__ if not hasattr(ganforge, name)]
    assert not missing
    assert set(API) <= set(dir(ganforge))


def test_import_does_not_load_torch():
    code = "import sys, ganforge; ganforge.TrainConfig; print([m for m in ('torch', 'numpy') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"import ganforge (and TrainConfig) loaded {out.strip()}"


def test_load_generator_reads_a_ganforge_checkpoint(tiny):
    G_ref, path = tiny
    G = ganforge.load_generator(path)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z, None, noise_mode="const"), G_ref(z, None, noise_mode="const"))


def test_load_checkpoint_gives_plan_meta_and_weights(tiny):
    G_ref, path = tiny
    ckpt = ganforge.load_checkpoint(path)
    assert ckpt.path == path and ckpt.kind == "export" and ckpt.plan == G_ref.plan
    assert ckpt.meta["plan"] == G_ref.plan.to_dict()
    assert list(ckpt.networks) == ["G_ema"]
    assert ckpt.networks["G_ema"].keys() == G_ref.state_dict().keys()
    z = torch.randn(2, ckpt.plan.z_dim)
    with torch.no_grad():
        assert torch.equal(ckpt.build()(z, None, noise_mode="const"), G_ref(z, None, noise_mode="const"))
    with pytest.raises(CheckpointError, match="holds no D network"):
        ckpt.build("D")


def test_load_checkpoint_refuses_nonfinite_weights_and_pickles(tiny, tmp_path):
    G_ref, _ = tiny
    state = {f"G_ema.{k}": v.clone() for k, v in G_ref.state_dict().items()}
    next(v for k, v in state.items() if k.endswith("weight")).fill_(float("nan"))
    bad = tmp_path / "nan.safetensors"
    save_checkpoint(bad, state, {"kind": "export", "plan": G_ref.plan.to_dict()})
    with pytest.raises(CheckpointError, match="non-finite"):
        ganforge.load_checkpoint(bad)
    pkl = tmp_path / "snapshot.pkl"
    pkl.write_bytes(b"\x80\x04N.")
    with pytest.raises(CheckpointError, match="ganforge convert"):
        ganforge.load_checkpoint(pkl)


def require_official_pkls() -> Path:
    return require_shared(OFFICIAL_PKLS, "manifest.json", "the load_generator test reads an official pickle")


def test_load_generator_reads_an_official_pickle():
    case = "sg2ada-32px-uncond-skip-resnet"
    pkl_dir = require_official_pkls()
    ref = np.load(pkl_dir / f"{case}.npz")
    G = ganforge.load_generator(pkl_dir / f"{case}.pkl")
    with torch.no_grad():
        img = G(torch.from_numpy(ref["z"]), None, noise_mode="const", force_fp32=True)
    expected = torch.from_numpy(ref["img"])
    assert float((img - expected).abs().max() / expected.abs().max()) < 1e-5


# ----------------------------------------------------------------------------
# ganforge.train


def _tiny_run(tmp_path, **kw) -> dict:
    return dict(
        data="mem", outdir=str(tmp_path), run_name="run", preset="tiny", resolution="16", kimg=0.016, batch=8,
        snap=0.016, tick=0.016, workers=0, tensorboard=False, seed=1, **kw,
    )  # fmt: skip


def test_train_from_a_dict_with_overrides_writes_a_loadable_checkpoint(tmp_path):
    lines = []
    state = ganforge.train(_tiny_run(tmp_path), dataset=RandomImages(16, 3, 16, 16), log=lines.append, gamma=3)
    assert state.cur_nimg >= 16 and state.run_dir == tmp_path / "run"
    config = __import__("json").loads((state.run_dir / "config.json").read_text())["config"]
    assert config["gamma"] == 3 and config["kimg"] == 0.016
    assert any("γ 3" in str(line) for line in lines), "the start-up print shows the override"
    ckpt = ganforge.load_checkpoint(sorted(state.run_dir.glob("checkpoint-*.safetensors"))[-1])
    assert ckpt.kind == "training" and ckpt.plan.resolution_text == "16x16"


def test_train_from_a_toml_file_and_from_a_trainconfig(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text(
        "\n".join(
            f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {str(v).lower()}" for k, v in _tiny_run(tmp_path).items()
        )
    )
    a = ganforge.train(str(toml), dataset=RandomImages(16, 3, 16, 16), log=lambda *a: None, run_name="a")
    b = ganforge.train(ganforge.TrainConfig(**_tiny_run(tmp_path)), dataset=RandomImages(16, 3, 16, 16),
                       log=lambda *a: None, run_name="b")  # fmt: skip
    assert (a.run_dir.name, b.run_dir.name) == ("a", "b") and a.cur_nimg == b.cur_nimg >= 16


@pytest.mark.parametrize(
    "config, options, match",
    [
        ({"data": "x", "gama": 2}, {}, "gamma"),
        ({"data": "x"}, {"batch": "8"}, "batch"),
        ({"data": "x", "mirror": "no"}, {}, "true or false"),
        (42, {}, "TrainConfig, a dict"),
    ],
)
def test_train_refuses_bad_configs_before_anything_is_written(tmp_path, config, options, match):
    with pytest.raises((ganforge.GanforgeError, TypeError), match=match):
        ganforge.train(config, outdir=str(tmp_path / "runs"), **options)
    assert not (tmp_path / "runs").exists()
