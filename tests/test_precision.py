"""Reduced precision (bf16 / fp16) for the top resolutions, exercised on the CPU."""

import pytest
import torch

import ganforge.models.generator as gen_module
from ganforge import build_discriminator, build_generator, make_plan


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_reduced_precision_blocks_match_fp32(monkeypatch, dtype):
    monkeypatch.setattr(gen_module, "REDUCED_PRECISION_DEVICES", {"cuda", "cpu"})
    plan = make_plan("tiny", 32, num_fp16_res=2, conv_clamp=256, fp16_dtype=dtype)
    G, D = build_generator(plan).eval(), build_discriminator(plan)
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
