"""Perceptual path length: ganforge's ppl_* against NVIDIA's official computation on the same networks and draws,
with a stand-in VGG16 (a tiny TorchScript net with vgg16.pt's call contract, scripted here: nothing is downloaded);
the missing-detector errors, batch independence, the count in the names, and the CLI command.

The official code is imported at test time from the `shared/anchors` folder beside the repository (the
StyleGAN2-ADA repository for StyleGAN2, the StyleGAN3 repository for StyleGAN3-T); those tests skip when it is
absent (and fail under CI). Each official network gets seeded random weights with every constant-initialized tensor
moved, and ganforge's network loads the same state dict strictly by name. The official run draws from the global
RNG; the same draws are replayed (same seed, same order) into `ganforge.metrics.ppl.path_distances`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import math
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import OFFICIAL_SG2, OFFICIAL_SG3, require_shared

from ganforge import build_generator, make_plan
from ganforge.metrics.detectors import DetectorError, load_detector
from ganforge.metrics.ppl import PathDraws, filtered_mean, path_distances
from ganforge.metrics.registry import labelled
from ganforge.models.stylegan3 import plan_from_sg3_kwargs

RES, Z_DIM, W_DIM, MAPPING_LAYERS = 32, 16, 24, 2  # z and w differ so a swapped size fails.
CBASE, CMAX = 256, 16  # StyleGAN2: 16 channels up to 16 px, 8 at 32 px.
EPSILON = 1e-4
# Distances are (Δ LPIPS)² / ε² of two images ε apart: float32 round-off in the images is magnified by 1/ε in Δ. With
# the reference ops ganforge's StyleGAN2 synthesis is bit-identical to the official one, so the PPLs agree to 1e-6;
# with the fast ops (the default; images within ~6e-7 of the official ones) they agree to ~5e-4 at ε = 1e-4 (the
# official code itself moves by that much between batch sizes) and ~2e-5 at ε = 1e-2.
TOL = {("reference", 1e-4): 1e-6, ("reference", 1e-2): 1e-6, ("fast", 1e-4): 2e-3, ("fast", 1e-2): 5e-5}
OFFICIAL_TOPS = ("training", "torch_utils", "dnnlib", "metrics", "legacy")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one thread.


# ----------------------------------------------------------------------------------------------------------------
# The stand-in VGG16 detector.


class LpipsStandIn(torch.nn.Module):
    """vgg16.pt's contract: (img NCHW 0..255, resize_images, return_lpips, return_features) => [N, F]; with
    return_lpips, two conv layers' features, each unit-normalized over channels and scaled by 1/sqrt(H·W)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1, stride=2)

    def forward(
        self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        x = img.to(torch.float32) / 127.5 - 1
        if resize_images:
            x = F.interpolate(x, size=[32, 32], mode="area")
        f1 = torch.relu(self.conv1(x))
        f2 = torch.relu(self.conv2(f1))
        if return_lpips:
            parts = []
            for f in (f1, f2):
                unit = f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
                parts.append((unit / math.sqrt(f.shape[2] * f.shape[3])).flatten(1))
            return torch.cat(parts, dim=1)
        return f2.mean(dim=[2, 3])


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pt"
    torch.manual_seed(3)
    with warnings.catch_warnings():  # Newer torch deprecates TorchScript; the real detector is TorchScript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(LpipsStandIn().eval().requires_grad_(False)).save(str(path))
    return path


# ----------------------------------------------------------------------------------------------------------------
# The official code, imported afresh per test and forgotten afterwards (the two repositories share package names).


def forget_official() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in OFFICIAL_TOPS or name.startswith("_imported_module_"):
            del sys.modules[name]


class LegacyNumpy:
    """numpy as the official code calls it: percentile's `interpolation` is numpy 2's `method`."""

    def __getattr__(self, name: str):
        return getattr(np, name)

    @staticmethod
    def percentile(a, q, interpolation: str = "linear", **kwargs):
        return np.percentile(a, q, method=interpolation, **kwargs)


@contextlib.contextmanager
def official_code(root: Path) -> Iterator[types.SimpleNamespace]:
    """The repository at root on sys.path with its CUDA plugins kept off; its modules dropped on exit."""
    forget_official()
    stub = "requests" not in sys.modules and importlib.util.find_spec("requests") is None
    if stub:  # dnnlib.util imports it for downloads only.
        sys.modules["requests"] = types.ModuleType("requests")
    sys.path.insert(0, str(root))
    try:
        ops = [importlib.import_module(f"torch_utils.ops.{name}") for name in ("bias_act", "upfirdn2d")]
        for op in ops:
            op._init = lambda: False  # No plugin build: every call takes the reference path.
        importlib.import_module("torch_utils.ops.conv2d_gradfix").enabled = False
        ppl = importlib.import_module("metrics.perceptual_path_length")
        ppl.np = LegacyNumpy()
        yield types.SimpleNamespace(
            ppl=ppl,
            metric_utils=importlib.import_module("metrics.metric_utils"),
            import_module=importlib.import_module,
        )
    finally:
        sys.path.remove(str(root))
        forget_official()
        if stub:
            sys.modules.pop("requests", None)


@torch.no_grad()
def perturb(net: torch.nn.Module, seed: int = 5) -> torch.nn.Module:
    """Move every constant-initialized tensor (biases, noise strengths, w_avg, the SG3 input affine) off its init."""
    gen = torch.Generator().manual_seed(seed)
    for name, t in net.state_dict().items():
        noise = torch.randn(t.shape, generator=gen)
        if name.endswith("bias"):
            t.add_(0.2 * noise)
        elif name.endswith(("noise_strength", "w_avg")):
            t.copy_(0.5 * noise)
        elif name.endswith("magnitude_ema"):
            t.copy_(noise.abs() + 0.5)
        elif name.endswith("input.affine.weight"):
            t.copy_(0.3 * noise)
    return net.eval().requires_grad_(False)


def sg2_pair(
    code: types.SimpleNamespace, c_dim: int = 0, ops: str = "reference"
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(official StyleGAN2-ADA G, ganforge G with `ops` numerics) with the same weights."""
    torch.manual_seed(0)
    off_G = code.import_module("training.networks").Generator(
        z_dim=Z_DIM,
        c_dim=c_dim,
        w_dim=W_DIM,
        img_resolution=RES,
        img_channels=3,
        mapping_kwargs=dict(num_layers=MAPPING_LAYERS),
        synthesis_kwargs=dict(channel_base=CBASE, channel_max=CMAX, num_fp16_res=0, conv_clamp=None),
    )
    perturb(off_G)
    plan = make_plan(
        "tiny",
        RES,
        c_dim=c_dim,
        cbase=CBASE,
        cmax=CMAX,
        z_dim=Z_DIM,
        w_dim=W_DIM,
        mapping_layers=MAPPING_LAYERS,
        g_architecture="skip",
        conv_clamp=None,
        num_fp16_res=0,
    )
    G = build_generator(plan, ops=ops)
    G.load_state_dict(off_G.state_dict(), strict=True)
    return off_G, G.eval().requires_grad_(False)


def sg3_pair(code: types.SimpleNamespace) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(official StyleGAN3-T G, ganforge G) with the same weights, 16 px."""
    kwargs = dict(
        z_dim=Z_DIM,
        c_dim=0,
        w_dim=W_DIM,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs=dict(num_layers=MAPPING_LAYERS),
        channel_base=512,
        channel_max=16,
        num_layers=4,
        num_fp16_res=0,
        conv_clamp=None,
    )
    torch.manual_seed(0)
    off_G = perturb(code.import_module("training.networks_stylegan3").Generator(**kwargs))
    G = build_generator(plan_from_sg3_kwargs(kwargs))
    G.load_state_dict(off_G.state_dict(), strict=True)
    return off_G, G.eval().requires_grad_(False)


def replayed_draws(off_G: torch.nn.Module, seed: int, n: int, batch: int) -> Iterator[PathDraws]:
    """The official PPLSampler's draws, batch by batch: t, then both ends, then every noise buffer (shared by the
    batch, here given to each sample)."""
    torch.manual_seed(seed)
    for _ in range(math.ceil(n / batch)):
        t = torch.rand([batch])
        z0, z1 = torch.randn([batch * 2, off_G.z_dim]).chunk(2)
        noise = {
            name: torch.randn_like(buf)[None].repeat(batch, 1, 1)
            for name, buf in off_G.named_buffers()
            if name.endswith(".noise_const")
        }
        yield PathDraws(t, z0, z1, noise)


def ours(G, vgg_file, draws, space, sampling, epsilon, c=None) -> torch.Tensor:
    lpips = load_detector("vgg16", vgg_file).features
    return torch.cat([path_distances(G, lpips, d, c, space, sampling, crop=True, epsilon=epsilon) for d in draws])


def image_folder(tmp_path: Path, res: int) -> str:
    """Two PNGs: the official compute_ppl reads labels (none here) from a dataset."""
    from PIL import Image

    for i in range(2):
        Image.fromarray(np.full([res, res, 3], 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    return str(tmp_path)


def official_ppl(code, off_G, vgg_file, dataset_kwargs, space, sampling, n, batch, seed, epsilon) -> float:
    code.metric_utils.get_feature_detector = lambda *args, **kwargs: torch.jit.load(str(vgg_file)).eval()
    opts = code.metric_utils.MetricOptions(G=off_G, dataset_kwargs=dataset_kwargs, device=torch.device("cpu"))
    torch.manual_seed(seed)
    return code.ppl.compute_ppl(
        opts, num_samples=n, epsilon=epsilon, space=space, sampling=sampling, crop=True, batch_size=batch
    )


def assert_close(ours_value: float, official_value: float, tol: float) -> None:
    rel = abs(ours_value - official_value) / abs(official_value)
    print(f"ours {ours_value:.6f} official {official_value:.6f} rel {rel:.2e}")
    assert math.isfinite(official_value) and rel <= tol


# ----------------------------------------------------------------------------------------------------------------
# Parity with the official computation.


SPACES = [("z", "full"), ("w", "full"), ("z", "end"), ("w", "end")]


@pytest.mark.parametrize("ops", ["reference", "fast"])
@pytest.mark.parametrize("space, sampling", SPACES, ids=[f"ppl_{s}{t}" for s, t in SPACES])
def test_stylegan2_ppl_equals_official(space, sampling, ops, vgg_file, tmp_path, monkeypatch):
    """The official compute_ppl (StyleGAN2-ADA, batches of 2) and ours on its replayed draws: the same PPL."""
    root = require_shared(OFFICIAL_SG2, "metrics/perceptual_path_length.py", "PPL parity needs the official code")
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: self)  # Labels are pinned; no GPU here.
    n, batch, seed = 9, 2, 7  # 9 of 10 drawn: the last batch is cut, as official.
    with official_code(root) as code:
        off_G, G = sg2_pair(code, ops=ops)
        folder = dict(class_name="training.dataset.ImageFolderDataset", path=image_folder(tmp_path, RES))
        for epsilon in (EPSILON, 1e-2):
            theirs = official_ppl(code, off_G, vgg_file, folder, space, sampling, n, batch, seed, epsilon)
            dist = ours(G, vgg_file, replayed_draws(off_G, seed, n, batch), space, sampling, epsilon)[:n]
            assert_close(filtered_mean(dist.numpy()), theirs, TOL[ops, epsilon])


@pytest.mark.parametrize("space", ["z", "w"])
def test_conditional_stylegan2_distances_equal_the_official_sampler(space, vgg_file):
    """The official PPLSampler with labels, sample by sample (t, ends and noise replayed)."""
    root = require_shared(OFFICIAL_SG2, "metrics/perceptual_path_length.py", "PPL parity needs the official code")
    with official_code(root) as code:
        off_G, G = sg2_pair(code, c_dim=3)
        vgg = torch.jit.load(str(vgg_file)).eval()
        sampler = code.ppl.PPLSampler(off_G, {}, EPSILON, space, "full", True, vgg).eval()
        c = torch.eye(3)[[0, 2, 1, 2]]
        torch.manual_seed(11)
        with torch.no_grad():
            theirs = sampler(c)
        draws = next(replayed_draws(off_G, 11, 4, 4))
        mine = ours(G, vgg_file, [draws], space, "full", EPSILON, c=c)
    print((mine - theirs).abs().max() / theirs.abs().max())
    torch.testing.assert_close(mine, theirs, rtol=TOL["reference", EPSILON], atol=0)


def test_stylegan3_ppl_equals_official(vgg_file):
    """StyleGAN3-T (no noise buffers): the StyleGAN3 repository's compute_ppl and ours on its draws."""
    root = require_shared(OFFICIAL_SG3, "metrics/perceptual_path_length.py", "PPL parity needs the official code")
    n, batch, seed = 6, 2, 3
    with official_code(root) as code:
        off_G, G = sg3_pair(code)
        theirs = official_ppl(code, off_G, vgg_file, {}, "w", "end", n, batch, seed, 1e-2)
        dist = ours(G, vgg_file, replayed_draws(off_G, seed, n, batch), "w", "end", 1e-2)[:n]
    assert_close(filtered_mean(dist.numpy()), theirs, TOL["fast", 1e-2])


def test_percentile_filter_keeps_the_official_range():
    """1st percentile rounded down, 99th rounded up, the mean of what lies between (official np.percentile)."""
    dist = np.random.RandomState(0).lognormal(size=1000).astype(np.float32)
    lo = np.percentile(dist, 1, method="lower")
    hi = np.percentile(dist, 99, method="higher")
    kept = np.sort(dist)[10:990]  # Rank 9 (0-based) is the 'lower' 1st percentile of 1000 values; 990 the 'higher'.
    assert lo == np.sort(dist)[9] and hi == np.sort(dist)[990]
    assert filtered_mean(dist) == pytest.approx(float(np.sort(dist)[9:991].mean()), rel=1e-6)
    assert filtered_mean(dist) != pytest.approx(float(kept.mean()), rel=1e-9)


# ----------------------------------------------------------------------------------------------------------------
# ganforge's own sampling, errors and the command.


@pytest.fixture(scope="module")
def tiny_sg2() -> torch.nn.Module:
    torch.manual_seed(0)
    G = build_generator(make_plan("tiny", 16)).eval().requires_grad_(False)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
    return G


def test_ppl_does_not_depend_on_the_batch_size(tiny_sg2, vgg_file):
    from ganforge.metrics import compute_metrics

    kw = dict(G=tiny_sg2, detector_paths={"vgg16": str(vgg_file)}, num_gen=6, progress=False)
    whole = compute_metrics(["ppl_wfull"], batch=6, **kw)["ppl_wfull"]
    pieces = compute_metrics(["ppl_wfull"], batch=4, **kw)["ppl_wfull"]
    other_seed = compute_metrics(["ppl_wfull"], batch=6, seed=1, **kw)["ppl_wfull"]
    assert whole > 0 and whole == pytest.approx(pieces, rel=TOL["fast", EPSILON]) and other_seed != whole


def test_ppl_leaves_the_generator_as_it_was(tiny_sg2, vgg_file):
    from ganforge.metrics import compute_metrics

    before = {k: v.clone() for k, v in tiny_sg2.state_dict().items()}
    compute_metrics(["ppl_zend"], G=tiny_sg2, detector_paths={"vgg16": str(vgg_file)}, num_gen=2, progress=False)
    after = tiny_sg2.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].shape == after[k].shape for k in before)


def test_missing_detector_says_where_to_put_it(tiny_sg2, tmp_path, monkeypatch):
    from ganforge.metrics import compute_metrics

    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DetectorError) as e:
        compute_metrics(["ppl_wend"], G=tiny_sg2, num_gen=2, progress=False)
    text = str(e.value)
    assert "vgg16.pt" in text and str(tmp_path / "cache" / "vgg16.pt") in text and "--detector-vgg" in text
    assert "\n" not in text
    with pytest.raises(DetectorError, match="--detector-vgg .*missing.pt does not exist"):
        compute_metrics(
            ["ppl_wend"], G=tiny_sg2, detector_paths={"vgg16": str(tmp_path / "missing.pt")}, num_gen=2, progress=False
        )


def test_ppl_refuses_a_dcgan_generator(vgg_file):
    from ganforge.metrics import compute_metrics
    from ganforge.metrics.features import MetricError
    from ganforge.metrics.registry import check_families

    G = build_generator(make_plan("tiny", 16, family="dcgan")).eval()
    with pytest.raises(MetricError, match="ppl_zfull interpolates latents .* drop ppl_zfull"):
        compute_metrics(["ppl_zfull"], G=G, detector_paths={"vgg16": str(vgg_file)}, num_gen=2, progress=False)
    with pytest.raises(MetricError, match="this generator is dcgan: drop ppl_wend from --metrics"):
        check_families(["fid50k_full", "ppl_wend"], "dcgan")


@pytest.mark.parametrize(
    "num_gen, label", [(None, "ppl_wend"), (50_000, "ppl_wend"), (1000, "ppl1k_wend"), (2500, "ppl2500_wend")]
)
def test_ppl_names_carry_the_real_sample_count(num_gen, label):
    assert labelled("ppl_wend", num_gen) == label


def test_cli_runs_ppl_without_data(tiny_sg2, vgg_file, tmp_path, cli):
    from conftest import save_tiny

    ckpt = save_tiny(tiny_sg2, tmp_path / "tiny.safetensors")
    code, out, err = cli(
        "metrics", "--checkpoint", ckpt, "--metrics", "ppl_wend,ppl_zfull", "--num-gen", 4, "--detector-vgg", vgg_file,
        "--batch", 4, "--json",
    )  # fmt: skip
    assert code in (0, None), err
    printed = json.loads(out.strip().splitlines()[-1])
    assert set(printed) == {"ppl4_wend", "ppl4_zfull"} and all(v > 0 for v in printed.values())
    record = json.loads((tmp_path / "metric-ppl_wend.jsonl").read_text())
    assert record["results"] == {"ppl_wend": printed["ppl4_wend"]} and record["label"] == "ppl4_wend"

    code, _, err = cli("metrics", "--checkpoint", ckpt, "--metrics", "ppl_wend,fid50k_full", "--num-gen", 4)
    assert code == 1 and "fid50k_full compare with the training data: pass --data" in err


def test_training_logs_ppl_at_snapshots(vgg_file, tmp_path):
    from conftest import MemDataset, quiet, tiny_run_config

    from ganforge.training.loop import train
    from ganforge.training.stats import read_stats

    cfg = tiny_run_config(
        tmp_path, kimg=0.016, snap=0.016, tick=0.016, metrics="ppl_wend", metrics_num_gen=2, detector_vgg=str(vgg_file)
    )
    state = train(cfg, MemDataset(), log=quiet)
    record = json.loads((state.run_dir / "metric-ppl_wend.jsonl").read_text().splitlines()[-1])
    assert record["label"] == "ppl2_wend" and record["results"]["ppl_wend"] > 0
    values = [s["Metrics/ppl2_wend"] for s in read_stats(state.run_dir / "stats.jsonl") if "Metrics/ppl2_wend" in s]
    assert values and all(v > 0 for v in values)
