"""Latent directions: SeFa and GANSpace against independent computations, the directions file, applying a
direction in generate and video, the texture-sticking walk, and every refusal as one sentence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import save_tiny
from PIL import Image

from ganforge import build_generator, make_plan
from ganforge.tools.directions import DirectionEdit, add_offset, load_directions, save_directions
from ganforge.tools.factorize import ganspace, sefa
from ganforge.tools.generate import input_transform
from ganforge.tools.mix import seeds_to_ws, synthesize
from ganforge.tools.sweeps import direction_frames, pingpong, translate_frames

# The tiny 16 px StyleGAN2: ws index -> the style affines SeFa reads there (the last index feeds only ToRGB).
SG2_SEFA = {
    0: ["b4.conv1"],
    1: ["b8.conv0"],
    2: ["b8.conv1"],
    3: ["b16.conv0"],
    4: ["b16.conv1"],
    5: ["b16.torgb"],
}


@pytest.fixture(scope="module")
def sg3(tmp_path_factory):
    plan = make_plan("tiny", 16, family="stylegan3-r", cmax=8, mapping_layers=1, sg3_layers=4, sg3_critical=1)
    torch.manual_seed(0)
    G = build_generator(plan).eval().requires_grad_(False)
    with torch.no_grad():  # A trained input rotates and shifts with w; a fresh one has a zero affine.
        G.synthesis.input.affine.weight.normal_(0, 0.1)
    return G, save_tiny(G, tmp_path_factory.mktemp("sg3") / "sg3.safetensors")


def reference_sefa(weights: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The SeFa recipe in numpy: rows to unit norm, stacked; the top-k eigenvectors of AᵀA (descending)."""
    a = np.concatenate([w / np.linalg.norm(w, axis=1, keepdims=True) for w in weights])
    values, vectors = np.linalg.eigh(a.T @ a)
    return vectors[:, ::-1][:, :k].T, values[::-1][:k]


def same_up_to_sign(a: torch.Tensor, b: np.ndarray, atol: float = 1e-4) -> bool:
    dots = (a.double().numpy() * b).sum(axis=1)
    return bool(np.allclose(np.abs(dots), 1, atol=atol))


def affine_weights(G, names: list[str]) -> list[np.ndarray]:
    state = G.state_dict()
    return [state[f"synthesis.{n}.affine.weight"].double().numpy() for n in names]


# SeFa and GANSpace.


@pytest.mark.parametrize("layers", [None, [0, 1], [4, 5]])
def test_sefa_is_the_top_eigenvectors_of_the_stacked_normalised_affines(tiny, layers):
    G, _ = tiny
    d = sefa(G, layers, num=5)
    chosen = list(SG2_SEFA) if layers is None else layers
    ref_vectors, ref_values = reference_sefa(affine_weights(G, [n for i in chosen for n in SG2_SEFA[i]]), 5)
    assert d.layers == tuple(chosen) and d.vectors.shape == (5, G.w_dim)
    assert torch.allclose(d.vectors @ d.vectors.t(), torch.eye(5), atol=1e-5)  # Orthonormal.
    assert same_up_to_sign(d.vectors, ref_vectors)
    assert np.allclose(d.values.numpy(), ref_values, rtol=1e-5)
    assert (d.values[:-1] >= d.values[1:]).all()


def test_sefa_on_stylegan3_reads_every_layer_but_the_input(sg3):
    G, _ = sg3
    d = sefa(G, None, num=4)
    names = G.synthesis.layer_names  # ws[i + 1]; ws[0] only turns the Fourier input.
    ref_vectors, ref_values = reference_sefa(affine_weights(G, names), 4)
    assert d.layers == tuple(range(1, G.num_ws)) and same_up_to_sign(d.vectors, ref_vectors)
    assert np.allclose(d.values.numpy(), ref_values, rtol=1e-5)


class LinearMapping(torch.nn.Module):
    """A toy generator whose mapping is w = M z (no labels), M with known singular vectors and values."""

    def __init__(self, m: torch.Tensor, num_ws: int = 3):
        super().__init__()
        self.m, self.num_ws = m, num_ws
        self.w_dim, self.z_dim, self.c_dim = m.shape[0], m.shape[1], 0

    def mapping(self, z, c=None):
        return (z @ self.m.t())[:, None].repeat(1, self.num_ws, 1)


def test_ganspace_recovers_the_principal_axes_of_a_linear_mapping():
    gen = torch.Generator().manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(10, 10, generator=gen, dtype=torch.float64))
    s = torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.25], dtype=torch.float64)
    m = (u * s) @ v[:6]  # [w_dim 6, z_dim 10]: cov(w) = M Mᵀ = U diag(s²) Uᵀ.
    d = ganspace(LinearMapping(m.float()), num=4, samples=20_000, seed=3, batch=300)
    assert d.method == "ganspace" and d.layers == (0, 1, 2) and d.samples == 20_000
    assert same_up_to_sign(d.vectors, u[:, :4].t().numpy(), atol=0.01)
    assert np.allclose(d.values.numpy(), s[:4].numpy(), rtol=0.03)  # Standard deviations along the axes.
    again = ganspace(LinearMapping(m.float()), num=4, samples=20_000, seed=3, batch=7)
    assert torch.allclose(again.vectors, d.vectors, atol=1e-5)  # The draws do not depend on the batch.


def test_the_file_round_trips(tmp_path, tiny):
    d = ganspace(tiny[0], num=3, samples=500)
    save_directions(d, tmp_path / "g.safetensors")
    back = load_directions(tmp_path / "g.safetensors")
    assert back.method == "ganspace" and back.layers == d.layers and back.num_ws == d.num_ws
    assert torch.equal(back.vectors, d.vectors) and torch.equal(back.values, d.values)
    assert back.mean is not None and back.samples == 500
    assert torch.allclose(back.offset([0, 2]), 2 * d.values[1] * d.vectors[1])  # GANSpace: S in σ.


# Applying a direction.


def split(command: str) -> list[str]:
    return command.split()  # The test paths have no spaces.


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def files(tiny, sg3, tmp_path_factory):
    """(sefa file, ganspace file) of the tiny StyleGAN2, and a StyleGAN3 sefa file."""
    root = tmp_path_factory.mktemp("dirs")
    for name, d in (
        ("sefa", sefa(tiny[0], None, 4, "tiny.safetensors")),
        ("gs", ganspace(tiny[0], 4, 500)),
        ("sg3", sefa(sg3[0], None, 3)),
    ):
        save_directions(d, root / f"{name}.safetensors")
    return root


def test_generate_along_a_direction(cli, tiny, files, tmp_path):
    ck = tiny[1]
    args = ("generate", "--checkpoint", ck, "--seeds", "3")
    assert cli(*args, "--outdir", tmp_path / "plain")[0] == 0
    for strength in ("0", "4"):
        code, _, err = cli(
            *args, "--direction", f"{files}/sefa.safetensors:1", "--strength", strength, "--outdir", tmp_path / strength
        )
        assert code == 0, err
    plain, zero, moved = (read(tmp_path / d / "seed0003.png") for d in ("plain", "0", "4"))
    assert np.array_equal(plain, zero) and not np.array_equal(plain, moved)
    fine_args = ("--direction", f"{files}/gs.safetensors:0", "--strength", "2", "--layers", "5")
    code, _, err = cli(*args, *fine_args, "--outdir", tmp_path / "fine")
    assert code == 0, err
    fine = read(tmp_path / "fine" / "seed0003.png")  # Only the ToRGB w moved: colours shift, not shapes.
    assert not np.array_equal(fine, plain)


def test_generate_matches_adding_the_offset_to_ws(tiny, files, tmp_path, cli):
    G, ck = tiny
    d = load_directions(files / "gs.safetensors")
    ws = seeds_to_ws(G, [5])
    expect = synthesize(G, add_offset(ws, 1.5 * d.values[2] * d.vectors[2], [0, 1, 2]))[0].permute(1, 2, 0).numpy()
    edit = f"--direction {files}/gs.safetensors:2 --strength 1.5 --layers 0-2"
    code, _, err = cli(*split(f"generate --checkpoint {ck} --seeds 5 {edit} --outdir {tmp_path}"))
    assert code == 0, err
    assert np.array_equal(read(tmp_path / "seed0005.png"), expect)


def test_video_sweeps_a_direction_there_and_back(tiny, files, cli, tmp_path):
    G, ck = tiny
    d = load_directions(files / "sefa.safetensors")
    ws = seeds_to_ws(G, [1, 2])
    frames = list(direction_frames(G, ws, DirectionEdit(d, 0, 3.0, d.layers), frames=4))
    assert len(frames) == 8 and frames[0].shape == (16, 32, 3)  # Two seeds side by side.
    assert np.array_equal(frames[2], np.concatenate(list(synthesize(G, ws).permute(0, 2, 3, 1).numpy()), axis=1))
    assert not np.array_equal(frames[0], frames[4]) and np.array_equal(frames[1], frames[7])
    sweep = f"--direction {files}/sefa.safetensors:0"
    code, out, err = cli(*split(f"video --checkpoint {ck} --seeds 1 --frames 3 {sweep} --out {tmp_path / 'd.gif'}"))
    assert code == 0 and "from -3 to 3" in " ".join(out.split()), err
    assert Image.open(tmp_path / "d.gif").n_frames == 6
    assert pingpong(1).tolist() == [0.0, 1.0]


def test_translate_walk_moves_stylegan3_through_its_input_and_stylegan2_through_w(tiny, sg3, cli, tmp_path):
    G3, ck3 = sg3
    ws = seeds_to_ws(G3, [0])
    frames = list(translate_frames(G3, ws, None, 0.25, frames=4))
    assert len(frames) == 8 and not np.array_equal(frames[0], frames[4])
    assert torch.equal(G3.synthesis.input.transform, torch.eye(3))  # Reset afterwards.
    G3.synthesis.input.transform.copy_(input_transform((0.25 * 0.5, 0.0)))
    try:
        assert np.array_equal(frames[2], synthesize(G3, ws)[0].permute(1, 2, 0).numpy())  # generate --translate.
    finally:
        G3.synthesis.input.transform.copy_(torch.eye(3))
    code, out, err = cli(
        *split(f"video --checkpoint {ck3} --seeds 0 --frames 4 --walk translate --out {tmp_path / 't.gif'}")
    )
    assert code == 0 and "0.25 px per frame" in " ".join(out.split()), err
    G2, ck2 = tiny
    ws2, partner = seeds_to_ws(G2, [0]), seeds_to_ws(G2, [1])
    frames2 = list(translate_frames(G2, ws2, partner, 1.0, frames=2))
    assert np.array_equal(frames2[2], synthesize(G2, partner)[0].permute(1, 2, 0).numpy())  # All the way to seed 1.
    code, out, err = cli(
        *split(f"video --checkpoint {ck2} --seeds 0 --frames 2 --walk translate --out {tmp_path / 't2.gif'}")
    )
    assert code == 0 and "toward seed + 1" in " ".join(out.split()), err


# Refusals: one sentence each, exit 1 (or 2 when the option alone is wrong), nothing written.


@pytest.fixture(scope="module")
def others(tmp_path_factory):
    root = tmp_path_factory.mktemp("others")
    torch.manual_seed(0)
    save_tiny(build_generator(make_plan("tiny", 16, family="dcgan")).eval(), root / "dcgan.safetensors")
    save_tiny(build_generator(make_plan("tiny", 16, w_dim=32)).eval(), root / "w32.safetensors")
    (root / "junk.safetensors").write_bytes(b"\x00" * 64)
    Image.new("RGB", (4, 4)).save(root / "image.png")
    return root


def refused(result, *words, code=1):
    rc, _, err = result
    assert rc == code, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def test_refusals(cli, tiny, sg3, files, others, tmp_path):
    ck = tiny[1]
    gen = ("generate", "--checkpoint", ck, "--seeds", "0", "--outdir", tmp_path / "never")
    sefa_file = f"{files}/sefa.safetensors"
    refused(cli(*gen, "--direction", f"{sefa_file}:4", "--strength", "1"), "holds directions 0..3")
    refused(cli(*gen, "--direction", f"{ck}:0", "--strength", "1"), "is a ganforge checkpoint, not a directions file")
    for bad in ("junk.safetensors", "image.png", "missing.safetensors"):
        refused(cli(*gen, "--direction", f"{others / bad}:0", "--strength", "1"), "directions", "ganforge directions")
    refused(cli(*gen, "--direction", sefa_file, "--strength", "1"), "write FILE:K", code=2)
    for s in ("nan", "inf", "1e9"):
        refused(cli(*gen, "--direction", f"{sefa_file}:0", "--strength", s), "--strength", "-100..100", code=2)
    refused(cli(*gen, "--direction", f"{sefa_file}:0"), "needs --strength")
    refused(cli(*gen, "--strength", "2"), "--strength only applies with --direction")
    refused(cli(*gen, "--direction", f"{sefa_file}:0", "--strength", "1", "--layers", "6"), "ws 0..5")
    w32 = ("generate", "--checkpoint", others / "w32.safetensors", "--outdir", tmp_path / "never")
    refused(cli(*w32, "--direction", f"{sefa_file}:0", "--strength", "1"), "64-dimensional", "w_dim is 32")
    dcgan = ("generate", "--checkpoint", others / "dcgan.safetensors", "--outdir", tmp_path / "never")
    refused(cli(*dcgan, "--direction", f"{sefa_file}:0", "--strength", "1"), "DCGAN")
    out = tmp_path / "d.safetensors"
    refused(cli("directions", "--checkpoint", others / "dcgan.safetensors", "--method", "sefa", "--out", out), "DCGAN")
    refused(
        cli("directions", "--checkpoint", sg3[1], "--method", "sefa", "--layers", "0", "--out", out), "Fourier input"
    )
    refused(cli("directions", "--checkpoint", ck, "--method", "sefa", "--num", "65", "--out", out), "pass 1..64")
    refused(
        cli("directions", "--checkpoint", ck, "--method", "ganspace", "--num", "8", "--samples", "8", "--out", out),
        "--samples 8",
    )
    refused(cli("directions", "--checkpoint", ck, "--method", "pca", "--out", out), "--method", code=2)
    assert not (tmp_path / "never").exists() and not out.exists()
    for moves, word in (
        (("--translate", "1e308,0"), "--translate"),
        (("--rotate", "nan"), "--rotate"),
        (("--rotate", "1e308"), "--rotate"),
    ):
        refused(cli("generate", "--checkpoint", sg3[1], *moves, "--outdir", tmp_path / "never"), word, code=2)
    vid = ("video", "--checkpoint", ck, "--seeds", "0", "--out", tmp_path / "v.gif")
    refused(cli(*vid, "--walk", "translate", "--direction", f"{sefa_file}:0"), "pass one of them")
    refused(cli(*vid, "--shift", "0.1"), "--shift only applies with --walk translate")
    refused(cli(*vid, "--walk", "translate", "--shift", "nan"), "--shift", code=2)
    refused(cli(*vid, "--walk", "translate", "--grid", "2x1"), "drop --grid")
    refused(cli(*vid, "--direction", f"{sefa_file}:0", "--strength", "nan"), "--strength", code=2)
    refused(cli(*vid, "--direction", f"{sefa_file}:0", "--shift", "0.1"), "drop --shift")
    assert not (tmp_path / "v.gif").exists()
