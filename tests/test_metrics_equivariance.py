"""StyleGAN3 equivariance metrics: ganforge's eqt50k_int, eqt50k_frac and eqr50k against NVIDIA's official
`metrics/equivariance.py` on the same networks and draws; the image operators one by one; batch independence;
the refusal for StyleGAN2 (API, command and training) and a training run that logs them.

The official code is imported at test time from `shared/anchors/stylegan3` beside the repository (those tests skip
when it is absent, and fail under CI). The official run draws from the global RNG, one sample per batch (its own
latent and transform); the same draws are replayed into `ganforge.metrics.equivariance.equivariance_sums`, which
runs all the samples in one batch with one transform per image.
"""

from __future__ import annotations

import json
import math
import types

import pytest
import torch
from conftest import OFFICIAL_SG3, MemDataset, quiet, require_shared, save_tiny, tiny_generator, tiny_run_config
from test_metrics_ppl import official_code, perturb

from ganforge import build_generator
from ganforge.metrics import eq_transforms as ops
from ganforge.metrics.equivariance import EqDraws, equivariance_sums, psnr
from ganforge.metrics.features import MetricError
from ganforge.models.stylegan3 import plan_from_sg3_kwargs

Z_DIM, W_DIM = 16, 24
KINDS = {"int": "compute_eqt_int", "frac": "compute_eqt_frac", "rot": "compute_eqr"}
PSNR_TOL = 1e-3  # dB; the networks agree to ~1e-6 of the image (test_parity_sg3), the operators to float32 round-off.


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one thread.


@pytest.fixture
def code():
    root = require_shared(
        OFFICIAL_SG3, "metrics/equivariance.py", "the equivariance parity tests use the official code"
    )
    with official_code(root) as namespace:
        namespace.eq = namespace.import_module("metrics.equivariance")
        yield namespace


def sg3_kwargs(radial: bool) -> dict:
    """A tiny StyleGAN3-T (or -R) at 16 px."""
    kwargs = dict(
        z_dim=Z_DIM,
        c_dim=0,
        w_dim=W_DIM,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        channel_base=512,
        channel_max=16,
        num_layers=4,
        margin_size=1,  # Little room outside the image: the borders break equivariance well above round-off.
        num_fp16_res=0,
        conv_clamp=None,
    )
    if radial:
        kwargs.update(conv_kernel=1, use_radial_filters=True)
    return kwargs


def sg3_pair(code: types.SimpleNamespace, radial: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(official G, ganforge G) with the same weights."""
    torch.manual_seed(0)
    off_G = perturb(code.import_module("training.networks_stylegan3").Generator(**sg3_kwargs(radial)))
    G = build_generator(plan_from_sg3_kwargs(sg3_kwargs(radial)))
    G.load_state_dict(off_G.state_dict(), strict=True)
    return off_G, G.eval().requires_grad_(False)


def replayed_draws(G: torch.nn.Module, kind: str, seed: int, n: int) -> EqDraws:
    """The official loop's draws at batch size 1: z, then the one transform of `kind`."""
    torch.manual_seed(seed)
    z, shifts, angles = [], [], []
    for _ in range(n):
        z.append(torch.randn([1, G.z_dim])[0])
        if kind == "rot":
            angles.append((torch.rand([]) * 2 - 1) * math.pi)
        else:
            t = (torch.rand(2) * 2 - 1) * 0.125
            shifts.append((t * G.img_resolution).round() / G.img_resolution if kind == "int" else t)
    zeros = torch.zeros([n, 2])
    shift = torch.stack(shifts) if shifts else zeros
    angle = torch.stack(angles) if angles else torch.zeros([n])
    return EqDraws(torch.stack(z), shift if kind == "int" else zeros, shift if kind == "frac" else zeros, angle)


# ----------------------------------------------------------------------------------------------------------------
# Parity with the official metric.


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("radial", [False, True], ids=["T", "R"])
def test_psnr_equals_official(code, radial, kind):
    n, seed = 3, 4
    off_G, G = sg3_pair(code, radial)
    opts = code.metric_utils.MetricOptions(G=off_G, device=torch.device("cpu"))
    torch.manual_seed(seed)
    theirs = float(code.eq.compute_equivariance_metrics(opts, num_samples=n, batch_size=1, **{KINDS[kind]: True}))
    with torch.no_grad():
        mine = psnr(equivariance_sums(G, replayed_draws(G, kind, seed, n), None, (kind,))[0])
    print(f"{kind}: ours {mine:.5f} dB, official {theirs:.5f} dB")
    assert math.isfinite(theirs) and abs(mine - theirs) <= PSNR_TOL
    assert torch.equal(G.synthesis.input.transform, torch.eye(3))  # Put back after the per-image transforms.


@pytest.mark.parametrize("kind", ["int", "frac", "rot"])
def test_operators_equal_official(code, kind):
    """Each operator (and its mask) on a random image, for several shifts and angles."""
    x = torch.randn([2, 3, 16, 16], generator=torch.Generator().manual_seed(0))
    values = [-0.1875, -0.03, 0.0, 0.07, 0.125] if kind != "rot" else [-3.0, -0.4, 0.0, 0.9, math.pi]
    for v in values:
        v = torch.tensor(v)
        if kind == "int":
            pairs = [(ops.integer_translation(x, v, -v), code.eq.apply_integer_translation(x, v, -v))]
        elif kind == "frac":
            pairs = [(ops.fractional_translation(x, -v, v), code.eq.apply_fractional_translation(x, -v, v))]
        else:
            pairs = [
                (ops.fractional_rotation(x, v), code.eq.apply_fractional_rotation(x, v)),
                (ops.pseudo_rotation(x, v), code.eq.apply_fractional_pseudo_rotation(x, v)),
            ]
        for (mine, mine_mask), (theirs, their_mask) in pairs:
            torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)
            assert torch.equal(mine_mask, their_mask)


def test_bandlimit_filter_equals_official(code):
    for angle in (0.3, -2.0):
        mat = ops.rotation_matrix(torch.tensor(angle))
        torch.testing.assert_close(mat, code.eq.rotation_matrix(torch.tensor(angle)), rtol=0, atol=0)
        for up, amax in ((4, 6), (1, 6), (4, 16)):
            mine = ops.bandlimit_filter(mat, amax=amax, up=up)
            theirs = code.eq.construct_affine_bandlimit_filter(mat, amax=amax, up=up)
            torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-7)


# ----------------------------------------------------------------------------------------------------------------
# ganforge's own sampling, refusals, command and training.


@pytest.fixture(scope="module")
def tiny_sg3() -> torch.nn.Module:
    torch.manual_seed(0)
    G = build_generator(plan_from_sg3_kwargs(sg3_kwargs(radial=False)))
    with torch.no_grad():  # Let the input move: the affine starts at no rotation or shift.
        G.synthesis.input.affine.weight.normal_(0, 0.3)
    return G.eval().requires_grad_(False)


def test_metrics_do_not_depend_on_the_batch_size(tiny_sg3):
    from ganforge.metrics import compute_metrics

    names = ["eqt50k_int", "eqt50k_frac", "eqr50k"]
    whole = compute_metrics(names, G=tiny_sg3, num_gen=4, batch=4, progress=False)
    pieces = compute_metrics(names, G=tiny_sg3, num_gen=4, batch=3, progress=False)
    assert set(whole) == set(names) and all(math.isfinite(v) and v > 0 for v in whole.values())
    assert all(abs(whole[k] - pieces[k]) < PSNR_TOL for k in names)


def test_stylegan2_is_refused_with_one_sentence(tmp_path, cli):
    from ganforge.metrics import compute_metrics
    from ganforge.training.loop import train

    G = tiny_generator()
    with pytest.raises(MetricError) as e:
        compute_metrics(["eqt50k_frac"], G=G, num_gen=2, progress=False)
    assert "synthesis.input.transform" in str(e.value) and "stylegan2" in str(e.value) and "\n" not in str(e.value)

    ckpt = save_tiny(G, tmp_path / "sg2.safetensors")
    code, out, err = cli("metrics", "--checkpoint", ckpt, "--metrics", "eqr50k", "--num-gen", 2)
    assert code == 1 and err.count("\n") == 1 and "eqr50k transforms the input of a StyleGAN3 generator" in err
    assert not list(tmp_path.glob("metric-*.jsonl"))

    cfg = tiny_run_config(tmp_path, kimg=0.016, metrics="fid50k_full,eqt50k_int")
    with pytest.raises(MetricError, match="eqt50k_int .* this generator is stylegan2: drop eqt50k_int from --metrics"):
        train(cfg, MemDataset(), log=quiet)
    assert not (tmp_path / "run").exists()  # Refused before the run folder is made.


def test_cli_prints_the_real_count(tiny_sg3, tmp_path, cli):
    from ganforge.modelio import checkpoint as ck

    ckpt = tmp_path / "sg3.safetensors"
    ck.save_checkpoint(ckpt, {f"G_ema.{k}": v for k, v in tiny_sg3.state_dict().items()}, {
        "kind": "export", "plan": tiny_sg3.plan.to_dict()})  # fmt: skip
    code, out, err = cli("metrics", "--checkpoint", ckpt, "--metrics", "eqt50k_int", "--num-gen", 2, "--json")
    assert code in (0, None), err
    printed = json.loads(out.strip().splitlines()[-1])
    assert list(printed) == ["eqt2_int"] and printed["eqt2_int"] > 0


def test_training_logs_equivariance_at_snapshots(tmp_path):
    from test_train_sg3 import sg3_cfg

    from ganforge.training.loop import train
    from ganforge.training.stats import read_stats

    cfg = sg3_cfg(tmp_path, "stylegan3-t", kimg=0.004, snap=0.004, metrics="eqt50k_int", metrics_num_gen=2)
    state = train(cfg, MemDataset(), log=quiet)
    lines = (state.run_dir / "metric-eqt50k_int.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["label"] == "eqt2_int"
    values = [s["Metrics/eqt2_int"] for s in read_stats(state.run_dir / "stats.jsonl") if "Metrics/eqt2_int" in s]
    assert len(values) == 1 and values[0] > 0
