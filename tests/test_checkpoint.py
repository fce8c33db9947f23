import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from ganforge import checkpoint as ck


def test_round_trip_and_metadata(tmp_path):
    path = tmp_path / "c.safetensors"
    tensors = {"G.w": torch.randn(3, 4), "opt.0.step": torch.tensor(5.0)}
    ck.save_checkpoint(path, tensors, {"kimg": 1.5, "plan": {"height": 4}})
    back, meta = ck.load_checkpoint(path)
    assert torch.equal(back["G.w"], tensors["G.w"]) and meta["kimg"] == 1.5 and meta["format"] == ck.FORMAT
    assert ck.read_meta(path)["plan"] == {"height": 4}


def test_shared_storage_is_saved(tmp_path):
    base = torch.randn(4)
    ck.save_checkpoint(tmp_path / "c.safetensors", {"a": base, "b": base}, {})
    back, _ = ck.load_checkpoint(tmp_path / "c.safetensors")
    assert torch.equal(back["a"], back["b"])


def test_interrupted_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint-000000000100.safetensors"
    ck.save_checkpoint(path, {"w": torch.ones(2)}, {"kimg": 0.1})
    import ganforge.checkpoint as module

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(module, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(path, {"w": torch.zeros(2)}, {"kimg": 0.2})
    back, meta = ck.load_checkpoint(path)
    assert torch.equal(back["w"], torch.ones(2)) and meta["kimg"] == 0.1
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


class Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickle_payloads_are_refused(tmp_path):
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"G": Boom()}))
    with pytest.raises(ck.CheckpointError, match="pickle"):
        ck.load_checkpoint(evil)
    ts = tmp_path / "torch.pt"
    torch.save({"w": torch.ones(1)}, ts)
    with pytest.raises(ck.CheckpointError, match="ganforge convert"):
        ck.load_checkpoint(ts)
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")


def test_foreign_or_corrupt_safetensors_are_refused(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(1)}, plain)
    with pytest.raises(ck.CheckpointError, match="without ganforge metadata"):
        ck.load_checkpoint(plain)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    with pytest.raises(ck.CheckpointError, match="not a readable"):
        ck.load_checkpoint(corrupt)


def test_latest_skips_damaged_newest_and_prune_keeps_last(tmp_path):
    for n in (100, 200, 300):
        ck.save_checkpoint(tmp_path / ck.checkpoint_name(n), {"w": torch.full([1], float(n))}, {"n": n})
    (tmp_path / ck.checkpoint_name(400)).write_bytes(b"\x00" * 3)  # a damaged newest file
    assert ck.latest_checkpoint(tmp_path).name == ck.checkpoint_name(300)
    ck.prune(tmp_path, keep=2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == [ck.checkpoint_name(300), ck.checkpoint_name(400)]


def test_optimizer_state_round_trip():
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([p], lr=0.1, betas=(0.0, 0.99))
    p.grad = torch.randn(3)
    opt.step()
    tensors, meta = ck.optimizer_to_tensors(opt)
    opt2 = torch.optim.Adam([torch.nn.Parameter(p.detach().clone())], lr=0.5)
    ck.optimizer_from_tensors(opt2, tensors, meta)
    assert opt2.param_groups[0]["lr"] == 0.1
    assert torch.equal(opt2.state[opt2.param_groups[0]["params"][0]]["exp_avg"], opt.state[p]["exp_avg"])
