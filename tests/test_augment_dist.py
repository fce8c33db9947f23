"""Two CPU processes (gloo): AdaController all-reduces r_t, so ranks that see different logits keep one p."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys, torch
    import torch.distributed as dist
    from ganforge.augment import build_augment

    rank, init_file, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=2)
    pipe, ctrl = build_augment("ada", interval=2, speed_kimg=1)
    # Rank 0 alone would raise p (r_t = 1), rank 1 alone lower it (r_t = -1); together r_t = 0 < 0.6.
    logits = torch.ones(8) if rank == 0 else -torch.ones(8)
    pipe.p.fill_(0.5)
    for _ in range(2):  # Two iterations of 8 images per rank: 16 per iteration over both.
        ctrl.accumulate(logits)
        ctrl.step(16)
    json.dump(ctrl.stats(), open(out, "w"))
    dist.destroy_process_group()
""")


def test_two_ranks_agree_on_p(tmp_path):
    script = tmp_path / "ada_dist.py"
    script.write_text(SCRIPT)
    init_file = tmp_path / "dist_init"
    outs = [tmp_path / f"rank{r}.json" for r in range(2)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), str(init_file), str(outs[r])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(2)
    ]
    for proc in procs:
        log, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, log[-3000:]
    stats = [json.loads(o.read_text()) for o in outs]
    assert stats[0] == stats[1]
    # 32 images over both ranks and 2 steps, Σ sign = 16 − 16 -> r_t = 0 < 0.6: p −= 32 / (1 · 1000).
    assert stats[0]["Augment/rt"] == 0.0
    assert stats[0]["Augment/p"] == pytest.approx(0.5 - 32 / 1000, abs=1e-6)
