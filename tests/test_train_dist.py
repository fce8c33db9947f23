"""Two CPU processes under torchrun (gloo): the global batch splits, weights stay identical, rank 0 writes."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent("""
    import os, sys, torch
    sys.path.insert(0, {tests!r})
    from conftest import MemDataset
    from ganforge.training.config import TrainConfig
    from ganforge.training.loop import train

    cfg = TrainConfig(data="mem", outdir={out!r}, run_name="ddp", preset="tiny", resolution="16", kimg=0.064,
                      batch=8, batch_gpu={batch_gpu}, snap=0.064, tick=0.032, workers=0, tensorboard=False, seed=5,
                      device="cpu", **{extra!r})
    state = train(cfg, MemDataset(), log=lambda *a: None)
    rank = int(os.environ["RANK"])
    params = {{f"G.{{k}}": v for k, v in state.G.named_parameters()}}
    params.update({{f"D.{{k}}": v for k, v in state.D.named_parameters()}})
    # Tracked averages (w_avg, StyleGAN3's magnitude EMAs) are per process, as in the official loops (no buffer
    # broadcast; their DDP consistency check skips *_avg and *_ema); rank 0's are the ones saved.
    ema = state.G_ema.state_dict()
    params.update({{f"G_ema.{{k}}": v for k, v in ema.items() if not k.endswith(("_avg", "_ema"))}})
    torch.save({{k: v.detach() for k, v in params.items()}}, os.path.join({out!r}, f"rank{{rank}}.pt"))
""")


SG3 = dict(family="stylegan3-t", gamma=0.1, cmax=8, map=1)  # The StyleGAN3 recipe, with its magnitude EMAs.


@pytest.mark.parametrize(
    "batch_gpu, port, extra",
    [(None, 29517, {}), (2, 29518, {}), (None, 29519, SG3)],  # 2: two accumulation rounds (no_sync).
    ids=["stylegan2", "stylegan2-rounds", "stylegan3-t"],
)
def test_two_process_gloo_keeps_weights_identical(tmp_path, batch_gpu, port, extra):
    tests = os.path.dirname(os.path.abspath(__file__))
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=tests, out=str(tmp_path), batch_gpu=batch_gpu, extra=extra))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        str(script),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # Weights moved from their initial values, and only rank 0 wrote checkpoints.
    run = tmp_path / "ddp"
    ckpts = sorted(p.name for p in run.glob("checkpoint-*.safetensors"))
    assert ckpts == ["checkpoint-000000000000.safetensors", "checkpoint-000000000064.safetensors"]
