"""Augmentation parity: ganforge's ADA pipeline against the official `training/augment.py` AugmentPipe, and
ganforge's DiffAugment against a reference written here from the published DiffAugment formulas.

ADA: both pipelines are seeded alike before each run (`torch.manual_seed`) and must draw the same random
numbers in the same order, so every op group, alone and in the `bgc` / `bgcfnc` presets, gives the same images
and the same d loss / d images (float32; the official pipe builds its matrices in float32 and has no float64
path). The random stream must also be left in the same state, which pins the number of draws. The official
code is imported at test time from `shared/anchors/stylegan2-ada-pytorch` (never copied into ganforge); these
tests skip when that folder is absent (and fail under CI).
"""

from __future__ import annotations

import functools
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from conftest import OFFICIAL_SG2, require_shared

from ganforge.augment import PRESETS, AugmentPipe, DiffAugment
from ganforge.augment.image_ops import filter_bank

OPS = (
    "xflip",
    "rotate90",
    "xint",
    "scale",
    "rotate",
    "aniso",
    "xfrac",
    "brightness",
    "contrast",
    "lumaflip",
    "hue",
    "saturation",
    "imgfilter",
    "noise",
    "cutout",
)
SIZES = ((32, 32), (24, 40))  # Square, and non-square with H < W.
BATCH = 4
IMG_TOL = 1e-5  # Absolute, images in ~[-1, 1].
GRAD_TOL = 1e-5  # Relative to max |official gradient|.


# ----------------------------------------------------------------------------
# The official pipeline, imported from the shared folder (at test time only).


@functools.cache
def official() -> types.ModuleType:
    """training.augment of the official repository, its CUDA plugins kept off (CPU takes the reference paths)."""
    root = require_shared(OFFICIAL_SG2, "training/augment.py", "the ADA parity tests compare against it")
    added_stub = False
    try:
        import requests  # noqa: F401
    except ImportError:  # dnnlib.util imports it for downloads only.
        sys.modules["requests"] = types.ModuleType("requests")
        added_stub = True
    sys.path.insert(0, str(root))
    try:
        from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix, upfirdn2d
        from training import augment
    finally:
        sys.path.remove(str(root))
        if added_stub:
            del sys.modules["requests"]
    if upfirdn2d._plugin is None:
        upfirdn2d._inited = True  # Never try to build the plugin.
    conv2d_gradfix.enabled = False
    grid_sample_gradfix.enabled = False  # Native grid_sample (double backward works on this torch).
    return augment


def test_official_imports_and_runs():
    aug = official()
    pipe = aug.AugmentPipe(**PRESETS["bgcfnc"])
    x = torch.zeros(2, 3, 32, 32, requires_grad=True)  # Official needs > 21 px for the band filters.
    pipe(x).sum().backward()
    assert x.grad is not None


def test_filter_bank_is_the_official_one():
    assert torch.equal(filter_bank(), official().AugmentPipe().Hz_fbank)


# ----------------------------------------------------------------------------
# ADA: the same images and gradients, seeded alike.


def sample_images(h: int, w: int, c: int = 3, seed: int = 1) -> torch.Tensor:
    """Smooth random images with texture, in [-1, 1] (a generator of their own: no draw from the global stream)."""
    gen = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(BATCH, c, 5, 5, generator=gen) * 2 - 1, size=(h, w), mode="bicubic")
    return (smooth + 0.25 * torch.randn(BATCH, c, h, w, generator=gen)).clamp(-1, 1)


def run_pipe(pipe: torch.nn.Module, x0: torch.Tensor, weight: torch.Tensor, seed: int):
    """(augmented images, d Σ(weight·y) / d images, RNG state after) from a seeded run."""
    x = x0.clone().requires_grad_(True)
    torch.manual_seed(seed)
    y = pipe(x)
    state = torch.get_rng_state()
    (y * weight).sum().backward()
    return y.detach(), x.grad, state


# At p = 0.5 this seed fires every op on some samples of the batch and not on others (asserted below).
SEED = 122


def compare(mults: dict[str, float], p: float, h: int, w: int, c: int = 3, seed: int = SEED):
    """Max |Δ| of images and of gradients (the latter relative to max |official gradient|)."""
    x0 = sample_images(h, w, c)
    weight = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))
    ref = official().AugmentPipe(**mults)
    ref.p.copy_(torch.tensor(p))
    ours = AugmentPipe(p=p, **mults)
    y_ref, g_ref, state_ref = run_pipe(ref, x0, weight, seed)
    y, g, state = run_pipe(ours, x0, weight, seed)
    assert torch.equal(state, state_ref), "a different number of random draws than the official pipe"
    assert y.dtype == y_ref.dtype == torch.float32 and y.shape == y_ref.shape
    img_err = (y - y_ref).abs().max().item()
    grad_err = ((g - g_ref).abs().max() / g_ref.abs().max()).item()
    untouched = sum(torch.equal(y[i], x0[i]) for i in range(BATCH))
    return img_err, grad_err, untouched, (y - x0).abs().max().item()


@pytest.mark.parametrize("hw", SIZES, ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("p", [1.0, 0.5])
@pytest.mark.parametrize("op", OPS)
def test_each_op_group_matches_official(op, p, hw):
    img_err, grad_err, untouched, change = compare({op: 1.0}, p, *hw)
    assert img_err < IMG_TOL, f"{op} p={p}: images differ by {img_err:.2e}"
    assert grad_err < GRAD_TOL, f"{op} p={p}: gradients differ by {grad_err:.2e} (relative)"
    assert change > 1e-2, f"{op} p={p} left the batch unchanged: the comparison would prove nothing"
    if p == 1.0 and op not in ("rotate", "lumaflip"):  # Every sample fired and changed. (Rotation fires with
        assert untouched == 0  # p_rot = 1 − √(1 − p) twice; a fired luma flip may draw i = 0, an exact identity.)
    if p == 0.5:  # Both branches of the per-sample gate: some samples fired, some kept bit-exactly.
        assert 0 < untouched < BATCH, f"{op} p=0.5: {untouched} of {BATCH} samples untouched"


@pytest.mark.parametrize("hw", SIZES, ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("p", [1.0, 0.6])
@pytest.mark.parametrize("preset", ["bgc", "bgcfnc"])
def test_presets_match_official(preset, p, hw):
    img_err, grad_err, _, change = compare(PRESETS[preset], p, *hw)
    assert img_err < IMG_TOL and grad_err < GRAD_TOL, f"{preset}: {img_err:.2e} / {grad_err:.2e}"
    assert change > 1e-2


def test_gray_images_match_official():
    """On 1-channel images official skips hue and saturation (no draws): so does ganforge."""
    img_err, grad_err, _, change = compare(PRESETS["bgcfnc"], 0.8, 24, 24, c=1)
    assert img_err < IMG_TOL and grad_err < GRAD_TOL and change > 1e-2


def test_strengths_and_band_multipliers_match_official():
    mults = {
        **PRESETS["bgcf"],
        "xint_max": 0.3,
        "scale_std": 0.4,
        "rotate_max": 0.25,
        "xfrac_std": 0.2,
        "contrast_std": 0.3,
        "hue_max": 0.5,
        "imgfilter_std": 1.5,
        "imgfilter_bands": [1, 0, 2, 0.5],
    }
    img_err, grad_err, _, change = compare(mults, 0.7, 32, 24)
    assert img_err < IMG_TOL and grad_err < GRAD_TOL and change > 1e-2


# ----------------------------------------------------------------------------
# DiffAugment against the published formulas, written out here independently (loops and slices).


def ref_brightness(x):
    return x + (torch.rand([x.shape[0], 1, 1, 1], dtype=x.dtype) - 0.5)


def ref_saturation(x):
    gray = x.mean(dim=1, keepdim=True)
    return (x - gray) * (torch.rand([x.shape[0], 1, 1, 1], dtype=x.dtype) * 2) + gray


def ref_contrast(x):
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand([x.shape[0], 1, 1, 1], dtype=x.dtype) + 0.5) + mean


def ref_translation(x, ratio=0.125):
    """Row shift a (first draw, range from H) and column shift b: out[i, j] = x[i + a, j + b], 0 outside."""
    n, _, h, w = x.shape
    max_a, max_b = int(h * ratio + 0.5), int(w * ratio + 0.5)
    a = torch.randint(-max_a, max_a + 1, size=[n, 1, 1])
    b = torch.randint(-max_b, max_b + 1, size=[n, 1, 1])
    out = torch.zeros_like(x)
    for k in range(n):
        ak, bk = int(a[k]), int(b[k])
        rows_out, rows_in = slice(max(0, -ak), min(h, h - ak)), slice(max(0, ak), min(h, h + ak))
        cols_out, cols_in = slice(max(0, -bk), min(w, w - bk)), slice(max(0, bk), min(w, w + bk))
        out[k, :, rows_out, cols_out] = x[k, :, rows_in, cols_in]
    return out


def ref_cutout(x, ratio=0.5):
    """A (ratio·H) x (ratio·W) block starting half its size before a random offset (rows first), cut to the image."""
    n, _, h, w = x.shape
    size_h, size_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    off_h = torch.randint(0, h + (1 - size_h % 2), size=[n, 1, 1])
    off_w = torch.randint(0, w + (1 - size_w % 2), size=[n, 1, 1])
    mask = torch.ones(n, h, w, dtype=x.dtype)
    for k in range(n):
        top, left = int(off_h[k]) - size_h // 2, int(off_w[k]) - size_w // 2
        mask[k, max(top, 0) : max(top + size_h, 0), max(left, 0) : max(left + size_w, 0)] = 0
    return x * mask[:, None]


REF_OPS = {
    "color": (ref_brightness, ref_saturation, ref_contrast),
    "translation": (ref_translation,),
    "cutout": (ref_cutout,),
}


def ref_diffaugment(x, policy):
    for op in policy.split(","):
        for f in REF_OPS[op]:
            x = f(x)
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hw", [(32, 32), (24, 40), (18, 30)], ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diffaugment_matches_published_formulas(policy, hw, dtype):
    x0 = sample_images(*hw, seed=3).to(dtype)
    weight = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5), dtype=dtype)
    outs = []
    for fn in (lambda x: ref_diffaugment(x, policy), DiffAugment(policy)):
        x = x0.clone().requires_grad_(True)
        torch.manual_seed(11)
        y = fn(x)
        state = torch.get_rng_state()
        (y * weight).sum().backward()
        outs.append((y.detach(), x.grad, state))
    (y_ref, g_ref, s_ref), (y, g, s) = outs
    assert torch.equal(s, s_ref), "a different number of random draws"
    assert y.dtype == dtype and (y - y_ref).abs().max() < 1e-6 and (g - g_ref).abs().max() < 1e-6
    assert (y - x0).abs().max() > 1e-2


def test_diffaugment_single_ops_match():
    """Each color op alone, against its formula (the policy groups them)."""
    from ganforge.augment import diffaugment as D

    x = sample_images(24, 40)
    for ours, ref in ((D.rand_brightness, ref_brightness), (D.rand_saturation, ref_saturation)):
        torch.manual_seed(2)
        y = ours(x)
        torch.manual_seed(2)
        assert (y - ref(x)).abs().max() < 1e-6
    torch.manual_seed(2)
    y = D.rand_contrast(x)
    torch.manual_seed(2)
    assert (y - ref_contrast(x)).abs().max() < 1e-6
