"""Every fast path against the plain reference formulation (`fast=False` for an op, networks built or set with
`ops="reference"`), on tiny models.

Tolerances (max|fast - ref| / max|ref|): single ops in float64 agree to FP64_TOL = 1e-9 (the same
math in another rounding order); whole float32 networks (the networks compute in float32 whatever the
parameter dtype) to FP32_TOL = 1e-5 for outputs and GRAD_TOL = 1e-4 for first- and second-order
gradients (R1 and path-length penalties): a pre-activation within rounding error of zero can take the
other side of the leaky ReLU's kink, which moves a gradient by a whole term.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from ganforge import build_discriminator, build_generator, make_plan
from ganforge.nn import ops
from ganforge.nn.numerics import Numerics, numerics_of, set_numerics
from ganforge.training.loss import path_lengths, r1_penalty

FP64_TOL = 1e-9
FP32_TOL = 1e-5
GRAD_TOL = 1e-4


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


# ----------------------------------------------------------------------------
# FIR filtering.


@pytest.mark.parametrize(
    "up,down,pad",
    [
        (2, 1, (2, 1, 2, 1)),  # upsample2d
        (2, 1, (1, 1, 1, 1)),  # symmetric: crop inside the transposed conv
        (2, 1, (3, 0, -1, 2)),  # asymmetric, with a crop
        (1, 2, (1, 1, 1, 1)),  # downsample2d
        (1, 2, (2, 2, 2, 2)),  # the 3x3-down conv's filter step
        (1, 1, (1, 1, 1, 1)),  # the up conv's filter step
        (1, 1, (1, 2, 0, -1)),  # asymmetric with a crop
    ],
)
def test_upfirdn2d_fast_matches_reference(up, down, pad):
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    f = torch.rand(4, 4, dtype=torch.float64)  # Asymmetric: a flip error would show.
    fast = ops.upfirdn2d(x, f, up=up, down=down, padding=pad, gain=3.0)
    ref = ops.upfirdn2d(x, f, up=up, down=down, padding=pad, gain=3.0, fast=False)
    assert fast.shape == ref.shape
    assert rel(fast, ref) < FP64_TOL


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (1, 1, (2, 2, 2, 2))])
def test_fir_gradients_of_every_order(up, down, pad):
    """The custom depthwise conv pair is its own adjoint: first and second derivatives are exact."""
    f = ops.setup_filter().double()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    fn = lambda t: ops.upfirdn2d(t, f, up=up, down=down, padding=pad, gain=4.0)  # noqa: E731
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


def test_fir_layout_is_kept():
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    y = ops.downsample2d(x, ops.setup_filter())
    ref = ops.downsample2d(x.contiguous(), ops.setup_filter(), fast=False)
    assert rel(y, ref) < FP32_TOL


# ----------------------------------------------------------------------------
# Activation, demodulation, modulated convolution.


@pytest.mark.parametrize("act", ["lrelu", "linear"])
@pytest.mark.parametrize("gain", [1.0, 2**0.5, 0.5])
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_activate_matches_bias_act_with_gradients(act, gain, clamp):
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64) * 2
    b = torch.randn(4, dtype=torch.float64)
    ref = ops.bias_act(x, b, act=act, gain=gain * ops.ACTIVATIONS[act][1], clamp=clamp)
    fast = ops.activate_(x + b.reshape(1, -1, 1, 1), act, clamp, gain=gain * ops.ACTIVATIONS[act][1])
    assert rel(fast, ref) < FP64_TOL
    fn = lambda t: ops.activate_(t * 1.0, act, clamp, gain)  # noqa: E731  (in place on a fresh tensor)
    xg = (torch.randn(2, 3, 4, 4, dtype=torch.float64) * 2).requires_grad_(True)
    assert gradcheck(fn, (xg,))
    assert gradgradcheck(fn, (xg,))


@pytest.mark.parametrize("noise", [False, True])
def test_scale_bias_act_matches_reference_order(noise):
    y = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    d = torch.rand(3, 4, 1, 1, dtype=torch.float64) + 0.5
    b = torch.randn(1, 4, 1, 1, dtype=torch.float64)
    n = torch.randn(3, 1, 5, 5, dtype=torch.float64) if noise else None
    ref = ops.bias_act(y * d + (n if noise else 0), b.flatten(), act="lrelu", gain=2**0.5 * 0.7, clamp=1.0)
    fast = ops.scale_bias_act_(y, d, b, 2**0.5 * 0.7, "lrelu", 1.0, n)
    assert rel(fast, ref) < FP64_TOL


def test_demodulation_coefs_match_the_explicit_weights():
    w = torch.randn(6, 5, 3, 3, dtype=torch.float64)
    s = torch.randn(4, 5, dtype=torch.float64)
    explicit = ((w[None] * s[:, None, :, None, None]).square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    assert rel(ops.demodulation_coefs(w, s), explicit) < FP64_TOL


@pytest.mark.parametrize("up,k", [(1, 1), (1, 3), (2, 3)])  # ToRGB, conv1, conv0.
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("fused", [True, False, None])
@pytest.mark.parametrize("channels_last", [False, True])
def test_modulated_conv_fast_matches_reference(up, k, demodulate, fused, channels_last):
    x = torch.randn(3, 4, 6, 5, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(6, 4, k, k, dtype=torch.float64)
    s = torch.randn(3, 4, dtype=torch.float64)
    noise = torch.randn(3, 1, 6 * up, 5 * up, dtype=torch.float64)
    f = ops.setup_filter().double()
    kw = dict(up=up, padding=k // 2, resample_filter=f, demodulate=demodulate)
    fast = ops.modulated_conv2d(x, w, s, noise, fused=fused, **kw)
    ref = ops.modulated_conv2d(x.contiguous(), w, s, noise, fused=bool(fused), fast=False, **kw)
    assert fast.shape == ref.shape == (3, 6, 6 * up, 5 * up)
    assert rel(fast, ref) < FP64_TOL


def test_prefer_fused_per_shape():
    x16, x1 = torch.empty(16, 8, 4, 4), torch.empty(1, 8, 4, 4)
    assert ops.prefer_fused(x16, torch.empty(3, 8, 1, 1))  # ToRGB: batched matmul.
    assert not ops.prefer_fused(x16, torch.empty(8, 8, 3, 3))  # Batch: scale activations.
    assert ops.prefer_fused(x1, torch.empty(8, 8, 3, 3))  # One sample: one plain conv.


def test_preferred_layout():
    x = torch.randn(2, 3, 4, 4)
    assert ops.preferred_layout(x).is_contiguous(memory_format=torch.channels_last)
    assert ops.preferred_layout(x, fast=False) is x


# ----------------------------------------------------------------------------
# Whole networks: outputs, gradients, R1 and path-length penalties.


def tiny_plan(arch: str, **kw):
    return make_plan(
        "tiny", 16, g_architecture=arch, d_architecture=arch, conv_clamp=kw.pop("conv_clamp", 0.8), num_fp16_res=0, **kw
    )


def grads(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in net.parameters() if p.grad is not None]


def run_both(fn, nets):
    """fn(nets) with the fast paths, then on deep copies (same weights) switched to the reference ops."""
    fast_nets = nets
    ref_nets = [set_numerics(copy.deepcopy(n), ops="reference") for n in nets]
    fast = fn(*fast_nets)
    ref = fn(*ref_nets)
    return fast, ref, fast_nets, ref_nets


@pytest.mark.parametrize("build", [build_generator, build_discriminator])
def test_built_reference_network_is_the_switched_copy(build):
    """ops="reference" at build time and set_numerics(ops="reference") later: the same network, exactly."""
    torch.manual_seed(0)
    plan = tiny_plan("skip", c_dim=2)
    net = build(plan).eval()
    built = build(plan, ops="reference").eval()
    built.load_state_dict(net.state_dict())
    switched = set_numerics(copy.deepcopy(net), ops="reference")
    assert numerics_of(net) == Numerics() and numerics_of(built) == numerics_of(switched) == Numerics("reference")
    c = torch.eye(2)[[0, 1, 1, 0]]
    x = torch.randn(4, net.z_dim) if build is build_generator else torch.randn(4, 3, 16, 16)
    kw = {"noise_mode": "const"} if build is build_generator else {}
    ref = built(x, c, **kw)
    assert torch.equal(ref, switched(x, c, **kw))
    assert rel(net(x, c, **kw), ref) < FP32_TOL


@pytest.mark.parametrize("arch", ["orig", "skip", "resnet"])
def test_generator_matches_reference(arch, dtype=torch.float32, tol=FP32_TOL, gtol=GRAD_TOL):
    torch.manual_seed(0)
    G = build_generator(tiny_plan(arch, c_dim=2)).to(dtype)
    with torch.no_grad():  # Non-zero noise strengths and biases, so that every term counts.
        for name, p in G.named_parameters():
            if name.endswith(("noise_strength", "bias")):
                p.add_(torch.randn_like(p) * 0.3)
    z, c = torch.randn(4, G.z_dim, dtype=dtype), torch.eye(2, dtype=dtype)[[0, 1, 1, 0]]

    def forward_backward(g):
        out = {}
        with torch.no_grad():
            out["eval"] = g.eval()(z, c, noise_mode="const")
            out["eval_fused"] = g(z, c, noise_mode="const", fused_modconv=True)
        g.train()
        img = g(z, c, noise_mode="const")
        img.square().mean().backward()
        out["train"] = img.detach()
        out["grads"] = grads(g)
        return out

    fast, ref, (gf,), _ = run_both(forward_backward, [G])
    for key in ("eval", "eval_fused", "train"):
        assert fast[key].is_contiguous()
        assert rel(fast[key], ref[key]) < tol, key
    assert len(fast["grads"]) == len(ref["grads"])
    for a, b in zip(fast["grads"], ref["grads"]):
        assert rel(a, b) < gtol


@pytest.mark.parametrize("arch", ["orig", "skip", "resnet"])
def test_discriminator_and_r1_match_reference(arch, dtype=torch.float32, tol=FP32_TOL, gtol=GRAD_TOL):
    torch.manual_seed(0)
    D = build_discriminator(tiny_plan(arch, c_dim=2)).to(dtype).requires_grad_(True)
    img, c = torch.randn(4, 3, 16, 16, dtype=dtype), torch.eye(2, dtype=dtype)[[0, 1, 1, 0]]

    def r1(d):
        x = img.detach().requires_grad_(True)
        logits = d(x, c)
        penalty = r1_penalty(logits, x)  # First backward with create_graph: the double-backward path.
        (logits.mean() + penalty.mean()).backward()
        return {"logits": logits.detach(), "r1": penalty.detach(), "grads": grads(d)}

    fast, ref, _, _ = run_both(r1, [D])
    assert rel(fast["logits"], ref["logits"]) < tol
    assert rel(fast["r1"], ref["r1"]) < gtol
    for a, b in zip(fast["grads"], ref["grads"], strict=True):
        assert rel(a, b) < gtol


def test_path_length_penalty_matches_reference(dtype=torch.float32, gtol=GRAD_TOL):
    torch.manual_seed(0)
    G = build_generator(tiny_plan("skip")).to(dtype).train()
    z = torch.randn(4, G.z_dim, dtype=dtype)

    def pl(g):
        torch.manual_seed(1)  # Same noise draws (images and path-length probe) on both sides.
        ws = g.mapping(z, None)
        img = g.synthesis(ws, noise_mode="random")
        lengths = path_lengths(img, ws)
        lengths.square().mean().backward()
        return {"lengths": lengths.detach(), "grads": grads(g)}

    fast, ref, _, _ = run_both(pl, [G])
    assert rel(fast["lengths"], ref["lengths"]) < gtol
    for a, b in zip(fast["grads"], ref["grads"], strict=True):
        assert rel(a, b) < gtol


def test_discriminator_accepts_any_layout_and_generator_returns_nchw():
    torch.manual_seed(0)
    plan = tiny_plan("resnet")
    G, D = build_generator(plan).eval(), build_discriminator(plan)
    img = G(torch.randn(2, G.z_dim), noise_mode="const")
    assert img.is_contiguous()
    a = D(img)
    b = D(img.contiguous(memory_format=torch.channels_last))
    assert rel(a, b) < FP32_TOL


# ----------------------------------------------------------------------------
# bf16 (CPU mixed precision) and torch.compile against the fp32 eager reference.

BF16_TOL = 5e-2  # bf16 keeps 8 mantissa bits: ~4e-3 per rounding, a few roundings deep through a network.


def test_bf16_fast_paths_match_the_fp32_reference():
    """The top blocks in bf16 with the fast paths (the CPU training default on bf16 CPUs) vs fp32 reference ops."""
    torch.manual_seed(0)
    plan = make_plan("tiny", 16, num_fp16_res=2, conv_clamp=256)
    G, D = build_generator(plan, ops="reference").eval(), build_discriminator(plan, ops="reference")
    G16 = build_generator(plan, cpu_reduced_precision=True).eval()
    D16 = build_discriminator(plan, cpu_reduced_precision=True)
    G16.load_state_dict(G.state_dict())
    D16.load_state_dict(D.state_dict())
    z = torch.randn(4, G.z_dim)
    ref_img = G(z, noise_mode="const")
    ref_logits = D(ref_img)
    img = G16(z, noise_mode="const")
    logits = D16(ref_img)
    x = ref_img.detach().requires_grad_(True)
    penalty = r1_penalty(D16(x), x)
    assert img.dtype == logits.dtype == torch.float32
    assert 0 < rel(img, ref_img) < BF16_TOL  # Non-zero: bf16 really ran.
    assert (logits - ref_logits).abs().max() <= BF16_TOL * ref_logits.abs().max() + 1e-3
    assert torch.isfinite(penalty).all()


@pytest.fixture
def eager_compile_backend(monkeypatch):
    """torch.compile's graph capture and AOTAutograd without a C++ build (fast; inductor needs a compiler)."""
    from ganforge.nn import compile as compile_module

    monkeypatch.setattr(compile_module, "DEFAULT_BACKEND", "aot_eager")


def test_compiled_generator_matches_eager(eager_compile_backend):
    from ganforge.nn.compile import compiled

    torch.manual_seed(0)
    G = build_generator(tiny_plan("skip")).eval()
    z = torch.randn(4, G.z_dim)
    Gc = compiled(G)
    with torch.no_grad():
        out, ref = Gc(z, noise_mode="const"), G(z, noise_mode="const")
    assert Gc.error is None and Gc.z_dim == G.z_dim  # Compiled (no fallback); attributes pass through.
    assert rel(out, ref) < FP32_TOL
    assert set(G.state_dict()) == set(build_generator(tiny_plan("skip")).state_dict())  # Checkpoints unchanged.


def test_compiled_main_phases_match_eager(eager_compile_backend):
    """Gmain and Dmain through torch.compile give the eager gradients; R1 (double backward) stays eager."""
    from ganforge.training.loss import GeneratorStep, StyleGAN2Loss

    torch.manual_seed(0)
    plan = tiny_plan("resnet")
    G, D = build_generator(plan), build_discriminator(plan)
    real, z, c = torch.randn(4, 3, 16, 16), torch.randn(4, G.z_dim), torch.zeros(4, 0)

    def phase_grads(compile_main: bool) -> list[torch.Tensor]:
        g, d = copy.deepcopy(G), copy.deepcopy(D)
        loss = StyleGAN2Loss(GeneratorStep(g, style_mixing=0.0), d, r1_gamma=1.0, compile=compile_main)
        out = []
        for phase, net in (("Gmain", g), ("Dmain", d), ("Dreg", d)):
            net.zero_grad(set_to_none=True)
            net.requires_grad_(True)
            torch.manual_seed(3)  # The same noise draws on both sides.
            loss.accumulate(phase, real, c, z, c, gain=1.0)
            net.requires_grad_(False)
            out += grads(net)
        return out

    compiled_grads, eager_grads = phase_grads(True), phase_grads(False)
    assert len(compiled_grads) == len(eager_grads) > 0
    for a, b in zip(compiled_grads, eager_grads):
        assert rel(a, b) < GRAD_TOL


def test_compile_failure_falls_back_to_eager_with_a_warning():
    from ganforge.nn.compile import compiled

    def broken_backend(gm, example_inputs):
        raise RuntimeError("no C++ compiler found")

    torch._dynamo.reset()
    G = build_generator(tiny_plan("skip")).eval()
    z = torch.randn(2, G.z_dim)
    Gc = compiled(G, backend=broken_backend)
    with pytest.warns(UserWarning, match="failed, running Generator eagerly"):
        out = Gc(z, noise_mode="const")
    assert Gc.error is not None
    assert torch.equal(out, G(z, noise_mode="const"))
    torch._dynamo.reset()
