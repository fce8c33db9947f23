"""Two CPU processes under torchrun (gloo): feature extraction splits across ranks and gathers in item order, so the
features (and a metric) equal the single-process ones; only rank 0 writes the jsonl file."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

SCRIPT = textwrap.dedent("""
    import os, sys, json, numpy as np, torch
    from ganforge import build_generator, make_plan
    from ganforge.metrics.features import MetricOptions, fake_features, real_features
    from ganforge.metrics.run import snapshot_metrics

    torch.distributed.init_process_group("gloo")
    torch.manual_seed(0)
    G = build_generator(make_plan("tiny", 16)).eval()
    opts = MetricOptions(G=G, dataset_path={data!r}, detector_paths={{"inception": {det!r}}}, batch=4,
                         progress=False, cache=False)
    rank = torch.distributed.get_rank()
    fake = fake_features(opts, "inception", 13)  # Uneven shares: 6 + 7 items.
    real = real_features(opts, "inception", max_items=63, save=False)
    opts = MetricOptions(dataset_path={data!r}, detector_paths={{"inception": {det!r}}}, num_gen=13, batch=4,
                         progress=False, cache=False)
    results = snapshot_metrics(G, ["fid50k_full"], {out!r}, "snap", opts)
    np.savez(os.path.join({out!r}, f"rank{{rank}}.npz"), fake=fake, real=real, fid=results["fid50k_full"])
    torch.distributed.destroy_process_group()
""")


def test_two_process_gloo_features_equal_one_process(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(os.path.dirname(os.path.abspath(__file__)))
    from test_metrics import FakeInception, script_to

    from ganforge import build_generator, make_plan
    from ganforge.data.demo import make_demo_dataset
    from ganforge.metrics.features import MetricOptions, fake_features, real_features
    from ganforge.metrics.run import snapshot_metrics

    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    det = script_to(FakeInception(), tmp_path / "inception.pt")
    data = str(make_demo_dataset(tmp_path / "d", count=64, resolution=(16, 16)))
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(data=data, det=det, out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        str(script),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    torch.manual_seed(0)
    G = build_generator(make_plan("tiny", 16)).eval()
    opts = MetricOptions(
        G=G, dataset_path=data, detector_paths={"inception": det}, batch=5, progress=False, cache=False
    )
    fake, real = fake_features(opts, "inception", 13), real_features(opts, "inception", max_items=63, save=False)
    single = snapshot_metrics(
        G,
        ["fid50k_full"],
        tmp_path / "single",
        "snap",
        MetricOptions(dataset_path=data, detector_paths={"inception": det}, num_gen=13, progress=False, cache=False),
    )
    for rank in (0, 1):
        got = np.load(tmp_path / f"rank{rank}.npz")
        np.testing.assert_allclose(got["fake"], fake, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["real"], real, rtol=1e-5, atol=1e-6)
        assert float(got["fid"]) == pytest.approx(single["fid50k_full"], rel=1e-4)
    assert len((tmp_path / "metric-fid50k_full.jsonl").read_text().splitlines()) == 1  # Rank 0 only.
