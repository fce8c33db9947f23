"""A run killed with SIGKILL at a random moment and restarted with --resume latest finishes, never losing
more than one snapshot interval."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

from ganforge.data.demo import make_demo_dataset
from ganforge.modelio import checkpoint as ck

SNAP = 0.032


def command(data, out):
    return [
        sys.executable,
        "-m",
        "ganforge",
        "train",
        "--data",
        str(data),
        "--outdir",
        str(out),
        "--run-name",
        "r",
        "--preset",
        "tiny",
        "--kimg",
        "0.192",
        "--batch",
        "8",
        "--snap",
        str(SNAP),
        "--tick",
        "0.016",
        "--workers",
        "0",
        "--no-tensorboard",
        "--device",
        "cpu",
        "--resume",
        "latest",
    ]


def test_sigkill_then_resume_finishes(tmp_path):
    data = make_demo_dataset(tmp_path / "shapes", count=48, resolution=(16, 16))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command(data, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    run = tmp_path / "r"
    deadline = time.time() + 120
    while time.time() < deadline and len(ck.list_checkpoints(run)) < 2:  # past the first real snapshot
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 1.5))
    killed_at = (
        max(json.loads(x)["kimg"] for x in (run / "stats.jsonl").read_text().splitlines())
        if (run / "stats.jsonl").exists()
        else 0.0
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    result = subprocess.run(command(data, tmp_path), capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Resuming from" in result.stdout
    final = ck.latest_checkpoint(run)
    assert ck.read_meta(final)["cur_nimg"] >= 192
    resumed_at = float(re.search(r"Resuming from .* at ([0-9.]+) kimg", result.stdout).group(1))
    assert resumed_at >= killed_at - SNAP - 1e-9  # lost at most one snapshot interval
    kimgs = [json.loads(x)["kimg"] for x in (run / "stats.jsonl").read_text().splitlines()]
    assert max(a - b for a, b in zip(kimgs, kimgs[1:])) <= SNAP + 1e-9  # the counter never went back further
