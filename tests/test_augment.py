"""ADA pipeline, its adaptive p controller, DiffAugment and build_augment (tiny CPU tensors)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from ganforge.augment import PRESETS, AdaController, AugmentPipe, DiffAugment, build_augment
from ganforge.augment.ada import rotation_prob
from ganforge.augment.image_ops import SYM6, band_filter, filter_bank


def _resampling_bound() -> float:
    """Geometric ops: 2x upsampling (taps 2·f, one polyphase half per output), bilinear sampling (a convex
    combination) and 2x downsampling (taps f), separably: |y| ≤ (max_phase Σ|2·f_phase| · Σ|f|)² ≈ 3.69."""
    f = torch.tensor(SYM6, dtype=torch.float64)
    f = f / f.sum()
    up = max((2 * f[0::2]).abs().sum(), (2 * f[1::2]).abs().sum())
    return float((up * f.abs().sum()) ** 2)


# Bound on |output| for inputs in [-1, 1], per op. Integer translation and cutout only move or zero pixels
# (checked to float rounding below); the other blit ops and the geometric ops resample as above (as official, a
# flip or a 90° turn goes through the same warp, whose Symlet-6 filters are not symmetric: it is not
# pixel-exact). Color, filter and noise bounds allow 5σ of the op's random strength:
# brightness 1 + 5·0.2; contrast 2^(5·0.5); luma flip max|x_i − 2·mean(x)| = 5/3; hue rotation keeps
# ‖rgb‖₂ ≤ √3; saturation |mean| + 2^5·4/3; noise 1 + (5·0.1)·5; filter: band gains ≤ √13 each, 8 in practice.
OP_BOUNDS = {
    "xflip": _resampling_bound(),
    "rotate90": _resampling_bound(),
    "scale": _resampling_bound(),
    "rotate": _resampling_bound(),
    "aniso": _resampling_bound(),
    "xfrac": _resampling_bound(),
    "brightness": 2.0,
    "contrast": 2**2.5,
    "lumaflip": 5 / 3 + 1e-5,
    "hue": math.sqrt(3) + 1e-5,
    "saturation": 1 + 32 * 4 / 3,
    "imgfilter": 8.0,
    "noise": 3.5,
}
MOVE_ONLY = ("xint", "cutout")
ALL_OPS = (*MOVE_ONLY, *OP_BOUNDS)


def images(n=8, c=3, h=16, w=16) -> torch.Tensor:
    """Smooth random images with a little texture, in [-1, 1]."""
    smooth = F.interpolate(torch.rand(n, c, 4, 4) * 2 - 1, size=(h, w), mode="bilinear", align_corners=False)
    return (smooth + 0.2 * torch.randn(n, c, h, w)).clamp(-1, 1)


def only(op: str, p: float = 1.0) -> AugmentPipe:
    return AugmentPipe(p=p, **{op: 1.0})


# ----------------------------------------------------------------------------
# AugmentPipe.


@pytest.mark.parametrize("op", ALL_OPS)
def test_each_op_changes_image_keeps_contract_and_passes_gradients(op):
    x = images().requires_grad_(True)
    y = only(op)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert (y - x).abs().max() > 1e-3, f"{op} at p=1 left the batch unchanged"
    if op in MOVE_ONLY:  # Pixels are moved or zeroed, never created.
        lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
        assert lo - 1e-5 <= y.min() and y.max() <= hi + 1e-5
    else:
        assert y.abs().max() <= OP_BOUNDS[op], f"{op}: max |y| = {y.abs().max():.3f}"
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_rotate90_turns_by_multiples_of_90_degrees():
    """Every sample is x turned by some multiple of 90°, to the accuracy of the (official) resampling: a few % on
    smooth images, where any other turn is off by far more. Integer translation moves pixels exactly."""
    x = F.interpolate(torch.rand(64, 3, 4, 4) * 2 - 1, size=(16, 16), mode="bilinear", align_corners=False)
    y = only("rotate90")(x)
    for i in range(len(x)):
        errors = sorted((y[i] - torch.rot90(x[i], k, dims=(1, 2))).abs().max().item() for k in range(4))
        assert errors[0] < 0.06 and errors[1] > 0.2, errors
    xi = images(n=16)
    values = xi.flatten().unique()
    distance = (only("xint")(xi).flatten()[:, None] - values[None]).abs().amin(dim=1)
    assert distance.max() < 1e-5


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_p_zero_is_exact_identity(preset):
    x = images(n=4, h=8, w=12)
    pipe = AugmentPipe.from_preset(preset, p=0.0)
    assert torch.equal(pipe(x), x)
    with torch.no_grad():
        assert torch.equal(pipe(x), x)
    xg = x.clone().requires_grad_(True)
    y = pipe(xg)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.equal(xg.grad, torch.ones_like(x))


def test_half_and_double_precision():
    pipe = AugmentPipe.from_preset("bgcfnc", p=0.0)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        x = images(n=2).to(dtype)
        y = pipe(x)
        assert y.dtype == dtype and torch.equal(y, x)
        pipe.p.fill_(1.0)
        y = pipe(x)
        assert y.dtype == dtype and torch.isfinite(y).all() and not torch.equal(y, x)
        pipe.p.fill_(0.0)


@pytest.mark.parametrize("hw", [(16, 24), (24, 16), (12, 20)])
def test_non_square_images_full_pipeline(hw):
    x = images(n=4, h=hw[0], w=hw[1]).requires_grad_(True)
    y = AugmentPipe.from_preset("bgcfnc", p=1.0)(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_usable_under_no_grad_and_p_is_a_buffer():
    pipe = AugmentPipe.from_preset("bgc", p=0.3)
    with torch.no_grad():
        y = pipe(images(n=2))
    assert not y.requires_grad
    state = pipe.state_dict()
    assert list(state) == ["p"] and state["p"].shape == () and state["p"].item() == pytest.approx(0.3)
    other = AugmentPipe.from_preset("bgc")
    other.load_state_dict(state)
    assert other.p.item() == pytest.approx(0.3)


def test_r1_double_backward_through_pipe():
    """R1 is taken through the pipe: d/dθ_D ‖∂D(aug(x))/∂x‖² needs second derivatives of every stage."""
    d = torch.nn.Conv2d(3, 1, 3)
    x = images(n=4).requires_grad_(True)
    logits = d(AugmentPipe.from_preset("bgcfnc", p=1.0)(x)).sum()
    (grad,) = torch.autograd.grad(logits, x, create_graph=True)
    grad.square().sum().backward()
    assert torch.isfinite(d.weight.grad).all() and d.weight.grad.abs().sum() > 0


def test_xflip_at_half_p_flips_a_quarter():
    """The op fires on p = 1/2 of the samples; a fired x-flip draws i ∈ {0, 1}, so 1/4 end up mirrored.

    8 x 16 px: the resampling filters need 6 px of reflect padding; a ramp mirrors to within 0.02.
    """
    x = torch.linspace(-1, 1, 16).expand(2000, 1, 8, 16).contiguous()
    y = only("xflip", p=0.5)(x)
    flipped = (y - x.flip(-1)).abs().amax(dim=(1, 2, 3)) < 0.03  # Not pixel-exact (see OP_BOUNDS).
    same = (y - x).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert abs(flipped.float().mean().item() - 0.25) < 0.05
    assert abs(same.float().mean().item() - 0.75) < 0.05
    assert (flipped | same).all()


@pytest.mark.parametrize("op", ["brightness", "rotate"])
def test_op_fires_on_half_the_samples_at_half_p(op):
    """Brightness fires with p; rotation fires twice with p_rot = 1 − √(1 − p), so P(any rotation) = p."""
    x = images(n=2000, c=3, h=4, w=4)
    changed = (only(op, p=0.5)(x) - x).abs().amax(dim=(1, 2, 3)) > 1e-4
    assert abs(changed.float().mean().item() - 0.5) < 0.05
    p = torch.tensor(0.5)
    assert 1 - (1 - rotation_prob(p)) ** 2 == pytest.approx(0.5)


def test_channels_one_works_two_raises():
    x1 = images(n=4, c=1).requires_grad_(True)
    y = AugmentPipe.from_preset("bgc", p=1.0)(x1)
    assert y.shape == x1.shape
    y.sum().backward()
    assert x1.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="1 or 3 channels, got 2"):
        AugmentPipe.from_preset("bgc", p=1.0)(images(n=2, c=2))
    assert AugmentPipe.from_preset("bg", p=1.0)(images(n=2, c=2)).shape == (2, 2, 16, 16)


def test_filter_bank_sums_to_an_impulse():
    bank = filter_bank()
    assert bank.shape == (4, 43) and torch.allclose(bank, bank.flip(1))  # Zero phase.
    impulse = torch.zeros(43)
    impulse[21] = 1
    assert torch.allclose(bank.sum(0), impulse, atol=1e-6)
    assert abs(bank[0].sum() - 1) < 1e-6 and bank[1:].sum(1).abs().max() < 1e-6  # Only band 0 passes DC.
    for hw in ((16, 24), (8, 12)):  # 8 px < the 21 px padding: reflected again.
        x = images(n=2, h=hw[0], w=hw[1])
        assert torch.allclose(band_filter(x, torch.ones(2, 4)), x, atol=1e-5)
        assert torch.allclose(band_filter(x, torch.tensor([[1.0, 0, 0, 0]] * 2)).mean(), x.mean(), atol=0.05)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown augment pipe 'bgx'"):
        AugmentPipe.from_preset("bgx")
    with pytest.raises(ValueError, match="float images"):
        AugmentPipe.from_preset("bgc")(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


# ----------------------------------------------------------------------------
# AdaController.


def controller(p=0.0, **kw) -> AdaController:
    return AdaController(AugmentPipe.from_preset("bgc", p=p), **kw)


def iteration(ctrl: AdaController, logits: torch.Tensor) -> None:
    """One training iteration with one D pass over its reals: one logit per image."""
    ctrl.accumulate(logits)
    ctrl.step(logits.shape[0])


def test_controller_raises_p_at_official_speed():
    ctrl = controller(interval=4, speed_kimg=500)
    for _ in range(3):
        iteration(ctrl, torch.ones(64, 1))  # r_t = 1 > 0.6
    assert ctrl.p == 0.0  # No update before `interval` iterations.
    iteration(ctrl, torch.ones(64, 1))
    step = 64 * 4 / (500 * 1000)  # batch·interval / (speed_kimg·1000) = 5.12e-4
    assert ctrl.p == pytest.approx(step, abs=1e-9)
    for _ in range(4):
        iteration(ctrl, torch.ones(64, 1))
    assert ctrl.p == pytest.approx(2 * step, abs=1e-9)
    assert ctrl.stats() == {"Augment/p": ctrl.p, "Augment/rt": 1.0}


def test_controller_lowers_p_and_never_below_zero():
    ctrl = controller(p=0.001, interval=2, speed_kimg=500)
    logits = torch.tensor([1.0, -1.0, -1.0, -1.0])  # r_t = -0.5 < 0.6
    iteration(ctrl, logits)
    iteration(ctrl, logits)
    assert ctrl.p == pytest.approx(0.001 - 8 / 500_000, abs=1e-9)
    for _ in range(400):
        iteration(ctrl, logits)
    assert ctrl.p == 0.0 and ctrl.stats()["Augment/rt"] == -0.5


def test_controller_holds_p_at_target_and_clamps_only_when_asked():
    ctrl = controller(p=0.5, interval=1)
    iteration(ctrl, torch.tensor([1.0] * 8 + [-1.0] * 2))  # r_t = 0.6 exactly: sign(0) = 0.
    assert ctrl.p == pytest.approx(0.5)
    free = controller(p=0.999, interval=1, speed_kimg=0.001)  # +1 per image: p passes 1 (official).
    iteration(free, torch.ones(4))
    assert free.p == pytest.approx(4.999, rel=1e-6)
    capped = controller(p=0.999, interval=1, speed_kimg=0.001, max_p=1.0)
    iteration(capped, torch.ones(4))
    assert capped.p == 1.0


def test_fixed_mode_measures_but_keeps_p():
    pipe, ctrl = build_augment("fixed", p=0.2, interval=2)
    for _ in range(4):
        iteration(ctrl, torch.ones(8))
    assert ctrl.p == pytest.approx(0.2) and ctrl.stats()["Augment/rt"] == 1.0


def test_controller_state_dict_round_trip():
    a = controller(interval=4, speed_kimg=1)
    for _ in range(6):  # One full interval and half of the next.
        iteration(a, torch.tensor([1.0, 1.0, -1.0]))
    state = json.loads(json.dumps(a.state_dict()))
    assert state["steps"] == 6 and state["count"] == 6 and state["sign_sum"] == 2
    b = controller(interval=4, speed_kimg=1)
    b.load_state_dict(state)
    assert b.p == a.p and b.steps == 6 and b.stats() == a.stats()
    for ctrl in (a, b):
        for _ in range(2):
            iteration(ctrl, torch.ones(3))
    assert b.p == a.p and b.p > state["p"]
    with pytest.raises(ValueError, match="lacks"):
        b.load_state_dict({"p": 0.1})


def test_every_pass_over_reals_counts_toward_r_t_but_p_moves_by_the_images_trained():
    """As the official loop: signs from D main and R1 passes (and every round) form r_t; p moves by
    batch · interval / (speed_kimg · 1000) whatever the number of passes."""
    ctrl = controller(interval=2, speed_kimg=1)
    for _ in range(2):  # Two iterations of batch 4: D main (r_t +1) and R1 (r_t -0.5 alone) each.
        ctrl.accumulate(torch.ones(4))
        ctrl.accumulate(torch.tensor([1.0, -1.0, -1.0, -1.0]))
        ctrl.step(4)
    assert ctrl.stats()["Augment/rt"] == pytest.approx(0.25)  # Σ sign = 2 · (4 − 2) = 4 over 16 logits
    assert ctrl.p == 0.0  # r_t 0.25 < 0.6: p would go down, and stays at 0.
    ctrl = controller(interval=2, speed_kimg=1)
    for _ in range(2):
        for _ in range(3):  # Three passes (e.g. rounds) per iteration, all above target.
            ctrl.accumulate(torch.ones(4))
        ctrl.step(4)
    assert ctrl.p == pytest.approx(8 / 1000)  # 2 iterations × 4 images, not 24 measured logits.


def test_controller_validates_arguments():
    with pytest.raises(ValueError, match="interval=0"):
        controller(interval=0)
    with pytest.raises(ValueError, match="target=1.5"):
        controller(target=1.5)


# ----------------------------------------------------------------------------
# DiffAugment and build_augment.


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diffaugment_policies_change_images_and_pass_gradients(policy):
    x = images(n=8, h=16, w=24).requires_grad_(True)
    y = DiffAugment(policy)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert (y - x).abs().max() > 1e-3
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_diffaugment_translation_and_cutout_only_move_or_zero_pixels():
    x = images(n=16)
    for policy in ("translation", "cutout"):
        y = DiffAugment(policy)(x)
        values = set(x.flatten().tolist()) | {0.0}
        assert set(y.flatten().tolist()) <= values
        assert (y == 0).any()


def test_diffaugment_policy_parsing():
    assert DiffAugment(" color , cutout ").policy == ("color", "cutout")
    x = images(n=2)
    assert torch.equal(DiffAugment("")(x), x)
    with pytest.raises(ValueError, match="unknown DiffAugment op"):
        DiffAugment("color,rotate")


def test_build_augment_kinds():
    pipe, ctrl = build_augment()
    assert isinstance(pipe, AugmentPipe) and ctrl.adaptive and pipe.mult["saturation"] == 1
    assert pipe.mult["imgfilter"] == 0 and ctrl.target == 0.6 and ctrl.speed_kimg == 500 and ctrl.interval == 4
    assert build_augment("none") == (None, None) and build_augment("noaug") == (None, None)
    diff, none = build_augment("diffaugment", policy="translation")
    assert isinstance(diff, DiffAugment) and none is None and diff.policy == ("translation",)
    with pytest.raises(ValueError, match="unknown augmentation kind"):
        build_augment("randaug")
