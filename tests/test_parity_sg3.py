"""Numerical parity with NVIDIA's official StyleGAN3 generators (float32, CPU).

The official code is imported at test time from the `shared/anchors/stylegan3` folder beside the repository
(never copied into ganforge); every test skips when that folder is absent. On CPU tensors its custom ops take
their plain-PyTorch reference paths; the plugins are also marked as unavailable so no build is ever tried.

Each case builds an official network with seeded random weights, moves every tensor that starts at a constant
(biases, magnitude_ema, w_avg, the input affine) away from it so each one changes the output, copies the whole
state dict into the ganforge network with strict loading, and compares outputs:
max|ours - official| / max|official| < 1e-5.
"""

from __future__ import annotations

import functools
import math
import sys
import types

import numpy as np
import pytest
import torch
from conftest import OFFICIAL_SG3, require_shared

from ganforge import build_generator
from ganforge.models.stylegan3 import StyleGAN3Generator, plan_from_sg3_kwargs
from ganforge.nn.filtered import lowpass_filter
from ganforge.plan import make_plan

OFFICIAL_ROOT = require_shared(
    OFFICIAL_SG3, "training/networks_stylegan3.py", "the StyleGAN3 parity tests compare against the official code"
)

RES, Z_DIM, W_DIM, C_DIM = 32, 16, 24, 5  # z and w differ so a swapped size fails.
CBASE, CMAX = 1024, 32  # Per-layer channels 32 down to 16 at 32 px.
BATCH = 3
TOL = 1e-5  # Relative to max|official|.
SMALL_CLAMP = 0.3  # Small enough that clamping changes the outputs (checked by test_conv_clamp_bites).


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one thread.


# ----------------------------------------------------------------------------
# The official code, imported from the shared folder.


@functools.cache
def official() -> types.ModuleType:
    """training.networks_stylegan3 of the official repository, with its CUDA plugins kept off."""
    added_stub = False
    try:
        import requests  # noqa: F401
    except ImportError:  # dnnlib.util imports it for downloads only; the networks never use it.
        sys.modules["requests"] = types.ModuleType("requests")
        added_stub = True
    sys.path.insert(0, str(OFFICIAL_ROOT))
    try:
        from torch_utils.ops import bias_act, conv2d_gradfix, filtered_lrelu, upfirdn2d
        from training import networks_stylegan3
    finally:
        sys.path.remove(str(OFFICIAL_ROOT))
        if added_stub:
            del sys.modules["requests"]
    # Each op builds its plugin in _init() on first use with a CUDA tensor; answering "unavailable" keeps every
    # call on the reference path (filtered_lrelu, upfirdn2d and bias_act all fall back to it).
    for ops in (bias_act, upfirdn2d, filtered_lrelu):
        ops._init = lambda: False
    conv2d_gradfix.enabled = False
    return networks_stylegan3


def official_kwargs(radial: bool = False, c_dim: int = 0, **synthesis) -> dict:
    """networks_stylegan3.Generator kwargs of a tiny T (or R, radial=True) model at 32 px."""
    kwargs = dict(
        z_dim=Z_DIM,
        c_dim=c_dim,
        w_dim=W_DIM,
        img_resolution=RES,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        channel_base=CBASE * (2 if radial else 1),
        channel_max=CMAX * (2 if radial else 1),
        num_fp16_res=0,
        conv_clamp=None,
        magnitude_ema_beta=0.5 ** (32 / 20000),  # train.py at batch 32.
    )
    if radial:
        kwargs.update(conv_kernel=1, use_radial_filters=True)
    return {**kwargs, **synthesis}


@torch.no_grad()
def perturb(net: torch.nn.Module) -> torch.nn.Module:
    """Move every constant-initialized tensor of an official network so that each one matters."""
    for name, t in net.state_dict().items():
        if name.endswith("bias"):
            t.add_(0.2 * torch.randn_like(t))
        elif name.endswith(("magnitude_ema", "w_avg")):
            t.copy_(torch.rand_like(t) + 0.5 if name.endswith("magnitude_ema") else torch.randn_like(t))
        elif name.endswith("input.affine.weight"):  # Zero at init: the input would never rotate or shift.
            t.copy_(0.3 * torch.randn_like(t))
    return net


def official_generator(**kwargs) -> torch.nn.Module:
    torch.manual_seed(1)
    return perturb(official().Generator(**official_kwargs(**kwargs))).eval()


def ours_like(off_G: torch.nn.Module, **kwargs) -> StyleGAN3Generator:
    """The ganforge network of the same kwargs, with the official state dict loaded strictly."""
    G = build_generator(plan_from_sg3_kwargs(official_kwargs(**kwargs)))
    assert isinstance(G, StyleGAN3Generator)
    G.load_state_dict(off_G.state_dict(), strict=True)
    return G.eval()


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    return float((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def rotation_transform(angle_deg: float, tx: float, ty: float) -> torch.Tensor:
    """The inverse of a rotation + translation of the image, as gen_images.py sets synthesis.input.transform."""
    a = math.radians(angle_deg)
    m = np.array([[math.cos(a), math.sin(a), tx], [-math.sin(a), math.cos(a), ty], [0, 0, 1]])
    return torch.from_numpy(np.linalg.inv(m)).float()


# ----------------------------------------------------------------------------
# Names, shapes and filters.


@pytest.mark.parametrize("radial", [False, True], ids=["T", "R"])
def test_state_dict_names_and_shapes_at_1024(radial):
    """Built on the meta device: every official key (buffers included) with the same shape, and nothing else."""
    kwargs: dict = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3)
    if radial:  # train.py's stylegan3-r.
        kwargs.update(channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True)
    with torch.device("meta"):
        off_G = official().Generator(**kwargs)
        G = build_generator(plan_from_sg3_kwargs(kwargs))
    theirs = {k: tuple(v.shape) for k, v in off_G.state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    assert ours == theirs
    assert sum(p.numel() for p in G.parameters()) == sum(p.numel() for p in off_G.parameters())
    assert G.num_ws == off_G.num_ws == 16


@pytest.mark.parametrize("family", ["stylegan3-t", "stylegan3-r"])
@pytest.mark.parametrize("res", [32, 256, 1024])
def test_designed_filters_equal_official(family, res):
    """Every layer's up/down filter, as the official design function makes it from the same numbers."""
    design = official().SynthesisLayer.design_lowpass_filter
    plan = make_plan("config-f", res, family=family)
    for s in plan.sg3_geometry:
        pairs = [
            (
                lowpass_filter(s.up_taps, s.in_cutoff, s.in_half_width * 2, s.tmp_rate),
                design(numtaps=s.up_taps, cutoff=s.in_cutoff, width=s.in_half_width * 2, fs=s.tmp_rate),
            ),
            (
                lowpass_filter(s.down_taps, s.out_cutoff, s.out_half_width * 2, s.tmp_rate, s.down_radial),
                design(
                    numtaps=s.down_taps,
                    cutoff=s.out_cutoff,
                    width=s.out_half_width * 2,
                    fs=s.tmp_rate,
                    radial=s.down_radial,
                ),
            ),
        ]
        for ours, theirs in pairs:
            if theirs is None:
                assert ours is None
                continue
            ours_t = torch.tensor(ours, dtype=torch.float32)
            assert ours_t.shape == theirs.shape
            torch.testing.assert_close(ours_t, theirs, rtol=1e-6, atol=1e-9)
    assert any(s.down_radial for s in plan.sg3_geometry) == (family == "stylegan3-r")


@pytest.mark.parametrize("radial", [False, True], ids=["T", "R"])
def test_filter_buffers_of_a_built_network_equal_official(radial):
    off_G = official_generator(radial=radial)
    G = build_generator(plan_from_sg3_kwargs(official_kwargs(radial=radial)))
    theirs, ours = off_G.state_dict(), G.state_dict()
    names = [k for k in theirs if k.endswith(("up_filter", "down_filter"))]
    assert names and all(theirs[k].shape == ours[k].shape for k in names)
    assert max(float((theirs[k] - ours[k]).abs().max()) for k in names) <= 1e-7


# ----------------------------------------------------------------------------
# Parts.


def test_mapping_conditional_with_truncation_and_w_avg_update():
    off_G = official_generator(c_dim=C_DIM)
    G = ours_like(off_G, c_dim=C_DIM)
    z, c = torch.randn(BATCH, Z_DIM), torch.eye(C_DIM)[:BATCH]
    for psi, cutoff in [(1, None), (0.6, None), (0.6, 3)]:
        ref = off_G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
        assert rel_err(G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff), ref) < TOL
    with torch.no_grad():
        off_G.mapping(z, c, update_emas=True)
        G.mapping(z, c, update_emas=True)
    assert rel_err(G.mapping.w_avg, off_G.mapping.w_avg) < TOL


@pytest.mark.parametrize("transform", ["identity", "rotated"])
def test_synthesis_input(transform):
    off_G = official_generator()
    G = ours_like(off_G)
    if transform == "rotated":
        m = rotation_transform(25.0, 0.3, -0.2)
        off_G.synthesis.input.transform.copy_(m)
        G.synthesis.input.transform.copy_(m)
    w = torch.randn(BATCH, W_DIM)
    with torch.no_grad():
        ref, ours = off_G.synthesis.input(w), G.synthesis.input(w)
    assert rel_err(ours, ref) < TOL


@pytest.mark.parametrize("radial", [False, True], ids=["T", "R"])
def test_every_synthesis_layer(radial):
    """Each layer fed the same input (the official output of the previous one) and w."""
    off_G = official_generator(radial=radial, conv_clamp=SMALL_CLAMP)
    G = ours_like(off_G, radial=radial, conv_clamp=SMALL_CLAMP)
    ws = torch.randn(BATCH, off_G.num_ws, W_DIM)
    with torch.no_grad():
        x = off_G.synthesis.input(ws[:, 0])
        for i, name in enumerate(off_G.synthesis.layer_names):
            ref = getattr(off_G.synthesis, name)(x, ws[:, i + 1])
            ours = getattr(G.synthesis, name)(x, ws[:, i + 1])
            assert rel_err(ours, ref) < TOL, name
            x = ref


# ----------------------------------------------------------------------------
# Whole generators.


@pytest.mark.parametrize(
    "case",
    [
        dict(radial=False),
        dict(radial=True),
        dict(radial=False, c_dim=C_DIM),
        dict(radial=True, c_dim=C_DIM, conv_clamp=SMALL_CLAMP),
        dict(radial=False, conv_clamp=SMALL_CLAMP),
        dict(radial=False, num_fp16_res=4, conv_clamp=256),  # Official defaults: float32 on CPUs for both.
    ],
    ids=["T", "R", "T-cond", "R-cond-clamp", "T-clamp", "T-fp16res"],
)
def test_generator(case):
    off_G = official_generator(**case)
    G = ours_like(off_G, **case)
    c_dim = case.get("c_dim", 0)
    z = torch.randn(BATCH, Z_DIM)
    c = torch.eye(c_dim)[torch.arange(BATCH) % c_dim] if c_dim else None
    with torch.no_grad():
        ref = off_G(z, c, truncation_psi=0.7)
        ours = G(z, c, truncation_psi=0.7, noise_mode="const")
    assert ours.shape == (BATCH, 3, RES, RES)
    assert rel_err(ours, ref) < TOL


def test_conv_clamp_bites():
    """SMALL_CLAMP changes the official output, so the clamp cases above test something."""
    z = torch.randn(BATCH, Z_DIM)
    with torch.no_grad():
        free = official_generator()(z, None)
        clamped = official_generator(conv_clamp=SMALL_CLAMP)(z, None)
    assert rel_err(clamped, free) > 1e-2


@pytest.mark.parametrize("radial", [False, True], ids=["T", "R"])
def test_update_emas_tracks_magnitudes_and_w_avg(radial):
    off_G = official_generator(radial=radial)
    G = ours_like(off_G, radial=radial)
    z = torch.randn(BATCH, Z_DIM)
    with torch.no_grad():
        for _ in range(2):
            ref = off_G(z, None, update_emas=True)
            ours = G(z, None, update_emas=True)
    assert rel_err(ours, ref) < TOL
    theirs = off_G.state_dict()
    for name, value in G.state_dict().items():
        if name.endswith(("magnitude_ema", "w_avg")):
            assert rel_err(value, theirs[name]) < TOL, name
