"""The commands with StyleGAN3 generators: inspect, generate with --translate / --rotate (official gen_images.py
semantics, checked against the StyleGAN3-T pickle's stored transform and images), style-mix, video, project and
export on a tiny StyleGAN3 checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import OFFICIAL_PKLS_SG3, require_shared, save_tiny

from ganforge import build_generator, load_generator, make_plan
from ganforge.tools.generate import input_transform, move_input

SG3T = "sg3t-32px-uncond-fp32"


@pytest.fixture(scope="module")
def sg3_checkpoint(tmp_path_factory):
    plan = make_plan("tiny", 16, family="stylegan3-r", cmax=8, mapping_layers=1, sg3_layers=4, sg3_critical=1)
    torch.manual_seed(0)
    return save_tiny(build_generator(plan).eval(), tmp_path_factory.mktemp("sg3") / "sg3r.safetensors")


def test_input_transform_is_gen_images_and_moves_the_official_images():
    pkls = require_shared(OFFICIAL_PKLS_SG3, f"{SG3T}.npz", "the official StyleGAN3-T reference arrays")
    ref = np.load(pkls / f"{SG3T}.npz")
    translate, rotate = tuple(ref["transform_translate"]), float(ref["transform_rotate_deg"])
    assert (translate, rotate) == ((0.125, -0.25), 15.0)
    assert torch.allclose(input_transform(translate, rotate), torch.from_numpy(ref["transform"]), atol=1e-7)
    G = load_generator(pkls / f"{SG3T}.pkl")
    move_input(G, translate, rotate)
    with torch.no_grad():
        img = G(torch.from_numpy(ref["z"]), None)
    assert (img - torch.from_numpy(ref["img_transformed"])).abs().max() < 1e-4


def test_generate_moves_stylegan3_and_refuses_the_flags_elsewhere(cli, sg3_checkpoint, tiny, tmp_path):
    code, _, err = cli("generate", "--checkpoint", sg3_checkpoint, "--seeds", "0", "--outdir", tmp_path / "still")
    assert code == 0, err
    args = ("--seeds", "0", "--translate", "0.25,0", "--rotate", "90")
    code, _, err = cli("generate", "--checkpoint", sg3_checkpoint, *args, "--outdir", tmp_path / "moved")
    assert code == 0, err
    still = np.asarray(__import__("PIL.Image").Image.open(tmp_path / "still" / "seed0000.png"))
    moved = np.asarray(__import__("PIL.Image").Image.open(tmp_path / "moved" / "seed0000.png"))
    assert still.shape == moved.shape and (still != moved).any()
    code, _, err = cli("generate", "--checkpoint", tiny[1], "--rotate", "15", "--outdir", tmp_path / "sg2")
    assert code == 1 and "--rotate only moves" in err and "StyleGAN2 generator" in err and err.count("\n") == 1
    assert not (tmp_path / "sg2").exists()
    code, _, err = cli("generate", "--checkpoint", sg3_checkpoint, "--translate", "1", "--outdir", tmp_path / "x")
    assert code == 2 and "--translate" in err


def test_inspect_stylegan3(cli):
    code, out, err = cli("inspect", "--family", "stylegan3-r", "--resolution", "32", "--cbase", "1024", "--json")
    assert code == 0, err
    info = json.loads(out)
    plan = make_plan("stylegan2", 32, family="stylegan3-r", cbase=1024)
    assert info["generator"]["num_ws"] == plan.num_ws == 16
    assert info["generator"]["params"] == sum(p.numel() for p in build_generator(plan).parameters())


def test_style_mix_video_project_export(cli, sg3_checkpoint, tmp_path):
    ck = sg3_checkpoint
    code, _, err = cli(
        "style-mix", "--checkpoint", ck, "--rows", "0-1", "--cols", "2", "--styles", "0-2", "--out", tmp_path / "m.png"
    )
    assert code == 0, err
    code, _, err = cli("video", "--checkpoint", ck, "--seeds", "0-1", "--frames", "2", "--out", tmp_path / "v.gif")
    assert code == 0, err
    code, _, err = cli("export", ck, "--format", "torchscript", "--out", tmp_path / "g.pt")
    assert code == 0, err
    target = tmp_path / "still" / "seed0000.png"
    cli("generate", "--checkpoint", ck, "--seeds", "0", "--outdir", tmp_path / "still")
    args = ("--target", target, "--loss", "mse", "--steps", "2", "--outdir", tmp_path / "proj")
    code, _, err = cli("project", "--checkpoint", ck, *args)
    assert code == 0, err
