import hashlib
import importlib
import importlib.util
import io
import json
import re
import shutil
import sys
import types
import zipfile

import numpy as np
import pytest
from conftest import OFFICIAL_SG2, require_shared
from PIL import Image
from typer.testing import CliRunner

from ganforge.data.cli import dataset_app
from ganforge.data.dataset import ImageDataset
from ganforge.data.prepare import NothingUsable, PrepareError, PrepareOptions, prepare_dataset, report_path

runner = CliRunner()
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def solid(size, colour, mode="RGB"):
    return Image.new(mode, size, colour)


def noise(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def exif_rotated_jpeg(path):
    """Stored 96 wide x 64 tall, red block top-left; orientation 6 shows it 64 x 96 with red top-right."""
    img = solid((96, 64), BLUE)
    img.paste(RED, (0, 0, 48, 24))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, "JPEG", quality=95, exif=exif.tobytes())


def make_odd_source(root):
    root.mkdir()
    exif_rotated_jpeg(root / "a_exif.jpg")
    noise(80, 80, 1).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "b_palette.png")
    rgba = solid((80, 80), (255, 0, 0, 0), "RGBA")
    rgba.paste((0, 255, 0, 255), (40, 0, 80, 80))
    rgba.save(root / "c_rgba.png")
    solid((80, 80), (0, 255, 255, 0), "CMYK").save(root / "d_cmyk.jpg", quality=95)
    Image.fromarray(np.full((80, 80), 128 * 257, dtype=np.uint16)).save(root / "e_gray16.png")
    solid((80, 80), 77, "L").save(root / "f_gray.png")
    buf = io.BytesIO()
    noise(80, 80, 2).save(buf, "JPEG")
    (root / "g_truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "h_empty.png").write_bytes(b"")
    (root / "i_text.jpg").write_text("this is not a picture\n")
    noise(20, 20, 3).save(root / "j_small.png")
    noise(400, 20, 4).save(root / "k_wide.png")
    pal = solid((80, 80), 0, "P")
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    pal.paste(1, (0, 0, 80, 40))
    pal.save(root / "m_ptrans.png", transparency=0)
    (root / "sub").mkdir()
    shutil.copy(root / "b_palette.png", root / "sub" / "dup.png")
    (root / "notes.txt").write_text("not an image and not named like one")


def tree_hashes(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def load(path):
    return np.asarray(Image.open(path))


def close(pixel, colour, tol=40):
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, colour))


def by_file(report):
    return {e["file"]: e for e in report["files"]}


def test_prepare_odd_inputs_to_folder(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "out"
    make_odd_source(src)
    before = tree_hashes(src)
    report = prepare_dataset(src, dest, PrepareOptions(resolution=64, workers=2))
    assert tree_hashes(src) == before
    assert report["counts"] == {"read": 13, "written": 8, "skipped": 4, "duplicates": 1, "adjusted": 6, "ignored": 1}
    files = by_file(report)
    assert files["g_truncated.jpg"]["action"] == "skipped" and "truncated" in files["g_truncated.jpg"]["reason"]
    assert files["h_empty.png"]["reason"] == "empty file (0 bytes)"
    assert "not an image" in files["i_text.jpg"]["reason"]
    assert "--max-aspect" in files["k_wide.png"]["reason"]
    assert files["sub/dup.png"] == {
        "file": "sub/dup.png",
        "action": "duplicate",
        "reason": "same pixels as b_palette.png",
    }
    assert "upscaled" in files["j_small.png"]["reason"] and files["j_small.png"]["action"] == "adjusted"
    assert "EXIF orientation 6" in files["a_exif.jpg"]["reason"]
    assert "CMYK" in files["d_cmyk.jpg"]["reason"] and "16-bit" in files["e_gray16.png"]["reason"]
    assert "transparency" in files["c_rgba.png"]["reason"] and "transparency" in files["m_ptrans.png"]["reason"]
    assert report["reasons"]["corrupt"] == 1 and report["reasons"]["aspect"] == 1

    names = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.png"))
    assert names == [f"00000/img{i:08d}.png" for i in range(8)]
    assert json.loads((dest / "dataset.json").read_text()) == {"labels": None}
    assert json.loads((dest / "report.json").read_text())["counts"]["written"] == 8
    for name in names:
        img = Image.open(dest / name)
        assert img.size == (64, 64) and img.mode == "RGB"
    exif = load(dest / names[0])  # Upright 64x96 cropped to 64x64: red is now top-right.
    assert close(exif[8, 56], RED) and close(exif[8, 8], BLUE) and close(exif[56, 32], BLUE)
    rgba = load(dest / names[2])
    assert close(rgba[32, 8], WHITE, 2) and close(rgba[32, 56], GREEN, 2)
    assert close(load(dest / names[3])[32, 32], Image.open(src / "d_cmyk.jpg").convert("RGB").getpixel((40, 40)), 6)
    assert close(load(dest / names[3])[32, 32], RED, 60)
    assert (load(dest / names[4]) == 128).all() and (load(dest / names[5]) == 77).all()
    ptrans = load(dest / names[7])
    assert close(ptrans[8, 32], BLUE, 0) and close(ptrans[56, 32], WHITE, 0)
    assert not list(tmp_path.glob(".*partial*"))


def test_prepare_grayscale_zip_small_skip_and_loader(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "data.zip"
    make_odd_source(src)
    report = prepare_dataset(src, dest, PrepareOptions(resolution="64x32", channels=1, small="skip", workers=1))
    assert by_file(report)["j_small.png"]["action"] == "skipped"
    assert "smaller than 64x32" in by_file(report)["j_small.png"]["reason"]
    assert report["counts"]["written"] == 7 and report_path(dest).name == "data.zip.report.json"
    assert json.loads(report_path(dest).read_text())["counts"] == report["counts"]
    with zipfile.ZipFile(dest) as zf:
        infos = zf.infolist()
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        names = sorted(i.filename for i in infos)
        assert names[-1] == "dataset.json" and names[0] == "00000/img00000000.png"
        assert all(re.fullmatch(r"\d{5}/img\d{8}\.png", n) for n in names[:-1])
        img = Image.open(io.BytesIO(zf.read(names[0])))
        assert img.mode == "L" and img.size == (64, 32)
    ds = ImageDataset(dest)
    assert len(ds) == 7 and ds.shape == [1, 32, 64] and ds.c_dim == 0
    image, label = ds[0]
    assert image.shape == (1, 32, 64) and label.shape == (0,)


def test_prepare_fits_pad_stretch_and_background(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    solid((128, 64), RED).save(src / "wide.png")
    prepare_dataset(src, tmp_path / "pad", PrepareOptions(resolution=64, fit="pad", background="#000080", workers=0))
    pad = load(tmp_path / "pad" / "00000" / "img00000000.png")
    assert close(pad[4, 32], (0, 0, 128), 0) and close(pad[32, 32], RED, 0) and close(pad[60, 32], (0, 0, 128), 0)
    prepare_dataset(src, tmp_path / "st", PrepareOptions(resolution=64, fit="stretch", workers=0))
    assert (load(tmp_path / "st" / "00000" / "img00000000.png") == RED).all()
    report = prepare_dataset(src, tmp_path / "odd", PrepareOptions(resolution=100, workers=0))
    assert "no model can be built at 100x100" in report["warnings"][0] and "96x96" in report["warnings"][0]


def test_cli_prepare_at_a_size_no_model_can_use_warns_with_the_nearest_sizes_and_still_writes(tmp_path, cli):
    src = tmp_path / "src"
    src.mkdir()
    solid((128, 128), RED).save(src / "a.png")
    code, out, err = cli("dataset", "prepare", src, tmp_path / "odd", "--resolution", "100", "--workers", "0", "-q")
    assert code == 0, err
    assert " ".join(err.split()) == (
        "warning: no model can be built at 100x100 (sizes must be base·2^k with a small base): the data is written "
        "at 100x100 anyway, but to train on it prepare it at a nearest valid size, 96x96, 112x96 or 112x112 "
        "(e.g. --resolution 96x96)"
    )
    assert load(tmp_path / "odd" / "00000" / "img00000000.png").shape == (100, 100, 3)


def test_cli_prepare_zip_source_with_csv_labels_then_reprepare_official(tmp_path):
    src = tmp_path / "src.zip"
    with zipfile.ZipFile(src, "w") as zf:
        for i in range(5):
            buf = io.BytesIO()
            noise(48, 40, 10 + i).save(buf, "PNG")
            zf.writestr(f"pics/p{i}.png", buf.getvalue())
        zf.writestr("pics/readme.txt", "hello")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\n" + "".join(f"p{i}.png,{i % 3}\n" for i in range(4)))
    before = tree_hashes(tmp_path)
    dest = tmp_path / "out.zip"
    result = runner.invoke(
        dataset_app,
        ["prepare", str(src), str(dest), "--resolution", "32", "--labels", str(labels), "--workers", "2", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 4 images" in result.output
    assert {k: v for k, v in tree_hashes(tmp_path).items() if k in before} == before
    report = json.loads(report_path(dest).read_text())
    assert by_file(report)["pics/p4.png"]["reason"].startswith("no label for this file")
    with zipfile.ZipFile(dest) as zf:
        meta = json.loads(zf.read("dataset.json"))
    assert meta == {"labels": [[f"00000/img{i:08d}.png", i % 3] for i in range(4)]}
    ds = ImageDataset(dest)
    assert ds.c_dim == 3 and ds.label_counts == [2, 1, 1]
    assert ds[1][1].tolist() == [0.0, 1.0, 0.0]
    again = prepare_dataset(dest, tmp_path / "again", PrepareOptions(resolution=16, workers=0))
    assert again["labels"] == {"classes": 3, "counts": {"0": 2, "1": 1, "2": 1}}


def test_cli_nothing_usable_exits_1_and_writes_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(b"")
    (src / "b.jpg").write_text("text")
    noise(8, 8).save(src / "tiny.png")
    result = runner.invoke(
        dataset_app, ["prepare", str(src), str(tmp_path / "out"), "--resolution", "64", "--small", "skip", "-q"]
    )
    assert result.exit_code == 1
    assert "nothing usable was found" in result.output and "--small upscale" in result.output
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*partial*"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NothingUsable, match="holds no image files"):
        prepare_dataset(tmp_path / "empty", tmp_path / "x")


def test_prepare_refuses_unsafe_destinations(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    noise(64, 64).save(src / "a.png")
    with pytest.raises(PrepareError, match="inside SRC"):
        prepare_dataset(src, src / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    result = runner.invoke(dataset_app, ["prepare", str(src), str(tmp_path / "out"), "--resolution", "64"])
    assert result.exit_code == 2 and "already exists" in result.output and "--force" in result.output
    result = runner.invoke(dataset_app, ["prepare", str(src), str(tmp_path / "out"), "--resolution", "64", "--force"])
    assert result.exit_code == 0 and not (tmp_path / "out" / "keep.txt").exists()
    result = runner.invoke(dataset_app, ["prepare", str(src), str(tmp_path / "o2"), "--resolution", "64x0"])
    assert result.exit_code == 2 and "out of range" in result.output


def test_cli_check_sentences_and_json(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    noise(64, 64).save(src / "a.png")
    noise(64, 64, 1).save(src / "b.png")
    noise(80, 60, 2).save(src / "c.png")
    result = runner.invoke(dataset_app, ["check", str(src)])
    assert result.exit_code == 1 and "2 different sizes" in result.output
    assert f"ganforge dataset prepare {src} " in result.output
    dest = tmp_path / "ok.zip"
    prepare_dataset(src, dest, PrepareOptions(resolution=64, workers=0))
    result = runner.invoke(dataset_app, ["check", str(dest), "--resolution", "128", "--preset", "tiny"])
    assert result.exit_code == 1
    assert "the data is 64x64 (WxH) but the model makes 128x128" in result.output
    assert "--resolution 128x128" in result.output
    result = runner.invoke(dataset_app, ["check", str(dest), "--resolution", "64", "--json"])
    info = json.loads(result.stdout)
    assert result.exit_code == 0 and info["ok"] and info["sizes"] == {"64x64": 3} and info["channels"] == 3
    result = runner.invoke(dataset_app, ["check", str(dest), "--cond"])
    assert result.exit_code == 1 and "has no labels" in result.output


def test_cli_check_takes_the_model_family(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    noise(100, 100).save(src / "a.png")
    result = runner.invoke(dataset_app, ["check", str(src), "--family", "dcgan"])
    out = " ".join(result.output.split())
    assert result.exit_code == 1 and "no dcgan model can be built at 100x100 (WxH; sizes must be base·2^k)" in out
    assert "--resolution 96x96" in out
    good = tmp_path / "good"
    good.mkdir()
    noise(28, 28).save(good / "a.png")  # 7·2^2: a DCGAN (and a StyleGAN2) model at 28x28.
    result = runner.invoke(dataset_app, ["check", str(good), "--family", "dcgan", "--preset", "tiny", "--json"])
    info = json.loads(result.stdout)
    assert result.exit_code == 0 and info["ok"] and info["family"] == "dcgan"
    result = runner.invoke(dataset_app, ["check", str(good), "--family", "dcgan", "--resolution", "56"])
    assert result.exit_code == 1 and "the data is 28x28 (WxH) but the model makes 56x56" in result.output
    result = runner.invoke(dataset_app, ["check", str(good), "--family", "vae"])
    assert result.exit_code == 2 and "--family" in result.output


def test_dataset_app_mounts_as_ganforge_dataset(tmp_path):
    import typer

    app = typer.Typer()
    app.callback()(lambda: None)
    app.add_typer(dataset_app, name="dataset")
    src = tmp_path / "src"
    src.mkdir()
    noise(40, 40).save(src / "a.png")
    result = runner.invoke(app, ["dataset", "prepare", str(src), str(tmp_path / "d.zip"), "--resolution", "32", "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["dataset", "check", str(tmp_path / "d.zip"), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["images"] == 1


def official_image_folder_dataset():
    """training.dataset.ImageFolderDataset from the official code beside the repository, or skip."""
    OFFICIAL_ROOT = require_shared(
        OFFICIAL_SG2, "training/dataset.py", "this test reads our output with the official loader"
    )
    before = set(sys.modules)
    if importlib.util.find_spec("requests") is None:  # dnnlib imports requests for downloads only.
        sys.modules.setdefault("requests", types.ModuleType("requests"))
    sys.path.insert(0, str(OFFICIAL_ROOT))
    try:
        return importlib.import_module("training.dataset").ImageFolderDataset
    finally:  # Leave no official modules (training, dnnlib, torch_utils) behind for other tests.
        sys.path.remove(str(OFFICIAL_ROOT))
        for name in set(sys.modules) - before:
            if name.split(".")[0] in ("training", "dnnlib", "torch_utils", "requests"):
                del sys.modules[name]


def test_official_loader_reads_our_output_identically(tmp_path):
    official = official_image_folder_dataset()
    src = tmp_path / "src"
    make_odd_source(src)
    names = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.*"))
    (tmp_path / "labels.json").write_text(json.dumps({n: i % 3 for i, n in enumerate(names)}))
    prepare_dataset(src, tmp_path / "rgb.zip", PrepareOptions(resolution=64, labels=tmp_path / "labels.json"))
    prepare_dataset(src, tmp_path / "gray", PrepareOptions(resolution="64x32", channels=1, workers=0))
    for path, labels in ((tmp_path / "rgb.zip", True), (tmp_path / "gray", False)):
        theirs = official(str(path), use_labels=labels, xflip=True)
        ours = ImageDataset(path, use_labels=labels, xflip=True)
        assert list(theirs.image_shape) == ours.shape and len(theirs) == len(ours)
        assert theirs.label_shape == ([ours.c_dim] if ours.c_dim else [0])
        for i in range(len(ours)):
            (a, la), (b, lb) = theirs[i], ours[i]
            assert (a == b.numpy()).all() and (la == lb.numpy()).all()
