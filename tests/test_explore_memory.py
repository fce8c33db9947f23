"""A hostile checkpoint cannot make the explorer allocate: a small file whose plan claims a huge network.

The server runs in a child process with its address space capped (RLIMIT_AS), so a loader that believed the
plan would fail there (or be killed) instead of taking this machine's memory; the child reports its peak RSS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the explorer needs starlette: pip install 'ganforge[explore]'")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux only")

import ganforge  # noqa: E402
from ganforge.modelio.checkpoint import save_checkpoint  # noqa: E402

GiB = 2**30
ADDRESS_SPACE = 4 * GiB  # The child's cap (at least): torch and the app fit; the claimed network (~60 GB) does not.
MAX_RSS = 1.5 * GiB
MAX_SECONDS = 10  # For the requests alone, measured in the child.

CHILD = r"""
import json, resource, sys, time
from starlette.testclient import TestClient
from ganforge.explore.app import create_app
from ganforge.resources import peak_rss_gb

# Capped after the imports and on top of what they mapped: a CUDA build of torch maps GBs of libraries.
mapped = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
cap = max(int(sys.argv[3]), mapped + 3 * 2**30)
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

app = create_app(checkpoint=sys.argv[1], device="cpu", save_dir=sys.argv[2])
t0 = time.perf_counter()
with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
    replies = [c.get("/api/model"), c.get("/api/render", params={"seed": 1}), c.post("/api/save")]
    loaded = c.get("/api/status").json()["models_loaded"]
print(json.dumps(dict(status=[r.status_code for r in replies], errors=[r.json().get("error") for r in replies],
                      loaded=loaded, seconds=time.perf_counter() - t0, cap=cap,
                      maxrss=peak_rss_gb() * 2**30)))
"""


def hostile_checkpoint(path: Path) -> Path:
    """The tiny 16 px G's tensors (~100 KB) under a plan that claims z/w 8192, 64 mapping layers, 16384 channels."""
    plan = ganforge.make_plan("tiny", 16)
    G = ganforge.build_generator(plan)
    claims = dict(
        plan.to_dict(), z_dim=8192, w_dim=8192, mapping_layers=64, cmax=16384, channels=[16384] * len(plan.channels)
    )
    ganforge.Plan.from_dict(claims)  # Every claimed number is within the Plan's bounds: only the shapes can tell.
    save_checkpoint(path, {f"G_ema.{k}": v for k, v in G.state_dict().items()}, {"kind": "export", "plan": claims})
    return path


def test_a_hostile_checkpoint_is_refused_without_allocating(tmp_path):
    ckpt = hostile_checkpoint(tmp_path / "hostile.safetensors")
    assert ckpt.stat().st_size < 1_000_000
    t0 = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(ckpt), str(tmp_path / "saves"), str(ADDRESS_SPACE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    wall = time.perf_counter() - t0
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"hostile checkpoint: {report}, {wall:.1f} s with the child's start")
    assert all(400 <= s < 500 for s in report["status"]), report
    assert all("hostile.safetensors" in e for e in report["errors"]), report
    assert report["loaded"] == [] and report["seconds"] < MAX_SECONDS
    assert report["maxrss"] < MAX_RSS, f"peak RSS {report['maxrss'] / GiB:.2f} GiB"
    assert not (tmp_path / "saves").exists()
