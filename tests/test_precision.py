"""Reduced precision (bf16 / fp16) for the top resolutions, exercised on the CPU; how a network computes is
chosen when it is built (ganforge.nn.numerics), per network."""

import copy

import pytest
import torch

from ganforge import GanforgeError, build_discriminator, build_generator, make_plan
from ganforge.nn.numerics import Numerics, numerics_of, set_numerics


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_reduced_precision_blocks_match_fp32(dtype):
    plan = make_plan("tiny", 32, num_fp16_res=2, conv_clamp=256, fp16_dtype=dtype)
    G = build_generator(plan, cpu_reduced_precision=True).eval()
    D = build_discriminator(plan, cpu_reduced_precision=True)
    z = torch.randn(4, plan.z_dim)
    ref = G(z, noise_mode="const", force_fp32=True)
    low = G(z, noise_mode="const")
    assert low.dtype == torch.float32  # ToRGB accumulates in fp32
    assert not torch.equal(low, ref)  # the reduced path really ran
    assert (low - ref).abs().max() / ref.abs().max() < 5e-2
    logits = D(low.detach().requires_grad_(True))
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    ref_logits = D(low.detach(), force_fp32=True)
    assert (logits - ref_logits).abs().max() <= 5e-2 * ref_logits.abs().max() + 1e-3
    G.train()
    G(z).square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in G.parameters() if p.grad is not None)


def test_cpu_runs_fp32_by_default():
    plan = make_plan("tiny", 32, num_fp16_res=2)
    G = build_generator(plan).eval()
    z = torch.randn(2, plan.z_dim)
    assert torch.equal(G(z, noise_mode="const"), G(z, noise_mode="const", force_fp32=True))


def layer_dtypes(net: torch.nn.Module, run) -> dict[str, torch.dtype]:
    """{block name: dtype of its output activations} while run() calls the network."""
    seen, hooks = {}, []

    def hook(name):
        def record(module, args, out):  # Blocks return (x, img).
            seen.setdefault(name, out[0].dtype)

        return record

    for name, module in net.named_modules():
        if hasattr(module, "use_fp16"):  # Synthesis and discriminator blocks.
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_networks_built_with_different_choices_are_independent():
    """Same weights, same process: the network built with cpu_reduced_precision=True runs its top blocks in bf16,
    the other stays fp32 and equals a fresh fp32 network exactly, whichever ran first."""
    plan = make_plan("tiny", 32, num_fp16_res=2, conv_clamp=256)
    torch.manual_seed(0)
    G_low = build_generator(plan, cpu_reduced_precision=True).eval()
    G_32 = build_generator(plan).eval()
    G_fresh = build_generator(plan).eval()
    G_32.load_state_dict(G_low.state_dict())
    G_fresh.load_state_dict(G_low.state_dict())
    z = torch.randn(3, plan.z_dim)

    low_dtypes = layer_dtypes(G_low, lambda: G_low(z, noise_mode="const"))
    fp32_dtypes = layer_dtypes(G_32, lambda: G_32(z, noise_mode="const"))
    assert low_dtypes == {"synthesis.b4": torch.float32, "synthesis.b8": torch.float32} | {
        "synthesis.b16": torch.bfloat16,
        "synthesis.b32": torch.bfloat16,
    }
    assert set(fp32_dtypes.values()) == {torch.float32} and fp32_dtypes.keys() == low_dtypes.keys()
    low, fp32 = G_low(z, noise_mode="const"), G_32(z, noise_mode="const")
    assert torch.equal(fp32, G_fresh(z, noise_mode="const"))
    assert 0 < (low - fp32).abs().max() < 5e-2 * fp32.abs().max()  # bf16 really ran, and only in G_low.

    D_low = build_discriminator(plan, cpu_reduced_precision=True)
    D_32 = build_discriminator(plan)
    D_32.load_state_dict(D_low.state_dict())
    img = fp32.detach()
    d_low = layer_dtypes(D_low, lambda: D_low(img))
    assert d_low["b32"] == d_low["b16"] == torch.bfloat16 and d_low["b8"] == torch.float32
    assert set(layer_dtypes(D_32, lambda: D_32(img)).values()) == {torch.float32}
    assert torch.equal(D_32(img), D_32(img, force_fp32=True)) and not torch.equal(D_low(img), D_32(img))


def test_deepcopy_and_state_dict_keep_the_choice():
    plan = make_plan("tiny", 16, num_fp16_res=2)
    G = build_generator(plan, cpu_reduced_precision=True, ops="reference")
    G_ema = copy.deepcopy(G)  # As training makes G_ema.
    assert numerics_of(G_ema) == numerics_of(G) == Numerics(ops="reference", cpu_reduced_precision=True)
    assert all(m.numerics == numerics_of(G) for m in G_ema.modules() if hasattr(m, "numerics"))
    assert list(G.state_dict()) == list(build_generator(plan).state_dict())  # Checkpoints unchanged.
    D = build_discriminator(plan, ops="reference")
    assert list(D.state_dict()) == list(build_discriminator(plan).state_dict())
    assert numerics_of(copy.deepcopy(D)) == Numerics(ops="reference")


def test_set_numerics_changes_one_network_only():
    plan = make_plan("tiny", 16, num_fp16_res=2)
    G = build_generator(plan)
    copy_before = copy.deepcopy(G)
    assert set_numerics(G, ops="reference") is G
    assert numerics_of(G) == Numerics(ops="reference")
    set_numerics(G, cpu_reduced_precision=True)  # None keeps the other setting.
    assert numerics_of(G) == Numerics(ops="reference", cpu_reduced_precision=True)
    assert numerics_of(copy_before) == numerics_of(build_generator(plan)) == Numerics()


@pytest.mark.parametrize("build", [build_generator, build_discriminator])
def test_unknown_ops_is_refused_with_one_sentence(build):
    plan = make_plan("tiny", 16)
    with pytest.raises(GanforgeError, match=r"^ops='slow' is not an op implementation: choose 'fast' or 'reference'$"):
        build(plan, ops="slow")
    with pytest.raises(ValueError, match="give True or False"):
        build(plan, cpu_reduced_precision="yes")
    with pytest.raises(ValueError, match="choose 'fast' or 'reference'"):
        set_numerics(build(plan), ops="Fast")
    dcgan = make_plan("tiny", 16, family="dcgan")
    with pytest.raises(ValueError, match="choose 'fast' or 'reference'"):  # Checked for every family.
        build(dcgan, ops="slow")
