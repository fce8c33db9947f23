"""Training parity with the official StyleGAN2-ADA loop: with official weights copied in by name, the same real
images, latents, labels and random state, augmentation off and both sides in float64, every phase gives the same
losses and gradients, and whole iterations (Adam with the lazy-regularization correction, G_ema with ramp-up,
style mixing, labels, accumulation rounds) give the same G, D and G_ema, to 1e-10.

The official side is the official `training/loss.py` StyleGAN2Loss over the official networks, driven the way
the official `training_loop.py` drives it (its phases, optimizers, gains and EMA, restated here from its facts).
The official code hard-codes float32 in a few places; for these tests its modules see a `torch` whose float32 is
float64 (and float64 is the default dtype), which changes no formula.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
from conftest import OFFICIAL_SG2, require_shared
from test_parity_official import load_official, official, perturb_

from ganforge.plan import make_plan
from ganforge.training.config import TrainConfig, with_preset
from ganforge.training.loop import train_step
from ganforge.training.state import TrainState, build_state, make_phases

OFFICIAL_ROOT = require_shared(OFFICIAL_SG2, "training/loss.py", "the training parity tests drive the official loss")

RES, CBASE, CMAX, Z_DIM, W_DIM, MAP = 16, 512, 8, 8, 12, 2
BATCH = 8  # Two minibatch-std groups of 4.
LR = 0.0025
TOL = 1e-10
PHASES = ("Gmain", "Greg", "Dmain", "Dreg")
G_REG_INTERVAL, D_REG_INTERVAL = 4, 16  # Official: always set, whether or not the regularizer is on.


@dataclass(frozen=True)
class Setting:
    name: str
    c_dim: int = 0
    style_mixing: float = 0.0
    pl_weight: float = 2.0
    gamma: float = 1.0
    rounds: int = 1
    ema_kimg: float = 0.01
    ema_rampup: float | None = None


SETTINGS = [
    Setting("default"),
    Setting("labels", c_dim=3),
    Setting("style_mixing", style_mixing=0.9),
    Setting("pl_off", pl_weight=0.0),
    Setting("gamma_off", gamma=0.0),
    Setting("two_rounds", rounds=2),
    Setting("ema_rampup", ema_rampup=0.05, ema_kimg=10.0),
]


# ----------------------------------------------------------------------------
# The official side, in float64.


class _Float64Torch(types.ModuleType):
    """torch, except that `float32` names float64 (the official networks cast to torch.float32 explicitly)."""

    float32 = torch.float64

    def __getattr__(self, name: str):
        return getattr(torch, name)


@functools.cache
def official_loss_modules() -> tuple[types.ModuleType, ...]:
    """(training.loss, torch_utils.training_stats, and every official module that names torch.float32)."""
    networks = official()  # Imports the official packages with their CUDA plugins kept off.
    sys.path.insert(0, str(OFFICIAL_ROOT))
    try:
        from torch_utils import training_stats
        from torch_utils.ops import bias_act, conv2d_resample, upfirdn2d
        from training import loss
    finally:
        sys.path.remove(str(OFFICIAL_ROOT))
    return loss, training_stats, (networks, conv2d_resample, upfirdn2d, bias_act, loss)


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """float64 as the default dtype and as the official modules' float32, restored after."""
    _, _, patched = official_loss_modules()
    saved_dtype, saved = torch.get_default_dtype(), [m.torch for m in patched]
    proxy = _Float64Torch("torch")
    torch.set_default_dtype(torch.float64)
    for module in patched:
        module.torch = proxy
    try:
        yield
    finally:
        torch.set_default_dtype(saved_dtype)
        for module, original in zip(patched, saved):
            module.torch = original


@contextlib.contextmanager
def official_reports() -> Iterator[dict[str, list[torch.Tensor]]]:
    """What the official loss reports through training_stats.report, by name."""
    _, training_stats, _ = official_loss_modules()
    seen: dict[str, list[torch.Tensor]] = {}
    original = training_stats.report

    def report(name, value):
        seen.setdefault(name, []).append(torch.as_tensor(value).detach().clone())
        return value

    training_stats.report = report
    loss_module = official_loss_modules()[0]
    loss_module.training_stats.report = report
    try:
        yield seen
    finally:
        training_stats.report = original


class OfficialLoop:
    """The official training loop's iteration: phases Gmain, Greg, Dmain, Dreg with G_reg_interval 4 and
    D_reg_interval 16, Adam with lr and betas corrected by I / (I + 1), gain = interval for every round,
    nan_to_num on the gradients, then G_ema with β = 0.5^(batch / max(ema_nimg, 1e-8))."""

    def __init__(self, G, D, s: Setting):
        loss_module = official_loss_modules()[0]
        self.G, self.D, self.G_ema, self.s = G, D, copy.deepcopy(G).eval(), s
        self.loss = loss_module.StyleGAN2Loss(
            torch.device("cpu"),
            G_mapping=G.mapping,
            G_synthesis=G.synthesis,
            D=D,
            style_mixing_prob=s.style_mixing,
            r1_gamma=s.gamma,
            pl_weight=s.pl_weight,
        )
        self.phases = []
        for name, module, interval in (("G", G, G_REG_INTERVAL), ("D", D, D_REG_INTERVAL)):
            ratio = interval / (interval + 1)
            opt = torch.optim.Adam(module.parameters(), lr=LR * ratio, betas=[b**ratio for b in (0, 0.99)], eps=1e-8)
            self.phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
        self.cur_nimg = self.batch_idx = 0

    def accumulate(self, phase: str, real, real_c, z, c, gain: float) -> None:
        for part in zip(*(t.chunk(self.s.rounds) for t in (real, real_c, z, c))):
            self.loss.accumulate_gradients(phase, *part, sync=True, gain=gain)

    def step(self, real, real_c, z_by_phase, c_by_phase) -> None:
        for name, module, opt, interval in self.phases:
            if self.batch_idx % interval != 0:
                continue
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            self.accumulate(name, real, real_c, z_by_phase[name], c_by_phase[name], interval)
            module.requires_grad_(False)
            for p in module.parameters():
                if p.grad is not None:
                    torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            opt.step()
        ema_nimg = self.s.ema_kimg * 1000
        if self.s.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.cur_nimg * self.s.ema_rampup)
        beta = 0.5 ** (BATCH / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
        self.cur_nimg += BATCH
        self.batch_idx += 1


# ----------------------------------------------------------------------------
# Both sides from the same weights.


def official_networks(s: Setting):
    networks = official()
    G = networks.Generator(
        z_dim=Z_DIM,
        c_dim=s.c_dim,
        w_dim=W_DIM,
        img_resolution=RES,
        img_channels=3,
        mapping_kwargs=dict(num_layers=MAP),
        synthesis_kwargs=dict(channel_base=CBASE, channel_max=CMAX, num_fp16_res=0, conv_clamp=None),
    )
    D = networks.Discriminator(
        c_dim=s.c_dim,
        img_resolution=RES,
        img_channels=3,
        channel_base=CBASE,
        channel_max=CMAX,
        num_fp16_res=0,
        conv_clamp=None,
        epilogue_kwargs=dict(mbstd_group_size=4),
    )
    return G, D


def build_both(s: Setting, seed: int = 0) -> tuple[TrainState, OfficialLoop]:
    torch.manual_seed(seed)
    G, D = official_networks(s)
    perturb_(G, seed + 1)
    perturb_(D, seed + 2)
    plan = make_plan(
        "tiny",
        RES,
        c_dim=s.c_dim,
        cbase=CBASE,
        cmax=CMAX,
        z_dim=Z_DIM,
        w_dim=W_DIM,
        mapping_layers=MAP,
        g_architecture="skip",
        d_architecture="resnet",
        conv_clamp=None,
        num_fp16_res=0,
        mbstd_group=4,
    )
    cfg = TrainConfig(
        data="parity",
        preset="stylegan2",
        batch=BATCH,
        g_lr=LR,
        d_lr=LR,
        gamma=s.gamma,
        pl_weight=s.pl_weight,
        style_mixing=s.style_mixing,
        ema_kimg=s.ema_kimg,
        ema_rampup=s.ema_rampup or 0.0,
        aug="none",
        precision="fp32",
        r1_interval=D_REG_INTERVAL,
        pl_interval=G_REG_INTERVAL,
    ).resolved()
    cfg = with_preset(cfg, RES, RES, 1)
    state = build_state(plan, cfg, torch.device("cpu"))
    for ours, theirs in ((state.G, G), (state.D, D), (state.G_ema, G)):
        load_official(ours, theirs)
    return state, OfficialLoop(G, D, s)


def inputs(s: Setting, seed: int):
    gen = torch.Generator().manual_seed(1000 + seed)
    real = torch.rand([BATCH, 3, RES, RES], generator=gen, dtype=torch.float64) * 2 - 1
    eye = torch.eye(s.c_dim, dtype=torch.float64)
    real_c = eye[torch.randint(s.c_dim, [BATCH], generator=gen)] if s.c_dim else torch.zeros([BATCH, 0])
    z = {p: torch.randn([BATCH, Z_DIM], generator=gen, dtype=torch.float64) for p in PHASES}
    c = {p: eye[torch.randint(s.c_dim, [BATCH], generator=gen)] if s.c_dim else torch.zeros([BATCH, 0]) for p in PHASES}
    return real, real_c, z, c


def max_diff(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> tuple[float, str]:
    assert ours.keys() == theirs.keys()
    worst = max(ours, key=lambda k: float((ours[k] - theirs[k]).abs().max()) if ours[k].numel() else 0.0)
    return float((ours[worst] - theirs[worst]).abs().max()), worst


def grads(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in net.named_parameters()}


# ----------------------------------------------------------------------------
# Tests.


@pytest.mark.parametrize("s", SETTINGS, ids=lambda s: s.name)
@pytest.mark.parametrize("phase", PHASES)
def test_each_phase_gives_the_official_losses_and_gradients(s, phase):
    with float64():
        state, ref = build_both(s)
        real, real_c, z, c = inputs(s, 0)
        net_ours, net_theirs = (state.G, ref.G) if phase.startswith("G") else (state.D, ref.D)
        reported: dict[str, list[torch.Tensor]] = {}

        def report(name, value):
            reported.setdefault(name, []).append(value.detach().clone())

        gain = G_REG_INTERVAL if phase == "Greg" else D_REG_INTERVAL if phase == "Dreg" else 1
        for net in (net_ours, net_theirs):
            net.requires_grad_(True)
        torch.manual_seed(7)
        from ganforge.training.loop import accumulate_rounds

        accumulate_rounds(state.loss, phase, net_ours, (real, real_c, z[phase], c[phase]), s.rounds, gain, report)
        torch.manual_seed(7)
        with official_reports() as official_seen:
            ref.accumulate(phase, real, real_c, z[phase], c[phase], gain)
        diff, where = max_diff(grads(net_ours), grads(net_theirs))
        assert diff < TOL, f"{phase} gradient of {where} differs by {diff:.3g}"
        for name in ("Loss/G/loss", "Loss/D/loss", "Loss/pl_penalty", "Loss/r1_penalty", "Loss/scores/real"):
            if name in official_seen or name in reported:
                a, b = (
                    torch.cat([t.flatten() for t in reported[name]]),
                    torch.cat([t.flatten() for t in official_seen[name]]),
                )
                assert a.shape == b.shape and float((a - b).abs().max()) < TOL, f"{phase} {name}"
        assert abs(float(state.loss.pl_mean) - float(ref.loss.pl_mean)) < TOL


@pytest.mark.parametrize("s", SETTINGS, ids=lambda s: s.name)
def test_whole_iterations_give_the_official_networks(s):
    with float64():
        state, ref = build_both(s)
        phases = make_phases(state.cfg, True)
        for k in range(16):
            real, real_c, z, c = inputs(s, k)
            torch.manual_seed(100 + k)
            all_z = torch.stack([z[p.name] for p in phases])
            all_c = torch.stack([c[p.name] for p in phases])
            train_step(state, phases, (real, real_c), all_z, all_c, s.rounds)
            torch.manual_seed(100 + k)
            ref.step(real, real_c, z, c)
            if k in (0, 15):
                for name, ours, theirs in (
                    ("G", state.G, ref.G),
                    ("D", state.D, ref.D),
                    ("G_ema", state.G_ema, ref.G_ema),
                ):
                    diff, where = max_diff(ours.state_dict(), theirs.state_dict())
                    assert diff < TOL, f"after {k + 1} iteration(s) {name}.{where} differs by {diff:.3g}"
        assert abs(float(state.loss.pl_mean) - float(ref.loss.pl_mean)) < TOL
        assert (state.cur_nimg, state.batch_idx) == (ref.cur_nimg, ref.batch_idx)
