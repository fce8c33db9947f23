"""Resume, pruning and rollback never lose work silently: damaged, truncated, bit-flipped and NaN checkpoints."""

import json

import pytest
import torch
from conftest import MemDataset, tiny_run_config

from ganforge.modelio import check
from ganforge.modelio import checkpoint as ck
from ganforge.training.config import ConfigError
from ganforge.training.loop import train


def cfg_for(tmp_path, **kw):
    return tiny_run_config(tmp_path, **{"kimg": 0.048, "snap": 0.016, "tick": 0.016, "keep": 10, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run with checkpoints at 0, 16, 32 and 48 images; each test works on a copy."""
    root = tmp_path_factory.mktemp("trained")
    train(cfg_for(root), MemDataset(), log=lambda *a: None)
    return root / "run"


@pytest.fixture
def run(trained, tmp_path):
    import shutil

    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def names(paths):
    return [p.name for p in paths]


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def flip_bit(path):
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x04  # A tensor byte: the header still parses, the checksum does not match.
    path.write_bytes(bytes(data))


def fill_nan(path):
    """A well-formed checkpoint (checksum fine) whose G weights are NaN: what a diverged run could have saved."""
    tensors, meta = ck.load_checkpoint(path)
    tensors["G.mapping.fc0.weight"] = torch.full_like(tensors["G.mapping.fc0.weight"], float("nan"))
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    ck.save_checkpoint(path, tensors, meta)


@pytest.mark.parametrize(
    "damage, reason", [(truncate, "truncated"), (flip_bit, "fails its checksum"), (fill_nan, "non-finite")]
)
def test_resume_latest_skips_a_damaged_newest_checkpoint_and_says_so(run, tmp_path, damage, reason):
    newest = ck.list_checkpoints(run)[-1]
    assert newest.name == ck.checkpoint_name(48)
    damage(newest)
    lines = []
    state = train(cfg_for(tmp_path, kimg=0.064), MemDataset(), log=lines.append)
    text = "\n".join(lines)
    assert f"skipped {newest.name}" in text and reason in text
    assert f"Resuming from {run / ck.checkpoint_name(32)} at 0.032 kimg" in text
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    skipped = [e for e in events if e["event"] == "resume_skipped"]
    assert skipped and skipped[0]["file"] == newest.name and reason in skipped[0]["reason"]
    assert [e["file"] for e in events if e["event"] == "resume"] == [ck.checkpoint_name(32)]
    assert state.cur_nimg == 64 and check.problem(run / ck.checkpoint_name(48)) is None  # Rewritten, good.


def test_resume_latest_refuses_when_every_checkpoint_is_damaged(run, tmp_path):
    before = names(ck.list_checkpoints(run))
    for p in ck.list_checkpoints(run):
        truncate(p)
    with pytest.raises(ConfigError) as info:
        train(cfg_for(tmp_path, kimg=0.064), MemDataset(), log=lambda *a: None)
    message = str(info.value)
    assert "no usable checkpoint" in message and "--resume PATH" in message and "--outdir" in message
    assert ck.checkpoint_name(48) in message and "truncated" in message
    assert names(ck.list_checkpoints(run)) == before  # Nothing started over, nothing written.


def test_resume_path_must_verify(run, tmp_path):
    target = run / ck.checkpoint_name(32)
    flip_bit(target)
    with pytest.raises(ConfigError, match="cannot be used: .*fails its checksum"):
        train(cfg_for(tmp_path, kimg=0.064, resume=str(target)), MemDataset(), log=lambda *a: None)


def test_a_checkpoint_at_another_resolution_suggests_transfer_and_writes_nothing(run, tmp_path):
    from ganforge.plan import PlanError

    ckpt = run / ck.checkpoint_name(48)  # 16x16; the data below is 32x32.
    out = f"{ckpt.stem}-32x32.safetensors"
    transfer = f"`ganforge transfer {ckpt} --resolution 32x32 --out {out}`"
    quiet = lambda *a: None  # noqa: E731
    with pytest.raises(ck.CheckpointError) as info:
        train(cfg_for(tmp_path, run_name="bigger", resume=str(ckpt)), MemDataset(res=32), log=quiet)
    assert str(info.value) == (
        f"cannot resume from {ckpt}: the checkpoint was trained at 16x16 with 6 ws; this model is 32x32 with 8 ws: "
        f"copy what fits into a 32x32 model with {transfer} and start a new run from it with --init {out}, or "
        f"resume it on 16x16 data."
    )
    with pytest.raises(PlanError) as info:
        train(cfg_for(tmp_path, run_name="bigger", resume=None, init=str(ckpt)), MemDataset(res=32), log=quiet)
    assert f"copy what fits into a 32x32 model with {transfer} and pass --init {out}, or prepare" in str(info.value)
    assert not (tmp_path / "bigger").exists()  # Refused before the run folder is made.


def test_keep_one_with_a_damaged_newest_file_keeps_the_good_checkpoint(run, tmp_path):
    damaged = run / ck.checkpoint_name(10_000)  # Newer than anything the run will write.
    damaged.write_bytes(b"\x00" * 64)
    state = train(cfg_for(tmp_path, kimg=0.080, keep=1), MemDataset(), log=lambda *a: None)
    left = names(ck.list_checkpoints(run))
    assert left == [ck.checkpoint_name(80), damaged.name]  # The newest good one stays; older good ones pruned.
    assert check.latest_good(run) == run / ck.checkpoint_name(80) and state.cur_nimg == 80


def test_prune_counts_only_good_checkpoints(run):
    good = ck.list_checkpoints(run)  # 0, 16, 32, 48
    fill_nan(good[-1])
    truncate(good[-2])
    deleted = check.prune(run, keep=1)
    assert names(deleted) == names(good[:1])  # Older than the newest good one (16).
    assert names(ck.list_checkpoints(run)) == names(good[1:])
    assert check.prune(run, keep=1) == []  # The newest good checkpoint is never deleted.


def test_rollback_restores_the_newest_finite_checkpoint_and_names_it(run, tmp_path, always_diverge):
    """A NaN-filled newest checkpoint is not 'good': the guard restores the one before and says which."""
    fill_nan(run / ck.checkpoint_name(48))
    path, skipped = check.newest_good(run)
    assert path.name == ck.checkpoint_name(32) and "non-finite" in skipped[0][1]
    from ganforge.training.run import TrainingDiverged

    with pytest.raises(TrainingDiverged) as info:
        train(cfg_for(tmp_path, kimg=0.064, max_failures=1), MemDataset(), log=lambda *a: None)
    last = str(info.value).split("the last good checkpoint is ")[1].split(":")[0]
    assert check.problem(last) is None  # Named truthfully: it reads back, verifies and is finite.
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    restored = [e["restored"] for e in events if e["event"] == "divergence"]
    assert restored and all(r is not None and check.problem(run / r) is None for r in restored)
