"""CLIP-guided search with a tiny, randomly initialised CLIP model saved to a folder (nothing is downloaded): the loss
goes down, the image changes, a seed reproduces the run, the saved w redraws result.png, and every refusal is one
sentence."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
from conftest import OFFICIAL_PKLS, require_shared, save_tiny
from PIL import Image
from safetensors.torch import load_file

from ganforge import build_generator, make_plan
from ganforge.tools.clip_search import ClipSearchConfig, clip_search, make_cutouts, save_search, w_prior

transformers = pytest.importorskip("transformers")

PROMPT = "a red circle"
QUICK = ClipSearchConfig(steps=12, lr=0.05, cutouts=3, w_samples=256)


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins of bytes that byte-level BPE tokenizers (GPT-2, CLIP) use."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in keep]
    table = {**{b: chr(b) for b in keep}, **{b: chr(256 + i) for i, b in enumerate(moved)}}
    return [table[b] for b in range(256)]


def save_tiny_clip(folder) -> None:
    """A CLIP model with 2-layer, 32-wide towers (32 px images, 8 px patches) and a byte-level tokenizer without
    merges, as save_pretrained writes them, plus a preprocessor_config.json with its own mean/std."""
    symbols = byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = transformers.CLIPConfig(
        text_config=dict(
            **tower, vocab_size=len(vocab), max_position_embeddings=16, bos_token_id=512, eos_token_id=513
        ),
        vision_config=dict(**tower, image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(folder)
    transformers.CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    processor = {"image_mean": [0.5, 0.45, 0.4], "image_std": [0.25, 0.26, 0.27], "crop_size": {"height": 32}}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip") / "tiny-clip"
    save_tiny_clip(folder)
    return folder


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to open a connection is recorded and refused; the test asserts none was made."""
    attempts: list = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture(scope="module")
def sg3(tmp_path_factory):
    plan = make_plan("tiny", 16, family="stylegan3-r", cmax=8, mapping_layers=1, sg3_layers=4, sg3_critical=1)
    torch.manual_seed(0)
    return build_generator(plan).eval()


def test_cutouts_and_prior():
    img = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12)
    cuts = make_cutouts(img, 4, 16, 0.5, torch.Generator().manual_seed(0))
    assert cuts.shape == (8, 3, 16, 16)
    centre = torch.nn.functional.interpolate(img[:, :, :, 2:10], size=(16, 16), mode="bilinear", antialias=True)
    assert torch.equal(cuts[:2], centre)  # The first view is the centre square.
    again = make_cutouts(img, 4, 16, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(cuts, again)
    mean, std = torch.zeros(4), torch.full([4], 2.0)
    assert float(w_prior(torch.full([1, 3, 4], 2.0), mean, std)) == pytest.approx(1.0)


def test_search_lowers_the_clip_loss_and_changes_the_image(tiny, clip_folder, no_network):
    from ganforge.tools.clip_model import load_clip

    G, _ = tiny
    clip = load_clip(str(clip_folder))
    assert clip.size == 32 and torch.allclose(clip.mean.flatten(), torch.tensor([0.5, 0.45, 0.4]))
    result = clip_search(G, clip, PROMPT, "a blue square", QUICK)
    assert result.final_clip < result.start_clip
    assert result.log[-1]["clip"] < result.log[0]["clip"] and "negative" in result.log[0]
    assert result.w.shape == (G.num_ws, G.w_dim) and torch.equal(result.w, result.w[:1].expand_as(result.w))
    with torch.no_grad():
        before, after = (G.synthesis(w[None], noise_mode="const") for w in (result.start, result.w))
    assert (before - after).abs().max() > 0.05
    assert no_network == []


def test_stylegan3_in_w_plus(sg3, clip_folder):
    from ganforge.tools.clip_model import load_clip

    cfg = ClipSearchConfig(steps=8, lr=0.05, cutouts=2, space="w+", w_samples=128)
    result = clip_search(sg3, load_clip(str(clip_folder)), PROMPT, None, cfg)
    assert result.final_clip < result.start_clip
    assert result.w.shape == (sg3.num_ws, sg3.w_dim) and not torch.equal(result.w[0], result.w[-1])


def test_official_pickle(cli, clip_folder, tmp_path):
    from ganforge import load_generator
    from ganforge.tools.clip_model import load_clip

    name = "sg2ada-32px-uncond-skip-resnet.pkl"
    pkl = require_shared(OFFICIAL_PKLS, name, "the official StyleGAN2-ADA pickles") / name
    G = load_generator(pkl)
    cfg = ClipSearchConfig(steps=4, lr=0.05, cutouts=2, w_samples=64)
    result = clip_search(G, load_clip(str(clip_folder)), PROMPT, None, cfg)
    save_search(G, result, tmp_path / "o", {}, save_video=False)
    code, _, err = cli("generate", "--checkpoint", pkl, "--ws", tmp_path / "o" / "w.npz", "--outdir", tmp_path / "g")
    assert code == 0, err
    assert np.array_equal(png(tmp_path / "g" / "ws0000.png"), png(tmp_path / "o" / "result.png"))


def test_command_writes_reproducible_files(cli, tiny, clip_folder, tmp_path, no_network):
    G, ckpt = tiny
    args = ["--checkpoint", ckpt, "--prompt", PROMPT, "--clip-model", clip_folder, "--steps", 6, "--lr", 0.05]
    args += ["--cutouts", 2, "--seed", 3]
    for run in ("a", "b"):
        code, out, err = cli("clip-search", *args, "--outdir", tmp_path / run)
        assert code == 0, err
    a, b = tmp_path / "a", tmp_path / "b"
    assert "at the start ->" in out
    video = next(a.glob("search.*"))
    assert video.suffix in (".mp4", ".gif") and video.stat().st_size > 0
    w = np.load(a / "w.npz")["w"]
    assert w.shape == (G.num_ws, G.w_dim)
    assert np.array_equal(w, np.load(b / "w.npz")["w"])  # The same seed, the same search.
    assert np.array_equal(load_file(str(a / "w.safetensors"))["w"].numpy(), w)
    assert (a / "result.png").read_bytes() == (b / "result.png").read_bytes()
    log = json.loads((a / "log.json").read_text())
    assert len(log["losses"]) == 6 and log["prompt"] == PROMPT and log["final_clip"] < log["start_clip"]

    # The start is generate's image of the seed at psi 0.7.
    code, _, err = cli("generate", "--checkpoint", ckpt, "--seeds", 3, "--trunc", 0.7, "--outdir", tmp_path / "g")
    assert code == 0, err
    assert np.array_equal(png(a / "start.png"), png(tmp_path / "g" / "seed0003.png"))
    assert no_network == []

    # The saved w redraws the result exactly, from either file.
    for name in ("w.safetensors", "w.npz"):
        code, _, err = cli("generate", "--checkpoint", ckpt, "--ws", a / name, "--outdir", tmp_path / name)
        assert code == 0, err
        assert [p.name for p in (tmp_path / name).iterdir()] == ["ws0000.png"]
        assert np.array_equal(png(tmp_path / name / "ws0000.png"), png(a / "result.png"))


def png(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def test_model_from_the_hugging_face_cache(monkeypatch, tmp_path, clip_folder, no_network):
    """A name resolves in the local cache (models--org--name/snapshots/<commit>/...) without any request."""
    import huggingface_hub.constants

    from ganforge.tools.clip_model import load_clip

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--tiny-org--tiny-clip"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in clip_folder.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    clip = load_clip("tiny-org/tiny-clip")
    assert clip.size == 32 and torch.allclose(clip.std.flatten(), torch.tensor([0.25, 0.26, 0.27]))
    assert no_network == []


def test_refusals_are_one_sentence(cli, tiny, clip_folder, tmp_path, monkeypatch, no_network):
    _, ckpt = tiny
    base = ["clip-search", "--checkpoint", ckpt, "--prompt", PROMPT, "--outdir", tmp_path / "out"]

    def refused(*args, code=1) -> str:
        got, out, err = cli(*base, *args)
        assert got == code and out == "" and len(err.strip().splitlines()) == 1, err
        return err

    assert "does not exist" in refused("--clip-model", tmp_path / "nowhere" / "clip")
    err = refused("--clip-model", "tiny-org/not-cached-clip")
    assert "Hugging Face cache" in err and "--allow-download" in err and "config.json" in err
    assert no_network == []
    (tmp_path / "empty").mkdir()
    assert "no config.json" in refused("--clip-model", tmp_path / "empty")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    assert "not a CLIP model" in refused("--clip-model", tmp_path / "bert")
    for flag, value in (
        ("--lr", "nan"),
        ("--lr", "-0.1"),
        ("--lr", "1e9"),
        ("--steps", "0"),
        ("--steps", "1000000000"),
    ):
        assert flag in refused("--clip-model", clip_folder, flag, value, code=2)
    assert "--trunc" in refused("--clip-model", clip_folder, "--trunc", "nan", code=2)
    assert "--prompt is empty" in cli("clip-search", "--checkpoint", ckpt, "--prompt", " ", "--clip-model", ".")[2]
    assert not (tmp_path / "out").exists()

    dcgan = save_tiny(build_generator(make_plan("tiny", 16, family="dcgan")).eval(), tmp_path / "dcgan.safetensors")
    code, _, err = cli("clip-search", "--checkpoint", dcgan, "--prompt", PROMPT, "--clip-model", clip_folder)
    assert code == 1 and "no mapping network or w" in err

    monkeypatch.setitem(__import__("sys").modules, "transformers", None)  # `import transformers` fails.
    assert 'pip install "ganforge[clip]"' in refused("--clip-model", clip_folder)
