"""Numerical parity with NVIDIA's official StyleGAN2-ADA networks (float32, CPU).

The official code is imported at test time from the `shared/anchors/stylegan2-ada-pytorch` folder
beside the repository (never copied into ganforge); every test skips when that folder is absent.

Each case builds an official G or D with seeded random weights, moves every zero-initialised tensor
(biases, noise strengths, w_avg) away from zero so that each one changes the output, copies every
parameter and buffer into the ganforge network by name with strict loading, and compares outputs:
max|ours - official| / max|official| < 1e-5.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
from conftest import OFFICIAL_SG2, require_shared
from torch import nn

from ganforge.models.discriminator import Discriminator
from ganforge.models.generator import Generator
from ganforge.plan import make_plan

OFFICIAL_ROOT = require_shared(
    OFFICIAL_SG2, "training/networks.py", "the parity tests compare against the official code"
)

# A tiny 32×32 model: channels 32, 32, 32, 16 for b4..b32; z and w differ so a swapped size fails.
RES, CBASE, CMAX = 32, 512, 32
Z_DIM, W_DIM, MAPPING_LAYERS, C_DIM = 24, 32, 3, 5
BATCH = 8  # Two minibatch-std groups of 4.
TOL = 1e-5  # Relative to max|official|.
ATOL = 1e-6  # Absolute floor for outputs that are ~0.
ARCHS = ("orig", "skip", "resnet")
SMALL_CLAMP = 0.5  # Small enough that clamping changes the outputs (checked by test_conv_clamp_fires).


# ----------------------------------------------------------------------------
# The official code, imported from the shared folder.


@functools.cache
def official() -> types.ModuleType:
    """training.networks of the official repository, with its CUDA plugins kept off."""
    added_stub = False
    try:
        import requests  # noqa: F401
    except ImportError:  # dnnlib.util imports it for downloads only; the networks never use it.
        sys.modules["requests"] = types.ModuleType("requests")
        added_stub = True
    sys.path.insert(0, str(OFFICIAL_ROOT))
    try:
        from torch_utils.ops import bias_act, conv2d_gradfix, upfirdn2d
        from training import networks
    finally:
        sys.path.remove(str(OFFICIAL_ROOT))
        if added_stub:
            del sys.modules["requests"]
    # CPU tensors take the reference paths anyway; marking the plugins as already tried (and absent)
    # guarantees that no build is ever attempted.
    for ops in (bias_act, upfirdn2d):
        if ops._plugin is None:
            ops._inited = True
    conv2d_gradfix.enabled = False
    return networks


# ----------------------------------------------------------------------------
# Cases, builders and weight copying.


@dataclass(frozen=True)
class Case:
    arch: str
    c_dim: int = 0
    conv_clamp: float | None = None
    img_channels: int = 3
    mbstd_group: int = 4  # 0 = whole batch.
    mbstd_channels: int = 1
    cmap_dim: int | None = None  # Conditional D projection size; None = channels of b4.
    d_mapping_layers: int = 8  # Depth of D's label mapping.

    def __str__(self) -> str:
        s = f"{self.arch}-c{self.c_dim}-clamp{self.conv_clamp}"
        if self.img_channels != 3:
            s += f"-rgb{self.img_channels}"
        if (self.mbstd_group, self.mbstd_channels) != (4, 1):
            s += f"-mbstd{self.mbstd_group}x{self.mbstd_channels}"
        if (self.cmap_dim, self.d_mapping_layers) != (None, 8):
            s += f"-cmap{self.cmap_dim}x{self.d_mapping_layers}"
        return s

    def plan(self, **overrides):
        kw = dict(
            cbase=CBASE,
            cmax=CMAX,
            z_dim=Z_DIM,
            w_dim=W_DIM,
            mapping_layers=MAPPING_LAYERS,
            g_architecture=self.arch,
            d_architecture=self.arch,
            conv_clamp=self.conv_clamp,
            num_fp16_res=0,
            mbstd_group=self.mbstd_group,
            mbstd_channels=self.mbstd_channels,
            cmap_dim=self.cmap_dim,
            d_mapping_layers=self.d_mapping_layers,
        )
        kw.update(overrides)
        return make_plan("tiny", RES, img_channels=self.img_channels, c_dim=self.c_dim, **kw)


G_CASES = [Case(a, c, clamp) for a in ARCHS for c in (0, C_DIM) for clamp in (None, SMALL_CLAMP)]
G_CASES.append(Case("skip", C_DIM, img_channels=1))
D_CASES = G_CASES + [
    Case("resnet", mbstd_group=0),  # Whole batch as one group.
    Case("resnet", mbstd_group=2, mbstd_channels=2),
    Case("orig", C_DIM, mbstd_group=16),  # Group larger than the batch: min(group, N).
    Case("skip", C_DIM, cmap_dim=8, d_mapping_layers=2),
]


def official_g(case: Case, num_fp16_res: int = 0) -> nn.Module:
    return official().Generator(
        z_dim=Z_DIM,
        c_dim=case.c_dim,
        w_dim=W_DIM,
        img_resolution=RES,
        img_channels=case.img_channels,
        mapping_kwargs=dict(num_layers=MAPPING_LAYERS),
        synthesis_kwargs=dict(
            channel_base=CBASE,
            channel_max=CMAX,
            num_fp16_res=num_fp16_res,
            conv_clamp=case.conv_clamp,
            architecture=case.arch,
        ),
    )


def official_d(case: Case, num_fp16_res: int = 0) -> nn.Module:
    return official().Discriminator(
        c_dim=case.c_dim,
        img_resolution=RES,
        img_channels=case.img_channels,
        architecture=case.arch,
        channel_base=CBASE,
        channel_max=CMAX,
        num_fp16_res=num_fp16_res,
        conv_clamp=case.conv_clamp,
        cmap_dim=case.cmap_dim,
        mapping_kwargs=dict(num_layers=case.d_mapping_layers),
        epilogue_kwargs=dict(mbstd_group_size=case.mbstd_group or None, mbstd_num_channels=case.mbstd_channels),
    )


@torch.no_grad()
def perturb_(net: nn.Module, seed: int) -> None:
    """Move every zero-initialised tensor off its init so that it changes the output."""
    gen = torch.Generator().manual_seed(seed)
    for module in net.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "bias":  # Stored biases are scaled by bias_gain (0.01 in the mapping nets) at run time.
                p.add_(torch.randn(p.shape, generator=gen) * 0.5 / getattr(module, "bias_gain", 1))
            elif name == "noise_strength":
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        if hasattr(module, "w_avg"):
            module.w_avg.copy_(torch.randn(module.w_avg.shape, generator=gen))
    zeros = [k for k, v in net.state_dict().items() if not v.any()]
    assert not zeros, f"tensors left at zero would not be tested: {zeros}"


def load_official(ours: nn.Module, theirs: nn.Module) -> None:
    """Copy every official parameter and buffer into ours by name; any unmapped name or shape fails."""
    src, dst = theirs.state_dict(), ours.state_dict()
    problems = [f"only in official: {k} {list(src[k].shape)}" for k in sorted(set(src) - set(dst))]
    problems += [f"only in ganforge: {k} {list(dst[k].shape)}" for k in sorted(set(dst) - set(src))]
    problems += [
        f"shape of {k}: official {list(src[k].shape)}, ganforge {list(dst[k].shape)}"
        for k in sorted(set(src) & set(dst))
        if src[k].shape != dst[k].shape
    ]
    assert not problems, f"{type(ours).__name__} state dict does not map one-to-one:\n" + "\n".join(problems)
    ours.load_state_dict(src, strict=True)


def build_g(case: Case, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """(ganforge G, official G) in eval mode with identical, perturbed weights."""
    torch.manual_seed(seed)
    theirs = official_g(case)
    perturb_(theirs, seed + 1)
    ours = Generator(case.plan())
    load_official(ours, theirs)
    return ours.eval(), theirs.eval()


def build_d(case: Case, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    theirs = official_d(case)
    perturb_(theirs, seed + 1)
    ours = Discriminator(case.plan())
    load_official(ours, theirs)
    return ours.eval(), theirs.eval()


# ----------------------------------------------------------------------------
# Comparison helpers.


def randn(*shape: int, seed: int = 100) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def labels(case: Case, seed: int = 200) -> torch.Tensor | None:
    return randn(BATCH, case.c_dim, seed=seed) if case.c_dim else None


def assert_parity(ours: torch.Tensor | None, theirs: torch.Tensor | None, what: str) -> None:
    if theirs is None or ours is None:
        assert ours is None and theirs is None, f"{what}: one side returned None"
        return
    assert ours.shape == theirs.shape, f"{what}: shape {list(ours.shape)} vs official {list(theirs.shape)}"
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype} vs official {theirs.dtype}"
    assert torch.isfinite(theirs).all(), f"{what}: official output is not finite"
    diff = (ours - theirs).abs().max().item()
    scale = theirs.abs().max().item()
    print(f"{what}: max|diff| / max|official| = {diff / max(scale, ATOL):.2e}")
    assert diff <= TOL * scale + ATOL, f"{what}: max|diff| = {diff:.3e}, max|official| = {scale:.3e}"


@contextlib.contextmanager
def clamps_off(net: nn.Module) -> Iterator[None]:
    saved = {m: m.conv_clamp for m in net.modules() if getattr(m, "conv_clamp", None) is not None}
    for m in saved:
        m.conv_clamp = None
    try:
        yield
    finally:
        for m, value in saved.items():
            m.conv_clamp = value


@pytest.fixture(scope="module", autouse=True)
def _forget_official() -> Iterator[None]:
    """Leave sys.modules as we found it: other tests check that no official module is loaded."""
    yield
    official.cache_clear()
    for name in list(sys.modules):
        if name.split(".")[0] in ("training", "torch_utils", "dnnlib"):
            del sys.modules[name]


@pytest.fixture(autouse=True)
def _no_grad() -> Iterator[None]:
    with torch.no_grad():
        yield


@pytest.fixture(scope="module", params=G_CASES, ids=str)
def g_pair(request) -> tuple[nn.Module, nn.Module, Case]:
    return (*build_g(request.param), request.param)


@pytest.fixture(scope="module", params=D_CASES, ids=str)
def d_pair(request) -> tuple[nn.Module, nn.Module, Case]:
    return (*build_d(request.param), request.param)


# ----------------------------------------------------------------------------
# Structure: names, shapes, fixed buffers, reduced-precision blocks.


@pytest.mark.parametrize("case", D_CASES, ids=str)
def test_fixed_buffers_match_official(case: Case) -> None:
    """Buffers that are not learned (FIR filters) must be equal before any copying."""
    for ours, theirs in ((Generator(case.plan()), official_g(case)), (Discriminator(case.plan()), official_d(case))):
        src = theirs.state_dict()
        for key, value in ours.state_dict().items():
            if key.endswith("resample_filter"):
                assert key in src, f"{key} not in the official state dict"
                assert torch.equal(value, src[key]), f"{key} differs from the official filter"


def test_num_ws_matches_official(g_pair) -> None:
    ours, theirs, _ = g_pair
    assert ours.num_ws == theirs.num_ws
    assert ours.synthesis.num_ws == theirs.synthesis.num_ws


@pytest.mark.parametrize("num_fp16_res", [1, 2, 3, 4])
def test_fp16_blocks_match_official(num_fp16_res: int) -> None:
    case = Case("skip")
    plan = case.plan(num_fp16_res=num_fp16_res)
    g, d = Generator(plan), Discriminator(plan)
    g_ref, d_ref = official_g(case, num_fp16_res), official_d(case, num_fp16_res)
    for res in g_ref.synthesis.block_resolutions:
        assert getattr(g.synthesis, f"b{res}").use_fp16 == getattr(g_ref.synthesis, f"b{res}").use_fp16, f"G b{res}"
    for res in d_ref.block_resolutions:
        assert getattr(d, f"b{res}").use_fp16 == getattr(d_ref, f"b{res}").use_fp16, f"D b{res}"


# ----------------------------------------------------------------------------
# Generator.


@pytest.mark.parametrize("psi,cutoff", [(1.0, None), (0.7, None), (0.7, 3), (0.0, None)])
def test_mapping(g_pair, psi: float, cutoff: int | None) -> None:
    ours, theirs, case = g_pair
    z, c = randn(BATCH, Z_DIM), labels(case)
    assert_parity(
        ours.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff),
        theirs.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff),
        f"mapping psi={psi} cut={cutoff}",
    )


def test_mapping_w_avg_update(g_pair) -> None:
    _, _, case = g_pair
    ours, theirs = build_g(case)  # Fresh copies: training mode updates the w_avg buffer.
    ours.train()
    theirs.train()
    for step in range(3):
        z, c = randn(BATCH, Z_DIM, seed=step), labels(case, seed=step)
        assert_parity(ours.mapping(z, c), theirs.mapping(z, c), f"mapping (train) step {step}")
        assert_parity(ours.mapping.w_avg, theirs.mapping.w_avg, f"w_avg after step {step}")


@pytest.mark.parametrize("fused", [True, False])
def test_synthesis_blocks(g_pair, fused: bool) -> None:
    """Each block alone, given the same x, img and ws."""
    ours, theirs, case = g_pair
    for i, res in enumerate(theirs.synthesis.block_resolutions):
        ref = getattr(theirs.synthesis, f"b{res}")
        blk = getattr(ours.synthesis, f"b{res}")
        ws = randn(BATCH, ref.num_conv + ref.num_torgb, W_DIM, seed=i)
        x = randn(BATCH, ref.in_channels, res // 2, res // 2, seed=10 + i) if ref.in_channels else None
        img = randn(BATCH, case.img_channels, res // 2, res // 2, seed=20 + i) if ref.in_channels else None
        x_ref, img_ref = ref(x, None if img is None else img.clone(), ws, fused_modconv=fused, noise_mode="const")
        x_ours, img_ours = blk(x, img, ws, fused_modconv=fused, noise_mode="const")
        assert_parity(x_ours, x_ref, f"b{res} x (fused={fused})")
        assert_parity(img_ours, img_ref, f"b{res} img (fused={fused})")


@pytest.mark.parametrize("noise_mode", ["const", "none"])
@pytest.mark.parametrize("fused", [True, False, None])
def test_generator(g_pair, noise_mode: str, fused: bool | None) -> None:
    ours, theirs, case = g_pair
    z, c = randn(BATCH, Z_DIM), labels(case)
    kw = dict(noise_mode=noise_mode, fused_modconv=fused)
    assert_parity(ours(z, c, **kw), theirs(z, c, **kw), f"G noise={noise_mode} fused={fused}")
    kw.update(truncation_psi=0.7, truncation_cutoff=4)
    assert_parity(ours(z, c, **kw), theirs(z, c, **kw), f"G psi=0.7 cut=4 noise={noise_mode} fused={fused}")


def test_generator_training_mode_defaults(g_pair) -> None:
    """Training mode picks the non-fused modconv path by default and updates w_avg on the way."""
    _, _, case = g_pair
    ours, theirs = build_g(case)
    ours.train()
    theirs.train()
    z, c = randn(BATCH, Z_DIM), labels(case)
    assert_parity(ours(z, c, noise_mode="const"), theirs(z, c, noise_mode="const"), "G train mode")
    assert_parity(ours.mapping.w_avg, theirs.mapping.w_avg, "w_avg after G train step")


def test_random_noise_follows_official_draws(g_pair) -> None:
    """With the same global seed, noise_mode='random' draws the same noise in the same order."""
    ours, theirs, case = g_pair
    z, c = randn(BATCH, Z_DIM), labels(case)
    torch.manual_seed(123)
    ref = theirs(z, c, noise_mode="random")
    torch.manual_seed(123)
    assert_parity(ours(z, c, noise_mode="random"), ref, "G noise=random")


# ----------------------------------------------------------------------------
# Discriminator.


def test_discriminator_blocks(d_pair) -> None:
    """Each block alone, then the epilogue, given the same inputs."""
    ours, theirs, case = d_pair
    for i, res in enumerate(theirs.block_resolutions):
        ref, blk = getattr(theirs, f"b{res}"), getattr(ours, f"b{res}")
        x = randn(BATCH, ref.in_channels, res, res, seed=i) if ref.in_channels else None
        img = randn(BATCH, case.img_channels, res, res, seed=10 + i)
        x_ref, img_ref = ref(x, img)
        x_ours, img_ours = blk(x, img)
        assert_parity(x_ours, x_ref, f"D b{res} x")
        assert_parity(img_ours, img_ref, f"D b{res} img")
    channels = theirs.b4.in_channels
    x, img = randn(BATCH, channels, 4, 4, seed=30), randn(BATCH, case.img_channels, 4, 4, seed=31)
    cmap = randn(BATCH, theirs.b4.cmap_dim, seed=32) if case.c_dim else None
    assert_parity(ours.b4(x, img, cmap), theirs.b4(x, img, cmap), "D epilogue")


def test_discriminator_logits(d_pair) -> None:
    ours, theirs, case = d_pair
    img, c = randn(BATCH, case.img_channels, RES, RES), labels(case)
    assert_parity(ours(img, c), theirs(img, c), "D logits")
    if case.c_dim:
        assert_parity(ours.mapping(None, c), theirs.mapping(None, c), "D label mapping")


# ----------------------------------------------------------------------------
# The clamp cases must exercise the clamp.


@pytest.mark.parametrize("case", [c for c in D_CASES if c.conv_clamp is not None], ids=str)
def test_conv_clamp_fires(case: Case) -> None:
    """Guard against a vacuous clamp comparison: with the clamps removed the official outputs change."""
    _, g = build_g(case)
    _, d = build_d(case)
    z, c, img = randn(BATCH, Z_DIM), labels(case), randn(BATCH, case.img_channels, RES, RES)
    outputs = []
    for net, run in ((g, lambda: g(z, c, noise_mode="const")), (d, lambda: d(img, c))):
        clamped = run()
        with clamps_off(net):
            free = run()
        outputs.append((clamped - free).abs().max() / free.abs().max())
    assert min(outputs) > 1e-2, f"clamp {case.conv_clamp} barely changes the outputs: {outputs}"
