"""`generate --ws`: the shapes a ws file may hold, the images it draws, and its refusals (one sentence each)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from ganforge.tools.generate import ToolError
from ganforge.tools.ws_files import load_ws, shape_ws


def test_shapes(tiny):
    G, _ = tiny
    n, d = G.num_ws, G.w_dim
    w = torch.randn(d)
    assert torch.equal(shape_ws(w, n, d, "x"), w.expand(1, n, d))
    assert shape_ws(torch.randn(n, d), n, d, "x").shape == (1, n, d)
    assert shape_ws(torch.randn(3, n, d), n, d, "x").shape == (3, n, d)
    assert shape_ws(torch.randn(2, 1, d), n, d, "x").shape == (2, n, d)
    for bad in (torch.randn(n + 1, d), torch.randn(2, n, d + 1), torch.randn(0, n, d)):
        with pytest.raises(ToolError, match=rf"takes \[{n}, {d}\] per image"):
            shape_ws(bad, n, d, "--ws f")
    with pytest.raises(ToolError, match="NaN or infinite"):
        shape_ws(torch.full([n, d], float("nan")), n, d, "--ws f")


def test_files(tiny, tmp_path):
    G, _ = tiny
    n, d = G.num_ws, G.w_dim
    ws = torch.randn(2, n, d)
    np.savez(tmp_path / "proj.npz", w=ws[:1].numpy())  # The official projected_w.npz layout.
    save_file({"ws": ws}, str(tmp_path / "ws.safetensors"))
    assert torch.equal(load_ws(tmp_path / "proj.npz", n, d), ws[:1])
    assert torch.equal(load_ws(tmp_path / "ws.safetensors", n, d), ws)
    np.savez(tmp_path / "other.npz", z=np.zeros(3))
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    (tmp_path / "w.txt").write_text("1 2 3")
    save_file({"w": torch.zeros(n, d, dtype=torch.int32)}, str(tmp_path / "int.safetensors"))
    for name, message in (
        ("missing.npz", "does not exist"),
        ("other.npz", "no array named w or ws"),
        ("junk.safetensors", "cannot be read"),
        ("w.txt", "an .npz or .safetensors file"),
        ("int.safetensors", "not float ws"),
    ):
        with pytest.raises(ToolError, match=message):
            load_ws(tmp_path / name, n, d)


def test_generate_ws(cli, tiny, tmp_path):
    G, ckpt = tiny
    with torch.no_grad():
        ws = G.mapping(torch.randn(3, G.z_dim), None, truncation_psi=0.5)
    np.savez(tmp_path / "ws.npz", ws=ws.numpy())
    code, out, err = cli(
        "generate", "--checkpoint", ckpt, "--ws", tmp_path / "ws.npz", "--grid", "--outdir", tmp_path / "o"
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["grid.png", "ws0000.png", "ws0001.png", "ws0002.png"]
    with torch.no_grad():
        expected = (G.synthesis(ws, noise_mode="const") * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    with Image.open(tmp_path / "o" / "ws0002.png") as img:
        assert np.array_equal(np.asarray(img), expected[2].permute(1, 2, 0).numpy())

    code, _, err = cli(
        "generate", "--checkpoint", ckpt, "--ws", tmp_path / "ws.npz", "--trunc", "0.7", "--outdir", tmp_path / "t"
    )
    assert code == 1 and "--trunc acts on seeds" in err and not (tmp_path / "t").exists()
    np.savez(tmp_path / "small.npz", w=np.zeros([G.num_ws - 1, G.w_dim], dtype=np.float32))
    code, _, err = cli("generate", "--checkpoint", ckpt, "--ws", tmp_path / "small.npz", "--outdir", tmp_path / "s")
    assert code == 1 and "pass ws saved from this model" in err and len(err.strip().splitlines()) == 1
