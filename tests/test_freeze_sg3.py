"""Freezing StyleGAN3 generators by resolution and by layer name (their names carry no resolution)."""

import pytest

from ganforge import build_generator, make_plan
from ganforge.models.discriminator import Discriminator
from ganforge.training.config import TrainConfig
from ganforge.training.freeze import FreezeError, FreezePlan, param_resolution, parse_specs
from ganforge.training.preflight import check_freeze


@pytest.fixture(scope="module")
def nets():
    plan = make_plan("tiny", 32, family="stylegan3-t", cmax=8, mapping_layers=1)
    G = build_generator(plan)
    D = Discriminator(plan.discriminator_plan())
    return plan, G, D


def test_layer_resolution_is_its_output_sampling_rate(nets):
    plan, G, _ = nets
    for layer in plan.sg3_geometry:
        assert param_resolution(f"synthesis.{layer.name}.weight", plan) == layer.out_rate
    assert param_resolution("synthesis.input.freqs", plan) == plan.sg3_geometry[0].in_rate
    assert param_resolution("synthesis.L3_52_8.weight") == 0  # Without the Plan the name says nothing.


def test_g_resolution_spec_freezes_the_low_layers_only(nets):
    plan, G, D = nets
    frozen = FreezePlan(("G<=16",)).initial(G, D)
    low = {x.name for x in plan.sg3_geometry if x.out_rate <= 16}
    high = {x.name for x in plan.sg3_geometry if x.out_rate > 16}
    assert low and high
    names = frozen["G"]
    assert any(n.startswith("synthesis.input.") for n in names)
    assert {n.split(".")[1] for n in names if n.startswith("synthesis.L")} == low
    assert not any(n.startswith("mapping.") for n in names)
    assert not frozen["D"]


def test_layer_name_spec_and_unfreezing(nets):
    plan, G, D = nets
    last = plan.sg3_geometry[-1].name
    frozen = FreezePlan(tuple(parse_specs(f"G:{last},G:input"))).initial(G, D)["G"]
    assert frozen and all(n.startswith((f"synthesis.{last}.", "synthesis.input.")) for n in frozen)
    plan_all = FreezePlan(("G<=32",), unfreeze_every=1.0, order="top-down")
    before = plan_all.frozen(G, D, 0.0)["G"]
    after = plan_all.frozen(G, D, 1.0)["G"]  # The highest resolution (32) is released first.
    assert after < before
    assert all(param_resolution(n, plan) < 32 for n in after)


def test_a_spec_that_matches_nothing_names_the_layers(nets):
    plan, _, _ = nets
    cfg = TrainConfig(family="stylegan3-t", freeze="G:b64")
    with pytest.raises(FreezeError, match=r"matches no layer.*G layers input, L0_"):
        check_freeze(cfg, plan, parse_specs("G:b64"))
    check_freeze(cfg, plan, parse_specs("G<=16"))  # Matches StyleGAN3 layers now: no error.
