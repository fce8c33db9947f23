import json
import math

import pytest
import torch
from conftest import MemDataset, RandomImages

from ganforge.modelio import checkpoint as ck
from ganforge.training.config import ConfigError, TrainConfig
from ganforge.training.ema import ema_beta, update_ema
from ganforge.training.loop import train
from ganforge.training.loss import StyleGAN2Loss, path_lengths, r1_penalty
from ganforge.training.run import TrainingDiverged, build_loader
from ganforge.training.stats import read_stats


def cfg_for(tmp_path, **kw):
    base = dict(
        data="mem",
        outdir=str(tmp_path),
        run_name="run",
        preset="tiny",
        resolution="16",
        kimg=0.128,
        batch=8,
        snap=0.064,
        tick=0.032,
        workers=0,
        tensorboard=False,
        resume="latest",
        seed=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def quiet(*args):
    pass


# ----------------------------------------------------------------------------
# The math.


def test_r1_penalty_equals_analytic_gradient():
    w = torch.randn(3, 4, 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = (x * w).sum(dim=[1, 2, 3]) + (x**2).sum(dim=[1, 2, 3])  # dD/dx = w + 2x
    penalty = r1_penalty(logits[:, None], x)
    ref = (w + 2 * x.detach()).square().sum(dim=[1, 2, 3])
    assert torch.allclose(penalty, ref, atol=1e-5)


def test_path_length_of_linear_generator():
    # img = A ws (same map per layer): |J^T y| has expectation sqrt(mean over layers of |A^T y|^2).
    torch.manual_seed(0)
    ws = torch.randn(4, 3, 8, requires_grad=True)
    img = ws.sum(dim=1).reshape(4, 2, 2, 2) * 2.0
    lengths = path_lengths(img, ws)
    assert lengths.shape == (4,)
    # Each grad entry = 2·y/sqrt(HW); with 8 entries of y ~ N(0,1): E[len²] = 8·4/4 = 8.
    assert 0.5 < lengths.mean().item() ** 2 / 8 < 2.0


def test_ema_beta_and_update():
    assert math.isclose(ema_beta(32, 10**9, 10, None), 0.5 ** (32 / 10000))
    assert math.isclose(ema_beta(32, 1000, 10, 0.05), 0.5 ** (32 / 50))  # ramp-up: ema_nimg = 1000·0.05
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    a.register_buffer("buf", torch.zeros(2))
    b.register_buffer("buf", torch.ones(2))
    before = a.weight.detach().clone()
    update_ema(a, b, 0.9)
    assert torch.allclose(a.weight, b.weight + 0.9 * (before - b.weight))
    assert torch.equal(a.buf, b.buf)  # Buffers are copied, not averaged.


def test_phases_accumulate_finite_grads(mem_dataset):
    from ganforge import build_discriminator, build_generator, make_plan
    from ganforge.training.loss import GeneratorStep

    plan = make_plan("tiny", 16)
    G, D = build_generator(plan), build_discriminator(plan)
    loss = StyleGAN2Loss(GeneratorStep(G, 0.9), D, r1_gamma=1.0)
    real = mem_dataset.imgs[:4].float() / 127.5 - 1
    c = torch.zeros(4, 0)
    for phase, net in (("Gmain", G), ("Greg", G), ("Dmain", D), ("Dreg", D)):
        net.zero_grad(set_to_none=True)
        loss.accumulate(phase, real, c, torch.randn(4, plan.z_dim), c, gain=1)
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), phase
    assert loss.pl_mean > 0


def test_step_batches_cover_each_epoch_once_and_resume(mem_dataset):
    from types import SimpleNamespace

    from ganforge.data.loader import StepSampler

    s = StepSampler(n=10, batch_size=2, rank=0, world_size=2, seed=0, start_step=0)
    t = StepSampler(n=10, batch_size=2, rank=1, world_size=2, seed=0, start_step=0)
    seen = [i for k in range(5) for i in s.indices(k) + t.indices(k)]  # 5 steps x 4 = 20 = 2 epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    # The order of checkpoints written before StepSampler moved to ganforge.data: epoch e = randperm seeded seed + e.
    perms = [torch.randperm(10, generator=torch.Generator().manual_seed(e)) for e in range(2)]
    assert seen == torch.cat(perms).tolist()
    resumed = StepSampler(n=10, batch_size=2, rank=0, world_size=2, seed=0, start_step=3)
    assert next(iter(resumed)) == s.indices(3)
    # The loop's loader: rank 1 of 2 resumed at step 3 gets that step's share of --batch 8.
    cfg = TrainConfig(data="x", batch=8, seed=7, workers=0)
    loader = build_loader(mem_dataset, cfg, 4, SimpleNamespace(rank=1, world_size=2), start_step=3)
    real, labels = next(loader)
    want = StepSampler(len(mem_dataset), 4, 1, 2, seed=7).indices(3)
    assert torch.equal(real, mem_dataset.imgs[want]) and torch.equal(labels, mem_dataset.labels[want])
    assert loader.next_step == 4


# ----------------------------------------------------------------------------
# Runs.


def test_training_lowers_d_loss_and_stays_finite(tmp_path):
    # G held still (lr 0): D must learn to tell the shapes from G's images.
    state = train(
        cfg_for(tmp_path, kimg=0.256, snap=0.256, tick=0.064, gamma=0.05, g_lr=0.0, d_lr=0.002), MemDataset(), log=quiet
    )
    stats = read_stats(state.run_dir / "stats.jsonl")
    d_losses = [s["Loss/D/loss"] for s in stats]
    assert all(math.isfinite(v) for s in stats for k, v in s.items() if isinstance(v, float))
    assert d_losses[-1] < 0.7 * d_losses[0], d_losses
    assert (state.run_dir / "fakes_latest.png").exists() and (state.run_dir / "reals.png").exists()
    assert json.loads((state.run_dir / "config.json").read_text())["plan"]["height"] == 16


def test_resume_n_plus_n_equals_2n(tmp_path):
    a = train(cfg_for(tmp_path, run_name="straight", kimg=0.128), MemDataset(), log=quiet)
    train(cfg_for(tmp_path, run_name="split", kimg=0.064), MemDataset(), log=quiet)
    b = train(cfg_for(tmp_path, run_name="split", kimg=0.128), MemDataset(), log=quiet)
    ta, ma = ck.load_checkpoint(ck.latest_checkpoint(a.run_dir))
    tb, mb = ck.load_checkpoint(ck.latest_checkpoint(b.run_dir))
    assert ma["cur_nimg"] == mb["cur_nimg"] == 128
    assert set(ta) == set(tb)
    for k in ta:
        assert torch.allclose(ta[k].float(), tb[k].float(), atol=1e-6), k


def test_new_run_refuses_to_overwrite_without_resume(tmp_path):
    train(cfg_for(tmp_path, kimg=0.016), MemDataset(), log=quiet)
    with pytest.raises(ConfigError, match="--resume latest"):
        train(cfg_for(tmp_path, kimg=0.032, resume=None), MemDataset(), log=quiet)


def test_conditional_training_runs(tmp_path):
    state = train(cfg_for(tmp_path, kimg=0.032, cond=True), MemDataset(), log=quiet)
    assert state.plan.c_dim == 3


def test_planted_nan_triggers_rollback(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = StyleGAN2Loss.accumulate

    def poisoned(self, phase, *args, **kwargs):
        calls["n"] += 1
        original(self, phase, *args, **kwargs)
        if calls["n"] == 30:  # Once, mid-run: a D weight turns NaN.
            with torch.no_grad():
                next(self.D.parameters()).fill_(float("nan"))

    monkeypatch.setattr(StyleGAN2Loss, "accumulate", poisoned)
    state = train(cfg_for(tmp_path, kimg=0.128, rollback_lr_mult=0.5), MemDataset(), log=quiet)
    events = [json.loads(x) for x in (state.run_dir / "events.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "divergence" and events[0]["restored"].startswith("checkpoint-")
    assert state.cur_nimg >= 128 and state.failures == 1 and state.lr_scale == 0.5
    for p in list(state.G.parameters()) + list(state.D.parameters()):
        assert torch.isfinite(p).all()
    # Every checkpoint on disk is finite.
    for path in ck.list_checkpoints(state.run_dir):
        tensors, _ = ck.load_checkpoint(path)
        assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


def test_divergence_gives_up_after_max_failures(tmp_path, always_diverge):
    with pytest.raises(TrainingDiverged, match="diverged 3 time"):
        train(cfg_for(tmp_path, kimg=0.128, max_failures=2), MemDataset(), log=quiet)


def test_bad_data_fails_before_training(tmp_path):
    with pytest.raises(Exception, match="resolution 32x32"):
        train(cfg_for(tmp_path, resolution="32"), MemDataset(), log=quiet)  # data is 16x16


@pytest.mark.parametrize("patch_d", [False, True])
def test_dcgan_family_trains_non_square(tmp_path, patch_d):
    state = train(
        cfg_for(tmp_path, family="dcgan", patch_d=patch_d, resolution="auto", kimg=0.064),
        RandomImages(32, 3, 24, 32),
        log=quiet,
    )
    assert state.plan.family == "dcgan" and (state.plan.height, state.plan.width) == (24, 32)
    ckpt = ck.latest_checkpoint(state.run_dir)
    from ganforge.modelio.load import load_generator
    from ganforge.tools.generate import generate

    imgs = generate(load_generator(ckpt), [0, 1])
    assert imgs.shape == (2, 3, 24, 32) and imgs.dtype == torch.uint8


def test_cli_train_with_toml_and_overrides(tmp_path, cli):
    from typer.testing import CliRunner

    from ganforge.cli import app
    from ganforge.data.demo import make_demo_dataset

    data = make_demo_dataset(tmp_path / "shapes", count=24, resolution=(16, 16))
    toml = tmp_path / "run.toml"
    toml.write_text(
        f'data = "{data}"\noutdir = "{tmp_path}"\nkimg = 0.032\nbatch = 8\ngamma = 0.5\n'
        f"snap = 0.032\ntick = 0.016\nworkers = 0\ntensorboard = false\n[model]\ncmax = 16\n"
    )
    runner = CliRunner()
    dry = runner.invoke(app, ["train", "--config", str(toml), "--gamma", "0.25", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    resolved = json.loads(dry.stdout)
    assert resolved["gamma"] == 0.25 and resolved["batch"] == 8 and resolved["cmax"] == 16  # [model] table: older form
    result = runner.invoke(app, ["train", "--config", str(toml), "--run-name", "cli"])
    assert result.exit_code == 0, result.output
    meta = ck.read_meta(ck.latest_checkpoint(tmp_path / "cli"))
    assert meta["plan"]["channels"] == [16, 16, 16] and meta["config"]["gamma"] == 0.5
    code, _, err = cli("train", "--config", toml, "--run-name", "bad", "--resolution", "100")
    assert code == 1 and err.startswith("error: ") and "nearest valid sizes" in err and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()  # A refused start leaves no run folder.
    unknown = tmp_path / "bad.toml"
    unknown.write_text("lerning_rate = 1\n")
    code, _, err = cli("train", "--config", unknown)
    assert code == 2 and "lerning_rate" in err


@pytest.mark.parametrize(
    "native, precision, expect",
    [(True, "auto", True), (False, "auto", False), (True, "fp32", False), (False, "bf16", True)],
)
def test_cpu_training_precision(tmp_path, monkeypatch, native, precision, expect):
    """auto = bf16 top resolutions on CPUs with bf16 instructions, fp32 elsewhere; the choice belongs to the run's
    networks (G, G_ema, D), and nothing outside them changes."""
    import ganforge.models.generator as gen_module
    import ganforge.training.state as state_module
    from ganforge import build_generator, make_plan
    from ganforge.nn.numerics import Numerics, numerics_of

    monkeypatch.setattr(state_module, "cpu_has_native_bf16", lambda: native)
    bystander = build_generator(make_plan("tiny", 16, num_fp16_res=2))  # Built outside the run: keeps its choice.
    seen, top_dtypes, lines = [], set(), []
    real_synthesis_forward = gen_module.SynthesisNetwork.forward

    def spy(self, ws, **kw):
        if ws.device.type == "meta":  # The memory check's shape trace (fp32 by design), not the run's networks.
            return real_synthesis_forward(self, ws, **kw)
        seen.append(self.numerics.cpu_reduced_precision)
        top = getattr(self, self.block_names[-1])
        hook = top.conv1.register_forward_hook(lambda m, args, out: top_dtypes.add(out.dtype))
        try:
            return real_synthesis_forward(self, ws, **kw)
        finally:
            hook.remove()

    monkeypatch.setattr(gen_module.SynthesisNetwork, "forward", spy)
    state = train(
        cfg_for(tmp_path, kimg=0.016, snap=0.016, precision=precision, fp16_res=2), MemDataset(), log=lines.append
    )
    assert seen and all(s == expect for s in seen)
    assert top_dtypes == {torch.bfloat16 if expect else torch.float32}
    for net in (state.G, state.G_ema, state.D):
        assert numerics_of(net) == Numerics(cpu_reduced_precision=expect)
    assert numerics_of(bystander) == numerics_of(build_generator(state.plan)) == Numerics()  # Nothing process-wide.
    text = next(line for line in lines if line.startswith("Batch "))
    assert ("bf16 in the top 2 resolution(s)" in text) == expect, text
    assert weights_finite_all(state)


def weights_finite_all(state) -> bool:
    return all(torch.isfinite(p).all() for net in (state.G, state.D) for p in net.parameters())


# ----------------------------------------------------------------------------
# Gradient accumulation (--batch-gpu).


@pytest.mark.parametrize("phase", ["Gmain", "Dmain", "Dreg"])
def test_accumulation_rounds_sum_as_the_official_loop(phase):
    """Without minibatch-std and style mixing every sample is independent. Each round's loss is a mean over its
    samples with the full gain, and the rounds' gradients add up (official): 4 rounds of 2 = 4 × one pass of 8."""
    from ganforge import build_discriminator, build_generator, make_plan
    from ganforge.training.loop import accumulate_rounds
    from ganforge.training.loss import GeneratorStep

    plan = make_plan("tiny", 16, mbstd_channels=0)
    torch.manual_seed(0)
    G, D = build_generator(plan), build_discriminator(plan)
    loss = StyleGAN2Loss(GeneratorStep(G, style_mixing=0.0), D, r1_gamma=1.0)
    batch = (torch.randn(8, 3, 16, 16), torch.zeros(8, 0), torch.randn(8, plan.z_dim), torch.zeros(8, 0))
    net = G if phase == "Gmain" else D
    grads = []
    for rounds in (1, 4):
        net.zero_grad(set_to_none=True)
        net.requires_grad_(True)
        accumulate_rounds(loss, phase, net, batch, rounds, gain=1.0)
        net.requires_grad_(False)
        # noise_strength's gradient is the random noise itself, drawn per pass: every other gradient must agree.
        grads.append(
            [
                p.grad.clone()
                for name, p in net.named_parameters()
                if p.grad is not None and not name.endswith("noise_strength")
            ]
        )
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        assert torch.allclose(4 * a, b, rtol=1e-4, atol=1e-6)


def test_batch_gpu_trains_with_accumulation(tmp_path):
    lines = []
    state = train(cfg_for(tmp_path, kimg=0.016, snap=0.016, batch=8, batch_gpu=4), MemDataset(), log=lines.append)
    assert any("Batch 8 (8 per process × 1, 2 passes of 4)" in line for line in lines), lines
    assert state.cur_nimg == 16 and weights_finite_all(state)
    waits = [s["Timing/data_wait_pct"] for s in read_stats(state.run_dir / "stats.jsonl")]
    assert waits and all(0 <= w <= 100 for w in waits)  # The loader's share of each tick is measured.


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(batch=8, batch_gpu=3), "--batch-gpu 3 must divide the per-process batch 8 .*use one of 1, 2, 4, 8"),
        (
            dict(batch=12, batch_gpu=6, mbstd_group=4),
            "--batch-gpu 6 is not a multiple of the minibatch-std group 4: use --batch-gpu 4",
        ),
    ],
)
def test_batch_gpu_errors_name_the_fix(tmp_path, kw, message):
    from ganforge.plan import PlanError

    with pytest.raises(PlanError, match=message):
        train(cfg_for(tmp_path, **kw), MemDataset(), log=quiet)
