"""Loss parity with the official StyleGAN3 repository: its `training/loss.py` StyleGAN2Loss over its
StyleGAN3-R generator and StyleGAN2 discriminator, with D's input blur (sigma 10 and partly faded), against
ganforge's loss over ganforge networks holding the same weights, both in float64: every phase (G main, D main,
R1) gives the same gradients, and D main moves the same magnitude and w averages.

As in test_parity_training.py, the official modules see a `torch` whose float32 is float64 for these tests.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import types
from collections.abc import Iterator

import pytest
import torch
from conftest import OFFICIAL_SG3, require_shared
from test_parity_sg3 import official, official_kwargs, perturb

from ganforge import build_discriminator, build_generator
from ganforge.models.stylegan3 import plan_from_sg3_kwargs
from ganforge.training.loss import GeneratorStep, StyleGAN2Loss, blur_sigma

OFFICIAL_ROOT = require_shared(
    OFFICIAL_SG3, "training/loss.py", "the StyleGAN3 loss parity test drives the official loss"
)

RES, BATCH, GAMMA = 16, 4, 0.7
LAYERS = 3  # Synthesis layers: enough for every kind (first, critically sampled, ToRGB), cheap in float64.
RADIAL = True  # StyleGAN3-R, whose recipe has the blur.
BLUR_INIT, BLUR_FADE_KIMG = 10.0, 0.2  # Official stylegan3-r: 10 and batch * 200 / 32.
TOL = 1e-10  # Relative to the largest official value.


class _Float64Torch(types.ModuleType):
    """torch, except that `float32` names float64 (the official code casts to torch.float32 explicitly)."""

    float32 = torch.float64

    def __getattr__(self, name: str):
        return getattr(torch, name)


@functools.cache
def official_modules() -> tuple[types.ModuleType, types.ModuleType, list[types.ModuleType]]:
    """(training.loss, training.networks_stylegan2, the official modules that name torch.float32)."""
    # Import every official module afresh, together: `official()` is cached by test_parity_sg3, and the modules it
    # returned there were dropped from sys.modules after that file (conftest), so a torch_utils imported now would
    # not be the one its persistent classes point to.
    for name in [n for n in sys.modules if n.split(".")[0] in ("training", "torch_utils", "dnnlib")]:
        del sys.modules[name]
    networks3 = official.__wrapped__()
    sys.path.insert(0, str(OFFICIAL_ROOT))
    try:
        from torch_utils.ops import bias_act, conv2d_gradfix, conv2d_resample, filtered_lrelu, upfirdn2d
        from training import loss, networks_stylegan2
    finally:
        sys.path.remove(str(OFFICIAL_ROOT))
    patched = [networks3, networks_stylegan2, bias_act, conv2d_gradfix, conv2d_resample, filtered_lrelu, upfirdn2d]
    return loss, networks_stylegan2, [*patched, loss]


@contextlib.contextmanager
def float64() -> Iterator[None]:
    _, _, patched = official_modules()
    saved_dtype, saved = torch.get_default_dtype(), [m.torch for m in patched]
    torch.set_default_dtype(torch.float64)
    for module in patched:
        module.torch = _Float64Torch("torch")
    try:
        yield
    finally:
        torch.set_default_dtype(saved_dtype)
        for module, original in zip(patched, saved, strict=True):
            module.torch = original


def both_sides():
    """(official loss, our loss, official G, D, our G, D): a tiny StyleGAN3-R and its D with the same weights."""
    loss_module, networks2, patched = official_modules()
    networks3 = patched[0]
    kwargs = official_kwargs(radial=RADIAL, img_resolution=RES, num_layers=LAYERS, num_critical=1)
    torch.manual_seed(1)
    off_G = perturb(networks3.Generator(**kwargs)).double()
    plan = plan_from_sg3_kwargs(kwargs, preset="tiny", mbstd_group=4, conv_clamp=None, num_fp16_res=0)
    off_D = networks2.Discriminator(
        c_dim=0,
        img_resolution=RES,
        img_channels=3,
        channel_base=plan.cbase,
        channel_max=plan.cmax,
        num_fp16_res=0,
        conv_clamp=None,
        epilogue_kwargs=dict(mbstd_group_size=4),
    )
    off_D = perturb(off_D).double()
    G, D = build_generator(plan).double(), build_discriminator(plan).double()
    G.load_state_dict(off_G.state_dict(), strict=True)
    D.load_state_dict(off_D.state_dict(), strict=True)
    theirs = loss_module.StyleGAN2Loss(
        torch.device("cpu"),
        G=off_G,
        D=off_D,
        r1_gamma=GAMMA,
        blur_init_sigma=BLUR_INIT,
        blur_fade_kimg=BLUR_FADE_KIMG,
    )
    ours = StyleGAN2Loss(GeneratorStep(G, style_mixing=0.0, sg3=True), D, r1_gamma=GAMMA, pl_weight=0.0)
    return theirs, ours, off_G, off_D, G, D


def close(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    return bool((ours - theirs).abs().max() <= TOL * max(theirs.abs().max().item(), 1e-30))


@pytest.mark.parametrize(  # σ = 10 (wider than the image) or σ = 2.5.
    "phase, cur_nimg", [("Gmain", 150), ("Dmain", 0), ("Dmain", 150), ("Dreg", 150)]
)
def test_phase_gradients_and_averages_match_official(phase, cur_nimg):
    with float64():
        theirs, ours, off_G, off_D, G, D = both_sides()
        initial = {n: b.clone() for n, b in G.named_buffers()}
        gen = torch.Generator().manual_seed(7)
        real = torch.rand([BATCH, 3, RES, RES], generator=gen, dtype=torch.float64) * 2 - 1
        z = torch.randn([BATCH, G.z_dim], generator=gen, dtype=torch.float64)
        c = torch.zeros([BATCH, 0])
        ours.blur_sigma = blur_sigma(cur_nimg, BLUR_INIT, BLUR_FADE_KIMG)
        assert ours.blur_sigma == pytest.approx(10.0 if cur_nimg == 0 else 2.5)
        trained = ("G", off_G, G) if phase == "Gmain" else ("D", off_D, D)
        trained[1].requires_grad_(True)
        trained[2].requires_grad_(True)
        theirs.accumulate_gradients(phase, real, c, z, c, gain=3.0, cur_nimg=cur_nimg)
        ours.accumulate(phase, real, c, z, c, gain=3.0)
    our_params = dict(trained[2].named_parameters())
    for name, p in trained[1].named_parameters():
        mine = our_params[name].grad
        if p.grad is None:  # Official R1: D's output bias leaves no gradient; ours adds logits·0.
            assert mine is None or not mine.any(), f"{phase}: grad of {trained[0]}.{name}"
            continue
        assert close(mine, p.grad), f"{phase}: grad of {trained[0]}.{name}"
    our_buffers = dict(G.named_buffers())
    averages = [n for n, _ in off_G.named_buffers() if n.endswith(("magnitude_ema", "w_avg"))]
    for name in averages:
        assert close(our_buffers[name], dict(off_G.named_buffers())[name]), f"{phase}: {name}"
    moved = [n for n in averages if not torch.equal(our_buffers[n], initial[n])]
    assert bool(moved) == (phase == "Dmain")  # Only D main's pass on fakes tracks the averages.
