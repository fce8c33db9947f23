import pytest
import torch

from ganforge import build_discriminator, build_generator, make_plan
from ganforge.config import PRESETS
from ganforge.models import Discriminator, Generator

# G+D parameters at 1024x1024, skip G, resnet D (the capacity table).
TABLE = {"config-f": 59.38e6, "M": 63.97e6, "L": 69.75e6, "XL": 106.11e6, "XXL": 150.24e6, "XXXL": 253.68e6}


def count(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("preset", list(TABLE))
def test_preset_parameter_counts_at_1024(preset):
    plan = make_plan(preset, 1024)
    with torch.device("meta"):
        total = count(Generator(plan)) + count(Discriminator(plan))
    assert abs(total - TABLE[preset]) / TABLE[preset] < 0.01


def test_official_exact_counts():
    with torch.device("meta"):
        plan = make_plan("config-f", 1024)
        assert count(Generator(plan)) == 30_370_060 and count(Discriminator(plan)) == 29_012_513
        plan = make_plan("paper256", 256)
        assert count(Generator(plan)) == 24_767_458 and count(Discriminator(plan)) == 24_001_089
        assert sum(b.numel() for b in Generator(make_plan("config-f", 1024)).buffers()) == 2_797_104


def test_tiny_preset_is_small():
    for res in (32, 64):
        plan = make_plan("tiny", res)
        n = count(Generator(plan)) + count(Discriminator(plan))
        assert 1_000 < n < 500_000


@pytest.mark.parametrize("k", range(0, 9))
def test_output_shapes_every_power_of_two(k):
    res = 4 * 2**k
    plan = make_plan("config-f", res)
    device = "meta" if res > 32 else "cpu"
    with torch.device(device):
        G = Generator(plan if device == "meta" else make_plan("tiny", res)).eval()
        D = Discriminator(G.plan)
        z = torch.randn(2, G.z_dim)
        ws = G.mapping(z, None)
        assert ws.shape == (2, G.num_ws, G.w_dim)
        assert G.mapping.num_ws == G.synthesis.num_ws == 2 * (k + 1)
        img = G.synthesis(ws, noise_mode="const")
        assert img.shape == (2, 3, res, res)
        assert D(img).shape == (2, 1)


@pytest.mark.parametrize(
    "res,shape",
    [
        ("256x512", (512, 256)),
        ("384x256", (256, 384)),
        ("64x32", (32, 64)),
        ("96x64", (64, 96)),
        ("2048x1024", (1024, 2048)),
    ],
)
def test_non_square_shapes(res, shape):
    big = max(shape) > 128
    plan = make_plan("config-f" if big else "tiny", res)
    with torch.device("meta" if big else "cpu"):
        G, D = Generator(plan).eval(), Discriminator(plan)
        img = G(torch.randn(2, plan.z_dim), noise_mode="const")
        assert img.shape == (2, 3, *shape)
        assert D(img).shape == (2, 1)
    assert any("x" in name for name, _ in G.synthesis.named_children())


@pytest.mark.parametrize("g_arch", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("d_arch", ["orig", "skip", "resnet"])
def test_architectures_run_and_backprop(g_arch, d_arch):
    plan = make_plan("tiny", 16, g_architecture=g_arch, d_architecture=d_arch, c_dim=2)
    G, D = Generator(plan), Discriminator(plan)
    c = torch.eye(2)[[0, 1, 1, 0]]
    logits = D(G(torch.randn(4, plan.z_dim), c), c)
    logits.sum().backward()
    for name, p in list(G.named_parameters()) + list(D.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_truncation_psi_zero_returns_w_avg_and_cutoff():
    G = Generator(make_plan("tiny", 16)).eval()
    G.mapping.w_avg.normal_()
    z = torch.randn(3, G.z_dim)
    ws = G.mapping(z, None, truncation_psi=0)
    assert torch.allclose(ws, G.mapping.w_avg.expand_as(ws))
    full = G.mapping(z, None)
    cut = G.mapping(z, None, truncation_psi=0.0, truncation_cutoff=2)
    assert torch.allclose(cut[:, :2], G.mapping.w_avg.expand(3, 2, -1))
    assert torch.allclose(cut[:, 2:], full[:, 2:])


def test_w_avg_tracks_in_training_mode_only():
    G = Generator(make_plan("tiny", 16))
    z = torch.randn(8, G.z_dim)
    G.eval()
    G.mapping(z, None)
    assert G.mapping.w_avg.abs().sum() == 0
    G.train()
    w = G.mapping(z, None)[:, 0]
    assert torch.allclose(G.mapping.w_avg, w.mean(0) * (1 - 0.995), atol=1e-6)


def test_noise_modes():
    G = Generator(make_plan("tiny", 16)).eval()
    for m in G.modules():
        if hasattr(m, "noise_strength"):
            m.noise_strength.data.fill_(0.5)
    z = torch.randn(2, G.z_dim)
    a, b = G(z, noise_mode="const"), G(z, noise_mode="const")
    assert torch.equal(a, b)
    r1, r2 = G(z, noise_mode="random"), G(z, noise_mode="random")
    assert not torch.allclose(r1, r2)
    assert not torch.allclose(G(z, noise_mode="none"), a)
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, noise_mode="loud")


def test_style_mixing_by_ws():
    G = Generator(make_plan("tiny", 16)).eval()
    w1 = G.mapping(torch.randn(1, G.z_dim), None)
    w2 = G.mapping(torch.randn(1, G.z_dim), None)
    mixed = w1.clone()
    mixed[:, 4:] = w2[:, 4:]
    img = G.synthesis(mixed, noise_mode="const")
    assert not torch.allclose(img, G.synthesis(w1, noise_mode="const"))
    assert not torch.allclose(img, G.synthesis(w2, noise_mode="const"))


def test_adain_and_noconst_variants():
    for kw in (dict(style="adain"), dict(g_input="noconst"), dict(style="adain", g_input="noconst")):
        plan = make_plan("tiny", "32x16", **kw)
        G = Generator(plan).eval()
        img = G(torch.randn(2, plan.z_dim), noise_mode="const")
        assert img.shape == (2, 3, 16, 32)
    keys = Generator(make_plan("tiny", 16, g_input="noconst")).state_dict().keys()
    assert "synthesis.b4.input.fc.weight" in keys and "synthesis.b4.const" not in keys


def test_official_state_dict_names():
    keys = set(Generator(make_plan("tiny", 16, c_dim=3)).state_dict())
    for k in [
        "mapping.embed.weight",
        "mapping.fc0.weight",
        "mapping.fc1.bias",
        "mapping.w_avg",
        "synthesis.b4.const",
        "synthesis.b4.resample_filter",
        "synthesis.b4.conv1.affine.weight",
        "synthesis.b4.conv1.noise_const",
        "synthesis.b8.conv0.weight",
        "synthesis.b8.conv0.noise_strength",
        "synthesis.b16.torgb.weight",
    ]:
        assert k in keys, k
    dkeys = set(Discriminator(make_plan("tiny", 16, c_dim=3)).state_dict())
    for k in [
        "b16.fromrgb.weight",
        "b16.conv0.weight",
        "b16.conv1.weight",
        "b16.skip.weight",
        "b8.conv1.bias",
        "b4.conv.weight",
        "b4.fc.weight",
        "b4.out.weight",
        "mapping.embed.weight",
        "mapping.fc7.weight",
    ]:
        assert k in dkeys, k


def test_wrong_inputs_give_clear_errors():
    plan = make_plan("tiny", 32)
    G, D = Generator(plan), Discriminator(plan)
    with pytest.raises(ValueError, match=r"z has shape \[2, 10\], expected \[\*, 64\]"):
        G(torch.randn(2, 10))
    with pytest.raises(ValueError, match="produces 6 ws but the synthesis network at 32x32 needs 8"):
        G.synthesis(torch.randn(2, 6, plan.w_dim))
    with pytest.raises(ValueError, match="images are 64x64.*expects 32x32.*dataset prepare"):
        D(torch.randn(2, 3, 64, 64))
    cond = Generator(make_plan("tiny", 32, c_dim=4))
    with pytest.raises(ValueError, match="conditional"):
        cond(torch.randn(2, plan.z_dim))


def test_fused_and_unfused_generator_agree():
    G = Generator(make_plan("tiny", 16, g_architecture="resnet")).eval()
    ws = G.mapping(torch.randn(3, G.z_dim), None)
    a = G.synthesis(ws, noise_mode="const", fused_modconv=True)
    b = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    assert (a - b).abs().max() / b.abs().max() < 1e-5


def test_build_functions_and_presets_table():
    assert set(TABLE) <= set(PRESETS) and {"paper256", "paper512", "paper1024", "cifar", "tiny"} <= set(PRESETS)
    plan = make_plan("tiny", 16)
    assert isinstance(build_generator(plan), Generator)
    assert isinstance(build_discriminator(plan), Discriminator)
