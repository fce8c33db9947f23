import json
import os
import pickle
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from ganforge.modelio import checkpoint as ck


def test_round_trip_and_metadata(tmp_path):
    path = tmp_path / "c.safetensors"
    tensors = {
        "G.w": torch.randn(3, 4),
        "opt.0.step": torch.tensor(5.0),
        "half": torch.ones(3, dtype=torch.bfloat16),
        "empty": torch.zeros(0, 2),
        "flag": torch.tensor([True, False]),
        "idx": torch.arange(3),
    }
    ck.save_checkpoint(path, tensors, {"kimg": 1.5, "plan": {"height": 4}})
    back, meta = ck.load_checkpoint(path)
    assert set(back) == set(tensors) and meta["kimg"] == 1.5 and meta["format"] == ck.FORMAT
    assert all(torch.equal(back[k], v) and back[k].dtype == v.dtype for k, v in tensors.items())
    assert ck.read_meta(path)["plan"] == {"height": 4}
    # Still a plain safetensors file for other tools.
    assert torch.equal(load_file(path)["G.w"], tensors["G.w"])


def test_shared_storage_is_saved(tmp_path):
    base = torch.randn(4)
    ck.save_checkpoint(tmp_path / "c.safetensors", {"a": base, "b": base}, {})
    back, _ = ck.load_checkpoint(tmp_path / "c.safetensors")
    assert torch.equal(back["a"], back["b"])


def test_interrupted_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint-000000000100.safetensors"
    ck.save_checkpoint(path, {"w": torch.ones(2)}, {"kimg": 0.1})
    import ganforge.modelio.checkpoint as module

    def crash(t):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(module, "_raw", crash)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(path, {"w": torch.zeros(2)}, {"kimg": 0.2})
    back, meta = ck.load_checkpoint(path)
    assert torch.equal(back["w"], torch.ones(2)) and meta["kimg"] == 0.1
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def repad(path, pad: int) -> bytes:
    """The same checkpoint with `pad` spaces added to its header (valid safetensors; the checksum still holds)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = raw[8 : 8 + n].rstrip(b" ") + b" " * pad
    return struct.pack("<Q", len(header)) + header + raw[8 + n :]


def test_header_lengths_ending_in_every_byte_value_read_back(tmp_path):
    """The first byte of a safetensors file is the low byte of its header length: 0x80 (a pickle's first byte)
    and 'P' (a zip's) must not make a genuine checkpoint unreadable."""
    src = tmp_path / "src.safetensors"
    w = torch.randn(5, 3)
    ck.save_checkpoint(src, {"G.w": w}, {"kimg": 2})
    seen = set()
    for pad in range(256):
        path = tmp_path / "c.safetensors"
        path.write_bytes(repad(src, pad))
        seen.add(path.read_bytes()[0])
        back, meta = ck.load_checkpoint(path)
        assert torch.equal(back["G.w"], w) and meta["kimg"] == 2
    assert seen == set(range(256))  # 0x80 (a pickle's first byte) and 0x50 ('P', a zip's) included.


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


def raw_file(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "holds only 0 byte"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......", "not JSON"),
        (struct.pack("<Q", 2**63) + b"{}", "header of"),  # No allocation of the claimed length.
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "is an image"),
        (raw_file({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 9]}}, b"\0" * 9), "claims 9 bytes"),
        (raw_file({"w": {"dtype": "X9", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8), "no valid dtype"),
        (raw_file({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}}, b"\0" * 8), "malformed shape"),
        (raw_file({"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 8]}}, b"\0" * 8), "claims 8"),
        (
            raw_file(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                },
                b"\0" * 12,
            ),
            "does not start where",
        ),
        (raw_file({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8), "truncated"),
        (
            raw_file(
                {"__metadata__": {"ganforge": "[[[["}, "w": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}},
                b"\0" * 4,
            ),
            "damaged ganforge metadata",
        ),
        (raw_file({"__metadata__": {"ganforge": json.dumps({"format": ck.FORMAT, "version": 2})}}, b""), "checksum"),
        (raw_file({"__metadata__": {"ganforge": json.dumps({"format": ck.FORMAT, "version": True})}}, b""), "version"),
    ],
)
def test_damaged_headers_are_one_sentence(tmp_path, content, words):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ck.CheckpointError, match=words) as info:
        ck.load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_foreign_safetensors_and_missing_paths(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(1)}, plain)
    with pytest.raises(ck.CheckpointError, match="without ganforge metadata"):
        ck.load_checkpoint(plain)
    with pytest.raises(ck.CheckpointError, match="does not exist"):
        ck.load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(ck.CheckpointError, match="is a folder: pass one of its checkpoints, newest first: .*plain"):
        ck.load_checkpoint(tmp_path)
    newer = tmp_path / "newer.safetensors"
    save_file({"w": torch.ones(1)}, newer, metadata={"ganforge": json.dumps({"format": ck.FORMAT, "version": 99})})
    with pytest.raises(ck.CheckpointError, match="upgrade ganforge"):
        ck.load_checkpoint(newer)


def test_version_1_files_without_checksum_still_load(tmp_path):
    old = tmp_path / "v1.safetensors"
    save_file(
        {"G.w": torch.arange(4.0)},
        old,
        metadata={"ganforge": json.dumps({"format": ck.FORMAT, "version": 1, "kimg": 3})},
    )
    back, meta = ck.load_checkpoint(old)
    assert torch.equal(back["G.w"], torch.arange(4.0)) and meta["kimg"] == 3
    assert ck.open_checkpoint(old).checksum is None


def test_checksum_catches_every_flipped_data_byte_and_truncation(tmp_path):
    path = tmp_path / "c.safetensors"
    ck.save_checkpoint(path, {"G.a": torch.randn(16), "G.b": torch.randn(2, 3).to(torch.bfloat16)}, {"kimg": 1})
    good = path.read_bytes()
    f = ck.open_checkpoint(path)
    for pos in range(f.data_start, len(good)):  # Every data byte: one flipped bit is caught.
        bad = bytearray(good)
        bad[pos] ^= 0x10
        path.write_bytes(bytes(bad))
        with pytest.raises(ck.CheckpointError, match="fails its checksum"):
            ck.load_checkpoint(path)
    for pos in (f.data_start + 60, f.data_start - 20):  # Metadata text: checksum, or the JSON itself.
        bad = bytearray(good)
        bad[pos - 40 if pos < f.data_start else pos] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(ck.CheckpointError):
            ck.load_checkpoint(path)
    for cut in range(0, len(good), 7):  # Truncated anywhere: one sentence, never a crash.
        path.write_bytes(good[:cut])
        with pytest.raises(ck.CheckpointError, match="truncated|not a safetensors|holds only") as info:
            ck.load_checkpoint(path)
        assert str(path) in str(info.value)


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
