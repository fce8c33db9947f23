"""ganforge.nn's public blocks: the documented shapes, one-sentence shape errors, the math against references
written here, the docstring examples and the toy-generator guide (docs/build-from-blocks.md) run as written."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import ganforge.nn as gnn
from ganforge import build_discriminator, build_generator, make_plan
from ganforge.errors import GanforgeError
from ganforge.inspector import layer_table, trace
from ganforge.nn import (
    AdaIN,
    ConstantInput,
    MappingNetwork,
    MinibatchStd,
    ModulatedConv2d,
    NoConstInput,
    NoiseInjection,
    ShapeError,
    SynthesisLayer,
    ToRGBLayer,
    ops,
)
from ganforge.nn.numerics import set_numerics

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "build-from-blocks.md"
BLOCKS = [name for name in gnn.__all__ if name != "ShapeError"]
r = torch.randn


# ----------------------------------------------------------------------------
# Documented shapes.

SHAPES = {
    "mapping": (lambda: MappingNetwork(8, 0, 16, num_ws=None), lambda: (r(3, 8),), [3, 16]),
    "mapping_ws_labels": (lambda: MappingNetwork(8, 4, 16, num_ws=5), lambda: (r(3, 8), r(3, 4)), [3, 5, 16]),
    "mapping_labels_only": (lambda: MappingNetwork(0, 4, 16, num_ws=None), lambda: (None, r(3, 4)), [3, 16]),
    "modconv": (lambda: ModulatedConv2d(6, 5, w_dim=8), lambda: (r(3, 6, 5, 7), r(3, 8)), [3, 5, 5, 7]),
    "modconv_up": (lambda: ModulatedConv2d(6, 5, w_dim=8, up=2), lambda: (r(3, 6, 4, 4), r(3, 8)), [3, 5, 8, 8]),
    "modconv_1x1": (
        lambda: ModulatedConv2d(6, 5, w_dim=8, kernel_size=1, demodulate=False),
        lambda: (r(3, 6, 4, 4), r(3, 8)),
        [3, 5, 4, 4],
    ),
    "adain": (lambda: AdaIN(w_dim=8, channels=6), lambda: (r(3, 6, 5, 7), r(3, 8)), [3, 6, 5, 7]),
    "noise_any_size": (lambda: NoiseInjection(), lambda: (r(3, 6, 5, 7),), [3, 6, 5, 7]),
    "noise_sized": (lambda: NoiseInjection((5, 7)), lambda: (r(3, 6, 5, 7), "const"), [3, 6, 5, 7]),
    "const": (lambda: ConstantInput(6, size=(4, 8)), lambda: (r(3, 8),), [3, 6, 4, 8]),
    "noconst": (lambda: NoConstInput(w_dim=8, channels=6, size=(4, 8)), lambda: (r(3, 8),), [3, 6, 4, 8]),
    "synthesis_layer": (
        lambda: SynthesisLayer(6, 5, w_dim=8, size=(8, 8), up=2),
        lambda: (r(3, 6, 4, 4), r(3, 8)),
        [3, 5, 8, 8],
    ),
    "synthesis_layer_adain": (
        lambda: SynthesisLayer(6, 5, w_dim=8, size=(4, 4), style="adain"),
        lambda: (r(3, 6, 4, 4), r(3, 8)),
        [3, 5, 4, 4],
    ),
    "torgb": (lambda: ToRGBLayer(6, 3, w_dim=8), lambda: (r(3, 6, 8, 8), r(3, 8)), [3, 3, 8, 8]),
    "mbstd": (lambda: MinibatchStd(group_size=4, num_channels=2), lambda: (r(8, 6, 4, 4),), [8, 8, 4, 4]),
    "mbstd_small_batch": (lambda: MinibatchStd(group_size=4), lambda: (r(3, 6, 4, 4),), [3, 7, 4, 4]),
}


@pytest.mark.parametrize("case", SHAPES)
def test_forward_gives_the_documented_shape(case):
    make, inputs, shape = SHAPES[case]
    torch.manual_seed(0)
    with torch.no_grad():
        y = make()(*inputs())
    assert list(y.shape) == shape


# ----------------------------------------------------------------------------
# Shape errors: one sentence naming the block, the expected shape and the received one.

BATCH = "(one w per image of x)"
ERRORS = {
    "modconv_channels": (
        lambda: ModulatedConv2d(512, 256, w_dim=512)(r(4, 256, 8, 8), r(4, 512)),
        "ModulatedConv2d(in_channels=512, w_dim=512) expects x of shape [N, 512, H, W]; got [4, 256, 8, 8].",
    ),
    "modconv_w_size": (
        lambda: ModulatedConv2d(6, 5, w_dim=8)(r(3, 6, 4, 4), r(3, 7)),
        f"ModulatedConv2d(in_channels=6, w_dim=8) expects w of shape [3, 8] {BATCH}; got [3, 7].",
    ),
    "modconv_w_batch": (
        lambda: ModulatedConv2d(6, 5, w_dim=8)(r(3, 6, 4, 4), r(2, 8)),
        f"ModulatedConv2d(in_channels=6, w_dim=8) expects w of shape [3, 8] {BATCH}; got [2, 8].",
    ),
    "modconv_rank": (
        lambda: ModulatedConv2d(6, 5, w_dim=8)(r(6, 4, 4), r(1, 8)),
        "ModulatedConv2d(in_channels=6, w_dim=8) expects x of shape [N, 6, H, W]; got [6, 4, 4]: "
        "the batch dimension is missing (x.unsqueeze(0) makes a batch of one).",
    ),
    "adain_channels": (
        lambda: AdaIN(w_dim=8, channels=6)(r(3, 5, 4, 4), r(3, 8)),
        "AdaIN(w_dim=8, channels=6) expects x of shape [N, 6, H, W]; got [3, 5, 4, 4].",
    ),
    "adain_w_batch": (
        lambda: AdaIN(w_dim=8, channels=6)(r(3, 6, 4, 4), r(1, 8)),
        f"AdaIN(w_dim=8, channels=6) expects w of shape [3, 8] {BATCH}; got [1, 8].",
    ),
    "mapping_z": (
        lambda: MappingNetwork(8, 4, 16, num_ws=None)(r(3, 7), r(3, 4)),
        "MappingNetwork(z_dim=8, c_dim=4) expects z of shape [N, 8]; got [3, 7].",
    ),
    "mapping_z_rank": (
        lambda: MappingNetwork(8, 0, 16, num_ws=None)(r(3, 8, 1)),
        "MappingNetwork(z_dim=8, c_dim=0) expects z of shape [N, 8]; got [3, 8, 1].",
    ),
    "mapping_c_batch": (
        lambda: MappingNetwork(8, 4, 16, num_ws=None)(r(3, 8), r(2, 4)),
        "MappingNetwork(z_dim=8, c_dim=4) expects c of shape [3, 4] (one label vector per latent of z); got [2, 4].",
    ),
    "noise_size": (
        lambda: NoiseInjection((5, 7))(r(3, 6, 5, 8)),
        "NoiseInjection(size=(5, 7)) expects x of shape [N, C, 5, 7]; got [3, 6, 5, 8].",
    ),
    "noise_rank": (
        lambda: NoiseInjection()(r(3, 5, 7)),
        "NoiseInjection(size=None) expects x of shape [N, C, H, W]; got [3, 5, 7].",
    ),
    "const_w_rank": (
        lambda: ConstantInput(6, size=4)(r(8)),
        "ConstantInput(channels=6, size=(4, 4)) expects w of shape [N, w_dim]; got [8].",
    ),
    "noconst_w_rank": (
        lambda: NoConstInput(w_dim=8, channels=6, size=(4, 4))(r(8)),
        "NoConstInput(w_dim=8, channels=6, size=(4, 4)) expects w of shape [N, 8]; got [8]: "
        "the batch dimension is missing (w.unsqueeze(0) makes a batch of one).",
    ),
    "noconst_w_size": (
        lambda: NoConstInput(w_dim=8, channels=6, size=(4, 4))(r(3, 7)),
        "NoConstInput(w_dim=8, channels=6, size=(4, 4)) expects w of shape [N, 8]; got [3, 7].",
    ),
    "noconst_odd_size": (
        lambda: NoConstInput(w_dim=8, channels=6, size=(3, 4)),
        "NoConstInput(w_dim=8, channels=6, size=(3, 4)) expects an even output size "
        "(it upsamples a half-size map); got (3, 4).",
    ),
    "synthesis_layer_size": (
        lambda: SynthesisLayer(6, 5, w_dim=8, size=(8, 8), up=2)(r(3, 6, 8, 8), r(3, 8)),
        "SynthesisLayer(in_channels=6, w_dim=8, size=(8, 8), up=2) expects x of shape [N, 6, 4, 4]; got [3, 6, 8, 8].",
    ),
    "torgb_w_batch": (
        lambda: ToRGBLayer(6, 3, w_dim=8)(r(3, 6, 8, 8), r(2, 8)),
        f"ToRGBLayer(in_channels=6, w_dim=8) expects w of shape [3, 8] {BATCH}; got [2, 8].",
    ),
    "mbstd_channels": (
        lambda: MinibatchStd(group_size=4, num_channels=2)(r(8, 5, 4, 4)),
        "MinibatchStd(group_size=4, num_channels=2) expects x of shape [N, C, H, W] with C a multiple of 2; "
        "got [8, 5, 4, 4].",
    ),
    "mbstd_batch": (
        lambda: MinibatchStd(group_size=4)(r(6, 5, 4, 4)),
        "MinibatchStd(group_size=4, num_channels=1) expects x of shape [N, C, H, W] with N a multiple of 4 "
        "(or set group_size to a divisor of N); got [6, 5, 4, 4].",
    ),
    "mbstd_rank": (
        lambda: MinibatchStd(group_size=4)(r(8, 16)),
        "MinibatchStd(group_size=4, num_channels=1) expects x of shape [N, C, H, W]; got [8, 16].",
    ),
}


@pytest.mark.parametrize("case", ERRORS)
def test_a_wrong_shape_is_one_sentence_naming_block_expected_and_received(case):
    call, message = ERRORS[case]
    with pytest.raises(ShapeError) as info:
        call()
    assert str(info.value) == message
    assert isinstance(info.value, ValueError) and isinstance(info.value, GanforgeError)
    assert "\n" not in message and message.count(". ") == 0 and message.endswith(".")


def test_every_exported_block_has_a_shape_error_case():
    named = {message.split("(", 1)[0] for _, message in ERRORS.values()}
    assert set(BLOCKS) <= named, f"no shape-error case for {set(BLOCKS) - named}"


def test_the_generator_keeps_its_network_level_z_message():
    G = build_generator(make_plan("tiny", 16))
    with pytest.raises(ValueError, match=r"z has shape \[2, 10\], expected \[\*, 64\]"):
        G(r(2, 10))


def test_shape_checks_compile_into_one_graph_and_still_explain_errors():
    """torch.compile traces the checks without a graph break (fullgraph); a wrong shape still gets the sentence."""
    conv = ModulatedConv2d(6, 5, w_dim=8)
    whole = torch.compile(conv, backend="eager", fullgraph=True, dynamic=True)
    x, w = r(3, 6, 4, 4), r(3, 8)
    with torch.no_grad():
        assert torch.equal(whole(x, w), conv(x, w))
        assert whole(r(5, 6, 4, 4), r(5, 8)).shape == (5, 5, 4, 4)  # Another batch size.
    compiled = torch.compile(conv, backend="eager", dynamic=True)  # As ganforge.nn.compile calls it.
    with pytest.raises(ShapeError, match=r"expects w of shape \[5, 8\] \(one w per image of x\); got \[3, 8\]"):
        compiled(r(5, 6, 4, 4), r(3, 8))


# ----------------------------------------------------------------------------
# Math against references written here.


def affine_styles(affine, w: torch.Tensor) -> torch.Tensor:
    """A(w) with equalized lr, lr multiplier 1: w @ (W / sqrt(w_dim))ᵀ + b."""
    return w @ (affine.weight / math.sqrt(w.shape[1])).t() + affine.bias


def test_adain_matches_instance_norm_then_style():
    torch.manual_seed(0)
    layer = AdaIN(w_dim=8, channels=6).double()
    with torch.no_grad():
        layer.affine.bias.normal_()  # Away from the (1, 0) init, so scale and bias both matter.
    x = r(3, 6, 5, 7, dtype=torch.float64) * 3 + 2
    w = r(3, 8, dtype=torch.float64)
    style = affine_styles(layer.affine, w)
    scale, bias = style[:, :6, None, None], style[:, 6:, None, None]
    expected = scale * F.instance_norm(x, eps=1e-8) + bias  # Biased variance, as StyleGAN1.
    y = layer(x, w)
    assert torch.allclose(y, expected, rtol=0, atol=1e-12)
    # The statistics each channel ends up with: mean = bias, std = |scale|.
    assert torch.allclose(y.mean(dim=[2, 3]), bias[..., 0, 0], atol=1e-12)
    assert torch.allclose(y.std(dim=[2, 3], unbiased=False), scale[..., 0, 0].abs(), atol=1e-6)


def test_fresh_adain_is_instance_norm_for_w_zero():
    layer = AdaIN(w_dim=8, channels=6)
    x = r(2, 6, 4, 4)
    assert torch.allclose(layer(x, torch.zeros(2, 8)), F.instance_norm(x, eps=1e-8), atol=1e-5)


def modulated_conv_loop(x, weight, styles, demodulate: bool, up: int, f: torch.Tensor) -> torch.Tensor:
    """Per image n: W_n = s_n ⊙ W (per input channel), divided by its norm per output channel, then a plain conv."""
    out = []
    for n in range(x.shape[0]):
        wn = weight * styles[n].reshape(1, -1, 1, 1)  # [O, I, k, k]
        if demodulate:
            wn = wn / torch.sqrt(wn.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        pad = weight.shape[-1] // 2
        if up == 1:
            out.append(F.conv2d(x[n : n + 1], wn, padding=pad))
        else:  # Resampling itself is tested in test_ops; here only the weights matter.
            out.append(ops.conv2d_resample(x[n : n + 1], wn, f=f, up=up, padding=pad, fast=False))
    return torch.cat(out)


@pytest.mark.parametrize("numerics", ["fast", "reference"])
@pytest.mark.parametrize("fused", [True, False, None])
@pytest.mark.parametrize("kernel, demodulate, up", [(3, True, 1), (3, False, 1), (1, False, 1), (3, True, 2)])
def test_modulated_conv_matches_a_per_image_loop(numerics, fused, kernel, demodulate, up):
    torch.manual_seed(1)
    conv = set_numerics(ModulatedConv2d(6, 5, w_dim=8, kernel_size=kernel, demodulate=demodulate, up=up), ops=numerics)
    conv = conv.double()
    x, w = r(3, 6, 5, 7, dtype=torch.float64), r(3, 8, dtype=torch.float64)
    styles = affine_styles(conv.affine, w)
    if not demodulate:
        styles = styles / math.sqrt(6 * kernel**2)  # Equalized lr where demodulation does not normalize.
    expected = modulated_conv_loop(x, conv.weight, styles, demodulate, up, conv.resample_filter)
    y = conv(x, w, fused_modconv=fused)
    assert y.shape == expected.shape
    assert torch.allclose(y, expected, rtol=0, atol=1e-10)


def test_demodulated_outputs_have_unit_variance():
    torch.manual_seed(2)
    conv = ModulatedConv2d(64, 32, w_dim=16, kernel_size=1)
    y = conv(r(2, 64, 32, 32), r(2, 16) * 5)  # Large styles: demodulation removes their scale.
    assert abs(float(y.detach().std()) - 1) < 0.05


def test_torgb_is_an_undemodulated_1x1_modulated_conv_plus_bias():
    torch.manual_seed(3)
    torgb, conv = ToRGBLayer(6, 3, w_dim=8), ModulatedConv2d(6, 3, w_dim=8, kernel_size=1, demodulate=False)
    with torch.no_grad():
        conv.weight.copy_(torgb.weight)
        conv.affine.load_state_dict(torgb.affine.state_dict())
        torgb.bias.normal_()
    x, w = r(2, 6, 4, 4), r(2, 8)
    assert torch.allclose(torgb(x, w), conv(x, w) + torgb.bias.reshape(1, -1, 1, 1), atol=1e-6)


def test_noise_injection_adds_strength_times_one_map_per_image():
    torch.manual_seed(4)
    noise = NoiseInjection((5, 7))
    x = r(3, 6, 5, 7)
    assert torch.equal(noise(x), x)  # Strength starts at 0.
    with torch.no_grad():
        noise.noise_strength.fill_(0.5)
    assert torch.allclose(noise(x, "const"), x + 0.5 * noise.noise_const)
    assert torch.equal(noise(x, "none"), x)
    delta = noise(x) - x  # Random: the same map for every channel of an image, another for each image.
    assert torch.allclose(delta, delta[:, :1].expand_as(delta)) and not torch.allclose(delta[0], delta[1])
    with pytest.raises(ValueError, match="noise_mode='blur'"):
        noise(x, "blur")
    with pytest.raises(ValueError, match=r"needs NoiseInjection\(size=...\)"):
        NoiseInjection()(x, "const")


def test_minibatch_std_matches_the_op():
    x = r(8, 6, 4, 4)
    assert torch.equal(MinibatchStd(4, 2)(x), ops.minibatch_std(x, 4, 2))


# ----------------------------------------------------------------------------
# The networks are made of these blocks (one class each, official state-dict names).


def test_the_networks_are_made_of_the_exported_blocks():
    plan = make_plan("tiny", 16)
    G, D = build_generator(plan).eval(), build_discriminator(plan)
    assert type(G.mapping) is MappingNetwork and type(G.synthesis.b8.conv0) is SynthesisLayer
    assert type(G.synthesis.b16.torgb) is ToRGBLayer and type(D.b4.mbstd) is MinibatchStd
    # The constant input loads the generator's const by its official name and gives the same maps.
    const = G.synthesis.b4.const
    block = ConstantInput(const.shape[0], size=tuple(const.shape[1:]))
    block.load_state_dict({"const": const})
    assert torch.equal(block(r(2, plan.w_dim)), const.expand(2, -1, -1, -1))
    # So does the noconst input, with the keys under synthesis.b4.input.
    Gn = build_generator(make_plan("tiny", 16, g_input="noconst")).eval()
    noconst = NoConstInput(plan.w_dim, const.shape[0], size=tuple(const.shape[1:]))
    noconst.load_state_dict(Gn.synthesis.b4.input.state_dict())
    w = r(2, plan.w_dim)
    with torch.no_grad():
        assert torch.equal(noconst(w, noise_mode="const"), Gn.synthesis.b4.input(w, noise_mode="const"))
    Ga = build_generator(make_plan("tiny", 16, style="adain"))
    assert type(Ga.synthesis.b8.conv0.adain) is AdaIN


def test_layer_table_rows_are_the_inspectors_and_depth_folds_them():
    G = build_generator(make_plan("tiny", 16))
    z = r(1, G.z_dim)
    full = layer_table(G, z).splitlines()
    report = trace(G, z)
    assert [line.split()[0] for line in full[1:-1]] == [row.name for row in report.layers]
    folded = layer_table(G, z, depth=2).splitlines()
    names = [line.split()[0] for line in folded[1:-1]]
    assert names == ["mapping.fc0", "mapping.fc1", "synthesis.b4", "synthesis.b8", "synthesis.b16"]
    params = sum(int(line.split()[-1].replace(",", "")) for line in folded[1:-1])
    assert params == report.params and folded[-1] == full[-1] == f"total: {report.params:,} parameters (72.0k)"
    with pytest.raises(ValueError, match="depth=0"):
        layer_table(G, z, depth=0)


# ----------------------------------------------------------------------------
# The examples in the docstrings and the guide run as written.


def python_blocks(text: str) -> list[str]:
    return [inspect.cleandoc(block) for block in re.findall(r"```python\n(.*?)```", text, re.S)]


def run_example(code: str, where: str) -> tuple[dict, str]:
    namespace: dict = {"__name__": where}
    out = io.StringIO()
    torch.manual_seed(0)
    with contextlib.redirect_stdout(out), torch.no_grad():
        exec(compile(code, where, "exec"), namespace)
    return namespace, out.getvalue()


DOCUMENTED = {name: getattr(gnn, name) for name in BLOCKS} | {"ganforge.nn": gnn, "layer_table": layer_table}


@pytest.mark.parametrize("name", DOCUMENTED)
def test_docstring_example_runs_and_its_shape_comments_are_true(name):
    doc = inspect.getdoc(DOCUMENTED[name]) or ""
    blocks = python_blocks(doc)
    assert len(blocks) == 1, f"{name}: one ```python example in the docstring"
    if name in BLOCKS:  # The math and the shapes, stated.
        assert "```text" in doc and "Input" in doc, f"{name}: the docstring states the math and the input shapes"
    namespace, _ = run_example(blocks[0], f"<{name} docstring>")
    claims = re.findall(r"^(\w+) = .*#\s*(\[[\d, ]+\])\s*$", blocks[0], re.M)
    assert claims or name == "layer_table", f"{name}: the example shows its output shape"
    for var, shape in claims:
        assert list(namespace[var].shape) == json.loads(shape), f"{name}: {var} is not {shape}"


def test_guide_runs_and_prints_what_it_shows():
    text = GUIDE.read_text(encoding="utf-8")
    _, printed = run_example("\n\n".join(python_blocks(text)), str(GUIDE))
    shown = re.search(r"```text\n(torch\.Size.*?)```", text, re.S)
    assert shown is not None and printed == shown.group(1)


def test_guide_quotes_the_blocks_own_errors():
    text = GUIDE.read_text(encoding="utf-8")
    for call in (ERRORS["modconv_channels"][0], lambda: ToRGBLayer(128, 3, w_dim=512)(r(4, 128, 8, 8), r(2, 512))):
        with pytest.raises(ShapeError) as info:
            call()
        assert f"\n{info.value}\n" in text
