"""Schedules, layer freezing with gradual unfreezing, transfer across resolution/capacity, noconst hot-swap."""

import pytest
import torch
from conftest import MemDataset, quiet, tiny_run_config

from ganforge import build_discriminator, build_generator, make_plan
from ganforge.modelio import checkpoint as ck
from ganforge.tools.transfer import transfer
from ganforge.training.config import ConfigError, TrainConfig
from ganforge.training.freeze import FreezeError, FreezePlan, param_resolution, parse_specs
from ganforge.training.loop import train
from ganforge.training.schedule import ScheduleError, parse_schedule


def cfg_for(tmp_path, **kw):
    return tiny_run_config(tmp_path, **{"resolution": "16", "kimg": 0.064, "snap": 0.032, "tick": 0.032, **kw})


# ----------------------------------------------------------------------------
# Schedules.


def test_step_schedule_boundaries():
    s = parse_schedule("0.002,0.0002@10000,0.0001@20000")
    assert s(0) == 0.002 and s(9999.9) == 0.002 and s(10000) == 0.0002 and s(19999) == 0.0002
    assert s(20000) == 0.0001 and s(1e9) == 0.0001
    assert str(s) == "0.002,0.0002@10000,0.0001@20000"


def test_linear_schedule_tapers():
    s = parse_schedule("linear:10,5@5000")
    assert s(0) == 10 and s(2500) == 7.5 and s(5000) == 5 and s(9000) == 5
    assert parse_schedule(0.5)(123) == 0.5


@pytest.mark.parametrize("text", ["0.1@5,0.2", "0.1,0.2@5,0.3@4", "abc", "0.1,0.2"])
def test_bad_schedules_name_the_option(text):
    with pytest.raises(ScheduleError, match="--g-lr"):
        parse_schedule(text, "--g-lr")


def test_config_validates_schedules():
    with pytest.raises(ConfigError, match="--style-mixing value 2 is out of range"):
        TrainConfig(style_mixing="0.9,2@10").resolved()
    TrainConfig(g_lr="0.002,0.0002@100", gamma="linear:10,5@50").resolved()


def test_schedules_apply_and_survive_resume(tmp_path):
    cfg = cfg_for(
        tmp_path, g_lr="0.002,0.0005@0.032", d_lr_mult=2.0, gamma="linear:1,0.5@0.064", pl_weight=0.0, kimg=0.032
    )
    state = train(cfg, MemDataset(), log=quiet)
    ratio = 16 / 17  # lazy R1 correction of D
    g_ratio = 4 / 5  # lazy path-length correction of G: kept with pl_weight 0, as the official loop keeps it
    assert state.opt_G.param_groups[0]["lr"] == pytest.approx(0.002 * g_ratio)  # last step at 0.024 kimg
    assert state.opt_G.param_groups[0]["betas"][1] == pytest.approx(0.99**g_ratio)
    state = train(cfg_for(tmp_path, **{**cfg.__dict__, "kimg": 0.048}), MemDataset(), log=quiet)
    assert state.opt_G.param_groups[0]["lr"] == pytest.approx(0.0005 * g_ratio)  # last step at 0.040 kimg
    assert state.opt_D.param_groups[0]["lr"] == pytest.approx(2 * 0.0005 * ratio)
    assert state.schedule("gamma") == pytest.approx(1 - 0.5 * 0.048 / 0.064)  # read at the final kimg


# ----------------------------------------------------------------------------
# Freezing.


def test_param_resolution_and_specs():
    assert param_resolution("synthesis.b32x64.conv0.weight") == 64
    assert param_resolution("b16.fromrgb.weight") == 16 and param_resolution("mapping.fc0.weight") == 0
    assert parse_specs("mapping, G<=512,D:b4") == ["mapping", "G<=512", "D:b4"]
    with pytest.raises(FreezeError, match="not a freeze spec"):
        parse_specs("G<=big")


def test_freeze_plan_sets_and_gradual_unfreezing():
    plan = make_plan("tiny", 32)
    G, D = build_generator(plan), build_discriminator(plan)
    fp = FreezePlan(("mapping", "G<=16"), freeze_d=1, unfreeze_every=10, order="top-down")
    f0 = fp.frozen(G, D, 0)
    assert "mapping.fc0.weight" in f0["G"] and "synthesis.b16.conv1.weight" in f0["G"]
    assert "synthesis.b32.conv1.weight" not in f0["G"]
    assert set(f0["D"]) == {n for n, _ in D.named_parameters() if n.startswith("b32.")}  # FreezeD 1
    f1 = fp.frozen(G, D, 10)  # top-down: the highest frozen resolution (32, D's first block) goes first
    assert not f1["D"] and "synthesis.b16.conv1.weight" in f1["G"]
    f2 = fp.frozen(G, D, 20)
    assert "synthesis.b16.conv1.weight" not in f2["G"] and "synthesis.b8.conv1.weight" in f2["G"]
    bottom = FreezePlan(("G<=16",), unfreeze_every=10, order="bottom-up").frozen(G, D, 10)
    assert "synthesis.b4.conv1.weight" not in bottom["G"] and "synthesis.b16.conv1.weight" in bottom["G"]


def test_frozen_parameters_stay_bit_identical(tmp_path):
    cfg = cfg_for(tmp_path, kimg=0.032, freeze="mapping,G<=8", freeze_d=1)
    torch.manual_seed(1)
    plan = make_plan("tiny", 16)
    init_G = build_generator(plan).state_dict()
    init_D = build_discriminator(plan).state_dict()
    state = train(cfg, MemDataset(), log=quiet)
    G, D = state.G.state_dict(), state.D.state_dict()
    for name in G:
        if name.startswith("mapping.fc") or any(name.startswith(f"synthesis.{b}.") for b in ("b4", "b8")):
            if "noise_const" not in name and "resample" not in name:
                assert torch.equal(G[name], init_G[name]), name
    assert not torch.equal(G["synthesis.b16.conv1.weight"], init_G["synthesis.b16.conv1.weight"])
    for name in D:
        if name.startswith("b16.") and "resample" not in name:
            assert torch.equal(D[name], init_D[name]), name
    assert not torch.equal(D["b4.fc.weight"], init_D["b4.fc.weight"])


# ----------------------------------------------------------------------------
# Transfer and hot-swap.


def _checkpoint(tmp_path, res, **kw):
    torch.manual_seed(0)
    plan = make_plan("tiny", res, **kw)
    G, D = build_generator(plan), build_discriminator(plan)
    path = tmp_path / f"src{res}.safetensors"
    ck.save_checkpoint(
        path,
        ck.join(G=G.state_dict(), D=D.state_dict(), G_ema=G.state_dict()),
        {"kind": "export", "plan": plan.to_dict()},
    )
    return path, G, D


def test_transfer_32_to_64_copies_shared_blocks(tmp_path):
    src, G, D = _checkpoint(tmp_path, 32)
    plan, rep = transfer(src, tmp_path / "big.safetensors", resolution=64)
    assert (plan.height, plan.cbase) == (64, 2048)
    new_g = {n.split(".")[1] for n in rep.new["G"] if n.startswith("synthesis.")}
    assert new_g == {"b64"}  # skip G: every shared block (torgb included) fits
    assert not rep.dropped["G"]
    tensors, _ = ck.load_checkpoint(tmp_path / "big.safetensors")
    assert torch.equal(tensors["G.synthesis.b32.conv1.weight"], G.state_dict()["synthesis.b32.conv1.weight"])
    # D: the new input block b64 is fresh, b32 loses its fromrgb (resnet reads the image only at the top).
    assert {n.split(".")[0] for n in rep.new["D"]} == {"b64"}
    assert {n.rsplit(".", 1)[0] for n in rep.dropped["D"]} == {"b32.fromrgb"}


def test_transfer_64_to_32_keeps_lower_blocks(tmp_path):
    src, G, _ = _checkpoint(tmp_path, 64)
    plan, rep = transfer(src, tmp_path / "small.safetensors", resolution=32)
    assert plan.height == 32
    assert {n.split(".")[1] for n in rep.dropped["G"] if n.startswith("synthesis.")} == {"b64"}
    assert "synthesis.b32.conv1.weight" in rep.copied["G"]


def test_hot_swap_const_to_noconst_keeps_other_tensors(tmp_path):
    src, G, _ = _checkpoint(tmp_path, 16)
    plan, rep = transfer(src, tmp_path / "nc.safetensors", g_input="noconst")
    assert plan.g_input == "noconst"
    assert rep.dropped["G"] == ["synthesis.b4.const"]
    assert all(n.startswith("synthesis.b4.input.") for n in rep.new["G"])
    assert len(rep.copied["G"]) == len(G.state_dict()) - 1


def test_transfer_then_train_with_frozen_lower_blocks(tmp_path):
    src, _, _ = _checkpoint(tmp_path, 16)
    transfer(src, tmp_path / "t32.safetensors", resolution=32)
    before, _ = ck.load_checkpoint(tmp_path / "t32.safetensors")
    state = train(
        cfg_for(tmp_path, resolution="auto", init=str(tmp_path / "t32.safetensors"), freeze="G<=16,D<=16", kimg=0.032),
        MemDataset(res=32),
        log=quiet,
    )
    after = state.G.state_dict()
    assert torch.equal(after["synthesis.b16.conv1.weight"], before["G.synthesis.b16.conv1.weight"])
    assert not torch.equal(after["synthesis.b32.conv1.weight"], before["G.synthesis.b32.conv1.weight"])


# ----------------------------------------------------------------------------
# Augmentation in the loop.


def test_ada_p_moves_is_logged_and_resumes_exactly(tmp_path):
    from ganforge.training.stats import read_stats

    kw = dict(aug="ada", ada_target=0.0, ada_kimg=0.5, gamma=0.1)  # target 0: any positive real score raises p
    straight = train(cfg_for(tmp_path, run_name="a", kimg=0.128, **kw), MemDataset(), log=quiet)
    p = straight.ada.p
    assert p > 0
    assert ck.read_meta(ck.latest_checkpoint(straight.run_dir))["ada"]["p"] == pytest.approx(p)
    assert any("Augment/p" in s for s in read_stats(straight.run_dir / "stats.jsonl"))
    train(cfg_for(tmp_path, run_name="b", kimg=0.064, **kw), MemDataset(), log=quiet)
    resumed = train(cfg_for(tmp_path, run_name="b", kimg=0.128, **kw), MemDataset(), log=quiet)
    assert resumed.ada.p == pytest.approx(p, abs=1e-12)
    for (n, a), b in zip(straight.G.state_dict().items(), resumed.G.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), n


@pytest.mark.parametrize("kind", ["fixed", "diffaugment"])
def test_fixed_p_and_diffaugment_runs(tmp_path, kind):
    state = train(cfg_for(tmp_path, aug=kind, aug_p=0.5, kimg=0.032), MemDataset(), log=quiet)
    if kind == "fixed":
        assert state.ada.p == 0.5
        assert ck.read_meta(ck.latest_checkpoint(state.run_dir))["ada"]["p"] == 0.5
    else:
        assert state.ada is None


def test_cifar_recipe_keeps_the_lazy_correction_with_path_length_off():
    """Official cifar: pl_weight 0 but G_reg_interval 4 stays, so G's Adam runs at lr 0.0025·4/5 = 0.002 and
    β2 0.99^(4/5) = 0.99199; the DCGAN recipe has no lazy regularization and keeps its plain Adam settings."""
    from ganforge.training.config import with_preset
    from ganforge.training.state import build_state

    cfg = with_preset(TrainConfig(data="x", preset="cifar").resolved(), 32, 32, 1)
    state = build_state(make_plan("tiny", 32), cfg, torch.device("cpu"))
    group = state.opt_G.param_groups[0]
    assert (
        cfg.pl_weight == 0
        and group["lr"] == pytest.approx(0.002)
        and group["betas"][1] == pytest.approx(0.99199, abs=1e-5)
    )
    dcgan = with_preset(TrainConfig(data="x", family="dcgan", preset="tiny").resolved(), 32, 32, 1)
    state = build_state(make_plan("tiny", 32, family="dcgan"), dcgan, torch.device("cpu"))
    assert state.opt_G.param_groups[0]["lr"] == pytest.approx(2e-4)
    assert state.opt_G.param_groups[0]["betas"] == pytest.approx((0.5, 0.999))
