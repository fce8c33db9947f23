"""StyleGAN3 generators (stylegan3-t, stylegan3-r): Plans, sizes, errors, dtypes and gradients, on tiny models.

Parity with the official networks is in test_parity_sg3.py; these tests need nothing beside the repository.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ganforge import PlanError, build_discriminator, build_generator, make_plan
from ganforge.inspector import inspect_plan
from ganforge.models import is_stylegan
from ganforge.models.stylegan3 import StyleGAN3Generator, plan_from_sg3_kwargs, sg3_plan_options
from ganforge.plan import Plan
from ganforge.plan_sg3 import parameter_count

FAMILIES = ("stylegan3-t", "stylegan3-r")
# Parameters of the official networks_stylegan3.Generator at 1024 px with train.py's settings (z = w = 512,
# 2 mapping layers; R: channel_base 65536, channel_max 1024, 1x1 convs), as the official code counts them.
OFFICIAL_PARAMS_1024 = {"stylegan3-t": 22_313_167, "stylegan3-r": 15_093_151}


def tiny(family: str = "stylegan3-t", res: int = 32, **overrides) -> StyleGAN3Generator:
    G = build_generator(make_plan("tiny", res, family=family, **overrides))
    assert isinstance(G, StyleGAN3Generator)
    return G


# ----------------------------------------------------------------------------
# Plans.


@pytest.mark.parametrize("family", FAMILIES)
def test_plan_round_trip(family):
    plan = make_plan("config-f", 256, family=family, c_dim=3, sg3_margin=8, magnitude_ema_beta=0.99)
    assert Plan.from_dict(plan.to_dict()) == plan
    assert plan.num_ws == plan.sg3_layers + 2 == 16
    assert plan.mapping_layers == 2 and plan.w_avg_beta == 0.998  # train.py's StyleGAN3 mapping.


def test_r_doubles_generator_channels_only():
    t, r = make_plan("config-f", 256, family="stylegan3-t"), make_plan("config-f", 256, family="stylegan3-r")
    assert (t.sg3_cbase, t.sg3_cmax, t.sg3_conv_kernel, t.sg3_radial_filters) == (32768, 512, 3, False)
    assert (r.sg3_cbase, r.sg3_cmax, r.sg3_conv_kernel, r.sg3_radial_filters) == (65536, 1024, 1, True)
    assert r.cbase == t.cbase == 32768 and r.channels == t.channels  # The StyleGAN2 discriminator's.


def test_official_layer_names_at_1024():
    names = [s.name for s in make_plan("config-f", 1024, family="stylegan3-t").sg3_geometry]
    assert names[:3] == ["L0_36_512", "L1_36_512", "L2_52_512"]
    assert names[-4:] == ["L11_1044_51", "L12_1044_32", "L13_1024_32", "L14_1024_3"]


def test_old_plans_without_the_new_fields_still_load():
    plan = make_plan("tiny", 32)
    old = {k: v for k, v in plan.to_dict().items() if not k.startswith("sg3_") and k != "magnitude_ema_beta"}
    assert Plan.from_dict(old) == plan


@pytest.mark.parametrize(
    "overrides, words",
    [
        (dict(sg3_layers=0), "sg3_layers"),
        (dict(sg3_margin=-1), "sg3_margin"),
        (dict(sg3_critical=14), "sg3_critical=14 must be smaller than sg3_layers=14"),
        (dict(sg3_first_cutoff=100), "sg3_first_cutoff=100"),
        (dict(sg3_first_stopband=1.5), "sg3_first_stopband=1.5"),
        (dict(sg3_last_stopband_rel=0.5), "sg3_last_stopband_rel"),
        (dict(sg3_radial_filters="yes"), "sg3_radial_filters"),
        (dict(sg3_cbase=2), "raise sg3_cbase"),
        (dict(magnitude_ema_beta=1.5), "magnitude_ema_beta"),
    ],
)
def test_bad_values_name_the_field(overrides, words):
    with pytest.raises(PlanError, match=words.replace("(", r"\(")) as e:
        make_plan("tiny", 32, family="stylegan3-t", **overrides)
    assert str(e.value).count(". ") == 0  # One sentence.


@pytest.mark.parametrize("res", ["64x32", 48, 8, "24"])
def test_sizes_a_stylegan3_cannot_make(res):
    with pytest.raises(PlanError, match="square power-of-two images from 16 px"):
        make_plan("tiny", res, family="stylegan3-r")


def test_damaged_file_fields_are_refused():
    d = make_plan("tiny", 32, family="stylegan3-t").to_dict()
    with pytest.raises(PlanError, match="sg3_radial_filters"):
        Plan.from_dict({**d, "sg3_radial_filters": 1})
    with pytest.raises(PlanError, match="sg3_margin"):
        Plan.from_dict({**d, "sg3_margin": 2.5})
    with pytest.raises(PlanError, match="square power-of-two"):
        Plan.from_dict({**d, "height": 64})


def test_plan_from_official_kwargs():
    kwargs = dict(z_dim=64, c_dim=2, w_dim=32, img_resolution=64, img_channels=3, channel_base=4096)
    kwargs.update(channel_max=64, conv_kernel=1, use_radial_filters=True, mapping_kwargs=dict(num_layers=3))
    plan = plan_from_sg3_kwargs(kwargs, mbstd_group=2)
    assert plan.family == "stylegan3-r" and (plan.sg3_cbase, plan.sg3_cmax) == (4096, 64)
    assert (plan.cbase, plan.cmax) == (2048, 32)  # D: train.py's channels before R's doubling.
    assert plan.mapping_layers == 3 and plan.num_fp16_res == 4 and plan.fp16_dtype == "fp16"
    assert plan.conv_clamp == 256 and plan.mbstd_group == 2
    assert sg3_plan_options({**kwargs, "use_radial_filters": False})["family"] == "stylegan3-t"
    with pytest.raises(PlanError, match="not official"):
        plan_from_sg3_kwargs({**kwargs, "architecture": "skip"})


# ----------------------------------------------------------------------------
# Parameter counts on the meta device.


@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_counts_at_1024_match_official(family):
    with torch.device("meta"):
        G = build_generator(make_plan("config-f", 1024, family=family))
    assert sum(p.numel() for p in G.parameters()) == OFFICIAL_PARAMS_1024[family]
    assert parameter_count(G.plan) == OFFICIAL_PARAMS_1024[family]


@pytest.mark.parametrize("c_dim", [0, 3])
def test_parameter_formula_matches_the_network(c_dim):
    G = tiny("stylegan3-r", 64, c_dim=c_dim, mapping_layers=3)
    assert parameter_count(G.plan) == sum(p.numel() for p in G.parameters())


def test_inspector_counts_stylegan3():
    plan = make_plan("tiny", 64, family="stylegan3-t")
    info = inspect_plan(plan)
    G, D = build_generator(plan), build_discriminator(plan)
    assert info["generator"]["params"] == sum(p.numel() for p in G.parameters())
    assert info["discriminator"]["params"] == sum(p.numel() for p in D.parameters())
    assert info["generator"]["num_ws"] == 16 and info["generator"]["output_shape"] == [3, 64, 64]


# ----------------------------------------------------------------------------
# Networks.


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("res", [16, 64, 128])
def test_other_resolutions(family, res):
    G = tiny(family, res, sg3_layers=4, sg3_critical=1).eval()
    with torch.no_grad():
        img = G(torch.randn(1, G.z_dim), None)
    assert img.shape == (1, 3, res, res) and torch.isfinite(img).all()
    assert G.synthesis.layer_names[-1] == f"L4_{res}_3"


def test_attributes_and_discriminator():
    G = tiny(c_dim=3)
    assert (G.z_dim, G.c_dim, G.w_dim, G.num_ws, G.img_resolution, G.img_channels) == (64, 3, 64, 16, 32, 3)
    assert is_stylegan(G) and G.plan.family == "stylegan3-t"
    D = build_discriminator(G.plan)
    assert D(torch.zeros(2, 3, 32, 32), torch.eye(3)[:2]).shape == (2, 1)


def test_double_precision():
    G = tiny("stylegan3-r", sg3_layers=4, sg3_critical=1).eval()
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        single = G(z, None)
        double = G.double()(z.double(), None)
    first = getattr(G.synthesis, G.synthesis.layer_names[0])
    assert double.dtype == torch.float64 and first.up_filter.dtype == torch.float64
    assert torch.allclose(double.float(), single, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_every_parameter(family):
    G = tiny(family, sg3_layers=4, sg3_critical=1)
    G(torch.randn(2, G.z_dim), None, update_emas=True).square().mean().backward()
    for name, p in G.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_update_emas_only_when_asked():
    G = tiny(sg3_layers=4, sg3_critical=1)
    z = torch.randn(4, G.z_dim)
    before = {k: v.clone() for k, v in G.state_dict().items() if k.endswith(("magnitude_ema", "w_avg"))}
    with torch.no_grad():
        G(z, None)
    assert all(torch.equal(G.state_dict()[k], v) for k, v in before.items())
    with torch.no_grad():
        G(z, None, update_emas=True)
    assert all(not torch.equal(G.state_dict()[k], v) for k, v in before.items())


def test_truncation_transform_and_ws_checks():
    G = tiny(sg3_layers=4, sg3_critical=1).eval()
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        z = torch.randn(2, G.z_dim)
        ws = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
        assert torch.equal(ws[:, 2:], G.mapping(z, None)[:, 2:]) and not torch.equal(ws[:, :2], ws[:, 2:])
        img = G.synthesis(ws, noise_mode="random")
        G.synthesis.input.transform.copy_(torch.tensor([[0.0, -1, 0.1], [1, 0, 0], [0, 0, 1]]))  # 90° and a shift.
        assert not torch.allclose(G.synthesis(ws), img)
        with pytest.raises(ValueError, match="ws"):
            G.synthesis(ws[:, :-1])


def test_reduced_precision_on_cpu_when_asked():
    plan = make_plan("tiny", 32, family="stylegan3-t", num_fp16_res=1, sg3_layers=4, sg3_critical=1)
    G = build_generator(plan, cpu_reduced_precision=True).eval()
    assert [getattr(G.synthesis, n).use_fp16 for n in G.synthesis.layer_names] == [False, False, True, True, True]
    with torch.no_grad():
        img = G(torch.randn(2, G.z_dim), None)
        full = G(torch.randn(2, G.z_dim), None, force_fp32=True)
    assert img.dtype == full.dtype == torch.float32 and torch.isfinite(img).all()


def test_not_a_stylegan3_plan():
    with pytest.raises(ValueError, match="stylegan3"):
        StyleGAN3Generator(make_plan("tiny", 32))
    assert dataclasses.replace(make_plan("tiny", 32, family="stylegan3-r")).discriminator_plan().family == "stylegan2"
