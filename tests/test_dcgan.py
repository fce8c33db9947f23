"""DCGAN family: shapes at square and non-square sizes, labels, PatchGAN map sizes, errors, gradients, init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ganforge
from ganforge.models.dcgan import DCGANDiscriminator, DCGANGenerator, PatchDiscriminator
from ganforge.plan import make_plan

# (resolution as users write it, (H, W)): '64x32' is W=64, H=32.
SIZES = [(32, (32, 32)), (64, (64, 64)), (128, (128, 128)), ("64x32", (32, 64)), ("96x64", (64, 96)), (4, (4, 4))]


def plan_for(resolution, c_dim: int = 0, img_channels: int = 3):
    return make_plan("tiny", resolution, family="dcgan", c_dim=c_dim, img_channels=img_channels)


def one_hot(labels: list[int], c_dim: int) -> torch.Tensor:
    return torch.eye(c_dim)[labels]


def patch_map_size(side: int, n_layers: int = 3) -> int:
    """pix2pix arithmetic, independent of the module: out = (in + 2p - k) // s + 1 with k=4, p=1."""
    for stride in [2] * n_layers + [1, 1]:
        side = (side + 2 * 1 - 4) // stride + 1
    return side


# ----------------------------------------------------------------------------
# Shapes.


@pytest.mark.parametrize("resolution, hw", SIZES, ids=[str(r) for r, _ in SIZES])
def test_generator_and_discriminator_shapes(resolution, hw):
    torch.manual_seed(0)
    plan = plan_for(resolution)
    G, D = DCGANGenerator(plan), DCGANDiscriminator(plan)
    img = G(torch.randn(2, plan.z_dim))
    assert img.shape == (2, 3, *hw)
    assert G.img_shape == (3, *hw) == D.img_shape
    assert G.img_resolution == max(hw)
    assert D(img).shape == (2, 1)


def test_grayscale():
    plan = plan_for("64x32", img_channels=1)
    img = DCGANGenerator(plan)(torch.randn(2, plan.z_dim))
    assert img.shape == (2, 1, 32, 64)
    assert DCGANDiscriminator(plan)(img).shape == (2, 1)


def test_generator_output_in_range():
    torch.manual_seed(0)
    plan = plan_for(32)
    img = DCGANGenerator(plan)(torch.randn(4, plan.z_dim) * 10)
    assert img.min() >= -1 and img.max() <= 1


def test_module_names_follow_blocks():
    plan = plan_for("64x32")
    g_keys = set(DCGANGenerator(plan).state_dict())
    d_keys = set(DCGANDiscriminator(plan).state_dict())
    assert {"b4x8.conv.weight", "b32x64.conv.weight", "b32x64.norm.weight", "torgb.conv.weight"} <= g_keys
    assert {"b32x64.conv.weight", "b16x32.norm.weight", "b4x8.conv.weight"} <= d_keys
    assert "b32x64.norm.weight" not in d_keys  # No BatchNorm on the layer that reads the image.


# ----------------------------------------------------------------------------
# Labels.


def test_conditional_generator_and_discriminator():
    torch.manual_seed(0)
    plan = plan_for("64x32", c_dim=4)
    G, D = DCGANGenerator(plan).eval(), DCGANDiscriminator(plan).eval()
    z = torch.randn(2, plan.z_dim)
    a, b = one_hot([0, 1], 4), one_hot([2, 3], 4)
    img = G(z, a)
    assert img.shape == (2, 3, 32, 64)
    assert not torch.allclose(img, G(z, b))
    logits = D(img, a)
    assert logits.shape == (2, 1)
    assert not torch.allclose(logits, D(img, b))  # The projection term depends on the label.


def test_label_errors():
    cond, uncond = plan_for(32, c_dim=3), plan_for(32)
    z = torch.randn(2, cond.z_dim)
    with pytest.raises(ValueError, match=r"conditional \(c_dim=3\).*\[N, 3\]"):
        DCGANGenerator(cond)(z)
    with pytest.raises(ValueError, match=r"unconditional \(c_dim=0\).*c_dim=3"):
        DCGANGenerator(uncond)(z, one_hot([0, 1], 3))
    with pytest.raises(ValueError, match="labels c"):
        DCGANDiscriminator(cond)(torch.randn(2, 3, 32, 32), one_hot([0, 1], 4))
    DCGANGenerator(uncond)(z, torch.zeros(2, 0))  # Empty labels, as training loops pass them, are fine.


def test_wrong_latent_size():
    with pytest.raises(ValueError, match=r"latent z has shape \[2, 10\], expected \[\*, 64\]"):
        DCGANGenerator(plan_for(32))(torch.randn(2, 10))


# ----------------------------------------------------------------------------
# Input checks.


def test_discriminator_wrong_size_names_both_sizes():
    D = DCGANDiscriminator(plan_for("64x32"))  # Expects W=64, H=32.
    with pytest.raises(ValueError) as info:
        D(torch.randn(2, 3, 64, 32))  # W=32, H=64.
    msg = str(info.value)
    assert "got images of 32x64 (WxH), expected 64x32" in msg
    assert "`ganforge dataset prepare SRC DEST --resolution 64x32`" in msg
    assert "build the model at --resolution 32x64" in msg


def test_discriminator_wrong_size_not_buildable():
    with pytest.raises(ValueError) as info:
        DCGANDiscriminator(plan_for(64))(torch.randn(2, 3, 50, 50))
    msg = str(info.value)
    assert "50x50" in msg and "64x64" in msg
    assert "build the model" not in msg  # 50 is not base·2^k, so only resizing is offered.


def test_discriminator_wrong_channels():
    with pytest.raises(ValueError, match=r"1 channel\(s\), expected 3.*img_channels=1"):
        DCGANDiscriminator(plan_for(32))(torch.randn(2, 1, 32, 32))


def test_family_is_checked():
    plan = make_plan("tiny", 32)  # stylegan2
    with pytest.raises(ValueError, match="family='dcgan'"):
        DCGANGenerator(plan)


# ----------------------------------------------------------------------------
# PatchGAN.


@pytest.mark.parametrize("hw", [(32, 32), (64, 64), (70, 90), (64, 128), (24, 24)])
def test_patch_map_sizes(hw):
    torch.manual_seed(0)
    P = PatchDiscriminator(plan_for(64))
    out = P(torch.randn(2, 3, *hw))
    assert out.shape == (2, 1, patch_map_size(hw[0]), patch_map_size(hw[1]))


def test_patch_n_layers_and_minimum():
    P2, P3 = PatchDiscriminator(plan_for(64), n_layers=2), PatchDiscriminator(plan_for(64))
    assert (P2.min_size, P3.min_size) == (12, 24)
    assert P2(torch.randn(2, 3, 40, 52)).shape == (2, 1, patch_map_size(40, 2), patch_map_size(52, 2))
    assert patch_map_size(P3.min_size) == 1 and patch_map_size(P3.min_size - 1) < 1


def test_patch_too_small():
    P = PatchDiscriminator(plan_for(64))
    with pytest.raises(ValueError) as info:
        P(torch.randn(2, 3, 23, 64))
    msg = str(info.value)
    assert "at least 24x24" in msg and "got 64x23" in msg and "n_layers=3" in msg


def test_patch_conditional():
    torch.manual_seed(0)
    P = PatchDiscriminator(plan_for(64, c_dim=3)).eval()
    img = torch.randn(2, 3, 70, 90)
    a = P(img, one_hot([0, 1], 3))
    assert a.shape == (2, 1, patch_map_size(70), patch_map_size(90))
    assert not torch.allclose(a, P(img, one_hot([2, 2], 3)))


# ----------------------------------------------------------------------------
# Gradients, init, factory.


def assert_finite_grads(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"


@pytest.mark.parametrize("c_dim", [0, 3])
def test_gradients_flow(c_dim):
    torch.manual_seed(0)
    plan = plan_for("64x32", c_dim=c_dim)
    G, D, P = DCGANGenerator(plan), DCGANDiscriminator(plan), PatchDiscriminator(plan)
    c = one_hot([0, 2], 3) if c_dim else None
    img = G(torch.randn(2, plan.z_dim), c)
    loss = D(img, c).sum() + P(img, c).mean()
    loss.backward()
    for model in (G, D, P):
        assert_finite_grads(model)


def test_dcgan_init():
    G = DCGANGenerator(plan_for(128))
    for module in G.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            if module.weight.numel() >= 1000:
                assert 0.015 < module.weight.std().item() < 0.025
                assert abs(module.weight.mean().item()) < 0.005
            assert module.bias is None or bool((module.bias == 0).all())
        elif isinstance(module, nn.BatchNorm2d):
            assert abs(module.weight.mean().item() - 1) < 0.02
            assert bool((module.bias == 0).all())


def test_build_functions():
    plan = plan_for(32)
    assert type(ganforge.build_generator(plan)) is DCGANGenerator
    assert type(ganforge.build_discriminator(plan)) is DCGANDiscriminator
    assert type(ganforge.build_discriminator(plan, patch=True)) is PatchDiscriminator
