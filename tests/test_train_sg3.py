"""StyleGAN3 training: the official train.py recipe of --cfg=stylegan3-t / stylegan3-r, D's input blur (R), the
magnitude and w averages tracked in D main only, and tiny T and R runs that train, resume and generate on a CPU."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import MemDataset

from ganforge import load_generator, make_plan
from ganforge.modelio import checkpoint as ck
from ganforge.training.config import ConfigError, TrainConfig, with_preset
from ganforge.training.loop import train
from ganforge.training.loss import blur_sigma, gaussian_blur
from ganforge.training.state import build_state


def sg3_cfg(tmp_path, family: str, **kw) -> TrainConfig:
    base = dict(
        data="mem",
        outdir=str(tmp_path),
        run_name="run",
        family=family,
        preset="tiny",
        cmax=8,
        map=1,
        resolution="16",
        kimg=0.008,
        batch=4,
        gamma=0.1,
        snap=0.008,
        tick=0.004,
        grid="2x1",
        workers=0,
        tensorboard=False,
        resume="latest",
        seed=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def quiet(*args):
    pass


# ----------------------------------------------------------------------------
# The recipe.


@pytest.mark.parametrize("family", ["stylegan3-t", "stylegan3-r"])
def test_recipe_is_the_official_train_py(family):
    c = with_preset(TrainConfig(family=family, gamma=2.0).resolved(), 256, 256)
    assert (c.batch, c.model, c.g_lr, c.d_lr, c.gamma) == (32, "stylegan2", 0.0025, 0.002, 2.0)
    assert (c.pl_weight, c.style_mixing, c.ema_kimg, c.ema_rampup, c.mbstd_group) == (0.0, 0.0, 10.0, 0.05, 4)
    r = family == "stylegan3-r"
    assert (c.blur_init_sigma, c.blur_fade_kimg) == ((10.0 if r else 0.0), 200.0)
    # The user's values win; a recipe preset brings its batch; --init switches the blur off (official --resume).
    c = with_preset(
        TrainConfig(family=family, preset="paper256", gamma=1.0, g_lr=0.001, style_mixing=0.5).resolved(), 256, 256
    )
    assert (c.batch, c.g_lr, c.d_lr, c.style_mixing, c.ema_kimg, c.blur_fade_kimg) == (64, 0.001, 0.002, 0.5, 20, 400)
    assert with_preset(TrainConfig(family=family, gamma=1.0, init="x").resolved(), 256, 256).blur_init_sigma == 0


def test_gamma_is_required(tmp_path, cli):
    with pytest.raises(ConfigError, match=r"--family stylegan3-t needs --gamma .* --gamma 2 for 256x256"):
        train(sg3_cfg(tmp_path, "stylegan3-t", gamma=None), MemDataset(), log=quiet)
    assert not (tmp_path / "run").exists()
    code, _, err = cli("train", "--data", tmp_path, "--family", "stylegan3-r", "--dry-run")
    assert code == 2 and "needs --gamma" in err


# ----------------------------------------------------------------------------
# D's input blur.


def test_blur_sigma_fades_linearly():
    assert blur_sigma(0, 10.0, 25.0) == 10.0
    assert blur_sigma(12_500, 10.0, 25.0) == pytest.approx(5.0)
    assert blur_sigma(30_000, 10.0, 25.0) == 0.0
    assert blur_sigma(0, 10.0, 0.0) == 0.0


def test_gaussian_blur_is_a_normalized_separable_filter():
    torch.manual_seed(0)
    img = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    sigma = 1.5
    half = math.floor(3 * sigma)
    k = torch.arange(-half, half + 1, dtype=torch.float64)
    taps = 2 ** -((k / sigma) ** 2)
    kernel = torch.outer(taps, taps) / taps.sum() ** 2
    ref = torch.nn.functional.conv2d(img.reshape(6, 1, 16, 16), kernel[None, None], padding=half).reshape(img.shape)
    assert torch.allclose(gaussian_blur(img, sigma), ref, atol=1e-12)
    assert gaussian_blur(img, 0.3) is img  # ⌊3σ⌋ = 0: no blur.
    flat = gaussian_blur(torch.ones(1, 1, 32, 32), 2.0)
    assert torch.allclose(flat[..., 8:-8, 8:-8], torch.ones(1, 1, 16, 16))  # Away from the zero padding.


# ----------------------------------------------------------------------------
# The averages train in D main only (official: G main generates with update_emas=False).


def test_emas_move_only_in_d_main():
    plan = make_plan("tiny", 16, family="stylegan3-t", cmax=8, mapping_layers=1, magnitude_ema_beta=0.5)
    cfg = with_preset(TrainConfig(family="stylegan3-t", preset="tiny", batch=4, gamma=0.1).resolved(), 16, 16)
    torch.manual_seed(0)
    state = build_state(plan, cfg, torch.device("cpu"))
    state.loss.augment = None
    state.G.requires_grad_(True)
    state.D.requires_grad_(True)

    def averages():
        return [b.clone() for n, b in state.G.named_buffers() if n.endswith(("magnitude_ema", "w_avg"))]

    real, c = torch.rand(4, 3, 16, 16) * 2 - 1, torch.zeros(4, 0)
    before = averages()
    for phase in ("Gmain", "Dreg"):
        state.loss.accumulate(phase, real, c, torch.randn(4, plan.z_dim), c, gain=1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, averages(), strict=True))
    state.loss.accumulate("Dmain", real, c, torch.randn(4, plan.z_dim), c, gain=1.0)
    assert all(not torch.equal(a, b) for a, b in zip(before, averages(), strict=True))


# ----------------------------------------------------------------------------
# Whole runs.


@pytest.mark.parametrize("family", ["stylegan3-t", "stylegan3-r"])
def test_tiny_run_trains_resumes_and_generates(tmp_path, family):
    first = train(sg3_cfg(tmp_path, family, kimg=0.004, snap=0.004), MemDataset(), log=quiet)
    assert first.plan.family == family and first.cur_nimg == 4
    assert first.plan.magnitude_ema_beta == pytest.approx(0.5 ** (4 / 20000))  # Official: batch / 20k images.
    if family == "stylegan3-r":
        assert first.loss.blur_sigma == pytest.approx(10.0 * (1 - 0 / 25_000))
    state = train(sg3_cfg(tmp_path, family), MemDataset(), log=quiet)
    assert state.cur_nimg == 8  # Resumed at 4 from the checkpoint of the first run.
    moved = [n for n, b in state.G_ema.named_buffers() if n.endswith("magnitude_ema") and float(b) != 1.0]
    assert len(moved) == state.plan.sg3_layers + 1  # Every layer and ToRGB tracked its input, and G_ema has it.
    for p in list(state.G.parameters()) + list(state.D.parameters()):
        assert torch.isfinite(p).all()
    G = load_generator(ck.latest_checkpoint(state.run_dir))
    img = G(torch.randn(2, G.z_dim), None)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
