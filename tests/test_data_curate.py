import csv
import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter
from typer.testing import CliRunner

from ganforge.data import mtcnn
from ganforge.data.cli import dataset_app
from ganforge.data.curate import CSV_COLUMNS, CurateError, CurateOptions, curate_dataset, curate_paths
from ganforge.data.faces import align_face, alignment_transform, eye_offset, ffhq_quad, tilt_degrees
from ganforge.data.quality import blur_score, mirror_symmetry, symmetry_score
from ganforge.data.source import Source

runner = CliRunner()

# Upright template (pixel offsets from the eyes' midpoint): eye l/r, nose, mouth l/r. Eye distance 40, eye-mouth 44.
TEMPLATE = np.array([[-20.0, 0.0], [20.0, 0.0], [0.0, 22.0], [-16.0, 44.0], [16.0, 44.0]])


def textured(w=192, h=160, seed=0) -> Image.Image:
    """Random rectangles and lines: plenty of edges."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (w, h), (120, 120, 120))
    draw = ImageDraw.Draw(img)
    for _ in range(60):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.rectangle((x0, y0, x0 + rng.integers(4, 40), y0 + rng.integers(4, 40)), fill=colour)
    return img


def similarity(points: np.ndarray, angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * scale
    return points @ rot.T + np.array(shift)


def template_output(size: int) -> np.ndarray:
    """Where the recipe puts TEMPLATE's points in a size x size crop (pixel-index coordinates): the quad is the
    axis-aligned square of half-side s = max(2|eye_to_eye|, 1.8|eye_to_mouth|) centred 0.1 eye_to_mouth below
    the eyes."""
    s = max(2.0 * 40.0, 1.8 * 44.0)
    centre = np.array([0.0, 0.1 * 44.0])
    return (TEMPLATE - centre + s) * size / (2 * s) - 0.5


# ----------------------------------------------------------------------------------------------------------------
# Scores.


def test_blur_orders_sharp_and_blurred_and_threshold_decides(tmp_path):
    sharp = textured()
    soft = sharp.filter(ImageFilter.GaussianBlur(2.5))
    assert blur_score(sharp) > 3 * blur_score(soft)
    # The working size makes the score independent of resolution: the same smooth pattern at two sizes scores alike.
    waves = [
        np.uint8(128 + 60 * np.sin(np.arange(w) * (2 * np.pi * 40 / w)))[None, :].repeat(w // 2, 0) for w in (256, 768)
    ]
    low, high = (blur_score(Image.fromarray(a)) for a in waves)
    assert low == pytest.approx(high, rel=0.08)
    src = tmp_path / "src"
    src.mkdir()
    sharp.save(src / "a_sharp.png")
    soft.save(src / "b_soft.png")
    threshold = math.sqrt(blur_score(sharp.resize((128, 128))) * blur_score(soft.resize((128, 128))))
    summary = curate_dataset(src, tmp_path / "out", CurateOptions(resolution=128, fit="stretch", blur=threshold))
    assert (summary["kept"], summary["rejected"], summary["reasons"]) == (1, 1, {"blur": 1})
    rows = list(csv.DictReader(open(curate_paths(tmp_path / "out")[0])))
    assert [(r["file"], r["kept"]) for r in rows] == [("a_sharp.png", "1"), ("b_soft.png", "0")]
    assert rows[1]["reason"].startswith("blur ") and float(rows[1]["blur"]) < threshold < float(rows[0]["blur"])


def test_symmetry_of_symmetric_image_beats_asymmetric():
    half = np.random.default_rng(1).integers(0, 256, (64, 32), dtype=np.uint8)
    symmetric = Image.fromarray(np.concatenate([half, half[:, ::-1]], axis=1))
    noise = Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64), dtype=np.uint8))
    assert symmetry_score(symmetric) > 0.95
    assert 0.15 < symmetry_score(noise) < 0.45  # About 1 - sqrt(1/2) for unrelated halves.
    g = np.random.default_rng(3).normal(size=(16, 16))
    assert mirror_symmetry(g - g[:, ::-1]) == pytest.approx(0.0)  # Antisymmetric.
    assert mirror_symmetry(np.full((8, 8), 7.0)) == 1.0  # Flat.
    assert mirror_symmetry(np.asarray(symmetric, float) * 0.5 + 40) == pytest.approx(symmetry_score(symmetric), 0.05)


# ----------------------------------------------------------------------------------------------------------------
# Geometry.


@pytest.mark.parametrize("angle", [-35.0, 0.0, 12.0, 50.0])
def test_tilt_and_eye_offset_of_synthetic_landmarks(angle):
    for scale in (0.5, 2.0):
        lm = similarity(TEMPLATE, angle, scale, (300.0, 200.0))
        assert tilt_degrees(lm) == pytest.approx(angle, abs=1e-9)
        assert eye_offset(lm) == pytest.approx(0.0, abs=1e-9)
        turned = TEMPLATE.copy()
        turned[2:, 0] += 0.3 * 40  # Nose and mouth shifted right by 0.3 eye distances: eyes sit left of the line.
        assert eye_offset(similarity(turned, angle, scale, (10.0, 20.0))) == pytest.approx(-0.3, abs=1e-9)


@pytest.mark.parametrize(
    "angle,scale,size",
    [(0.0, 1.0, 128), (-25.0, 0.6, 128), (40.0, 2.5, 128), (90.0, 1.3, 128), (170.0, 1.0, 96), (-60.0, 2.5, 64)],
)
def test_alignment_puts_landmarks_on_the_template(angle, scale, size):
    lm = similarity(TEMPLATE, angle, scale, (260.0, 240.0))
    expected = template_output(size)
    # The forward similarity of the recipe.
    a = alignment_transform(lm, size)
    np.testing.assert_allclose(lm @ a[:, :2].T + a[:, 2], expected, atol=1e-6)
    quad = ffhq_quad(lm)
    assert np.hypot(*(quad[3] - quad[0])) == pytest.approx(2 * max(80, 79.2) * scale)
    # The image warp agrees within a pixel: blobs drawn at eyes and mouth corners land on the template.
    yy, xx = np.mgrid[:520, :520]
    canvas = np.zeros((520, 520))
    for x, y in lm[[0, 1, 3, 4]]:
        canvas += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (2.0 * scale) ** 2))
    img = Image.fromarray(np.uint8(np.clip(canvas * 255, 0, 255))).convert("RGB")
    out = np.asarray(align_face(img, lm, size, pad=False).convert("L"), dtype=np.float64)
    oy, ox = np.mgrid[:size, :size]
    for ex, ey in expected[[0, 1, 3, 4]]:
        win = (np.abs(ox - ex) <= 5) & (np.abs(oy - ey) <= 5)
        w = out * win
        assert np.hypot((w * ox).sum() / w.sum() - ex, (w * oy).sum() / w.sum() - ey) < 1.0


def test_alignment_pads_outside_the_photo():
    img = textured(120, 120)
    lm = similarity(TEMPLATE, 0.0, 1.0, (60.0, 40.0))  # The quad reaches far beyond the photo.
    padded = np.asarray(align_face(img, lm, 64, pad=True))
    black = np.asarray(align_face(img, lm, 64, pad=False))
    assert black[:4, :4].max() == 0 and padded[:4, :4].mean() > 20


# ----------------------------------------------------------------------------------------------------------------
# MTCNN.

SHAPES = {  # The facenet-pytorch files' keys and shapes.
    "pnet.pt": {
        "conv1": (10, 3, 3, 3),
        "conv2": (16, 10, 3, 3),
        "conv3": (32, 16, 3, 3),
        "conv4_1": (2, 32, 1, 1),
        "conv4_2": (4, 32, 1, 1),
    },
    "rnet.pt": {
        "conv1": (28, 3, 3, 3),
        "conv2": (48, 28, 3, 3),
        "conv3": (64, 48, 2, 2),
        "dense4": (128, 576),
        "dense5_1": (2, 128),
        "dense5_2": (4, 128),
    },
    "onet.pt": {
        "conv1": (32, 3, 3, 3),
        "conv2": (64, 32, 3, 3),
        "conv3": (64, 64, 3, 3),
        "conv4": (128, 64, 2, 2),
        "dense5": (256, 1152),
        "dense6_1": (2, 256),
        "dense6_2": (4, 256),
        "dense6_3": (10, 256),
    },
}


def fake_weights(folder):
    folder.mkdir(exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    for name, layers in SHAPES.items():
        state = {}
        for i, (layer, shape) in enumerate(layers.items()):
            state[f"{layer}.weight"] = torch.randn(shape, generator=gen) * 0.3
            state[f"{layer}.bias"] = torch.randn(shape[0], generator=gen) * 0.1
            if not layer.startswith(("conv4_", "dense5_", "dense6_")):
                state[f"prelu{i + 1}.weight"] = torch.full((shape[0],), 0.25)
        torch.save(state, folder / name)
    return folder


def test_mtcnn_networks_load_state_dicts_and_run(tmp_path):
    model = mtcnn.load_mtcnn(fake_weights(tmp_path / "w"))
    prob, box = model.pnet(torch.zeros(1, 3, 12, 12))
    assert prob.shape == (1, 1, 1) and box.shape == (1, 4, 1, 1)
    prob, box = model.rnet(torch.zeros(2, 3, 24, 24))
    assert prob.shape == (2,) and box.shape == (2, 4)
    prob, box, marks = model.onet(torch.zeros(2, 3, 48, 48))
    assert prob.shape == (2,) and box.shape == (2, 4) and marks.shape == (2, 10)
    faces = model.detect(textured(72, 60))
    assert all(f.landmarks.shape == (5, 2) and 0 <= f.score <= 1 for f in faces)
    bad = tmp_path / "bad"
    fake_weights(bad)
    state = torch.load(bad / "rnet.pt", weights_only=True)
    state["dense4.weight"] = torch.zeros(128, 500)
    torch.save(state, bad / "rnet.pt")
    with pytest.raises(ValueError, match=r"rnet\.pt does not fit RNet .*dense4\.weight"):
        mtcnn.load_mtcnn(bad)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 6, 6]])
    keep = mtcnn.nms(boxes, torch.tensor([0.9, 0.95, 0.5, 0.8]), 0.5)
    assert keep.tolist() == [1, 3, 2]
    assert mtcnn.nms(boxes, torch.tensor([0.9, 0.95, 0.5, 0.8]), 0.5, mode="min").tolist() == [1, 2]


def test_weights_missing_error_names_files_and_places(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(mtcnn, "package_dir", lambda: None)
    with pytest.raises(mtcnn.WeightsMissing) as e:
        mtcnn.find_weights()
    text = str(e.value)
    for part in (
        "pnet.pt",
        "rnet.pt",
        "onet.pt",
        str(tmp_path / "cache" / "mtcnn"),
        "pip download facenet-pytorch",
        "--mtcnn-dir",
    ):
        assert part in text
    with pytest.raises(mtcnn.WeightsMissing, match=r"--mtcnn-dir .*empty lacks pnet\.pt, rnet\.pt, onet\.pt"):
        mtcnn.find_weights(tmp_path / "empty")
    (tmp_path / "src").mkdir()
    result = runner.invoke(dataset_app, ["curate", str(tmp_path / "src"), str(tmp_path / "o"), "--faces", "align"])
    assert result.exit_code == 2 and "pnet.pt" in result.output


def test_weights_found_in_an_installed_package_without_importing_it(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "facenet_pytorch"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('facenet_pytorch must not be imported')\n")
    for name in mtcnn.WEIGHT_FILES:
        (pkg / "data" / name).write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert mtcnn.find_weights() == pkg / "data"
    assert "facenet_pytorch" not in sys.modules


def drawn_face(size: int = 128) -> Image.Image:
    """A cartoon face: head, hair, eyes (centres at 62,69 and 98,69 of 160), nose, mouth."""
    s = size / 160
    img = Image.new("RGB", (size, size), (70, 90, 120))
    draw = ImageDraw.Draw(img)
    draw.ellipse((40 * s, 25 * s, 120 * s, 135 * s), fill=(224, 180, 150))
    draw.chord((36 * s, 15 * s, 124 * s, 80 * s), 180, 360, fill=(60, 40, 30))
    for cx in (62, 98):
        draw.ellipse(((cx - 9) * s, 64 * s, (cx + 9) * s, 74 * s), fill=(250, 250, 250))
        draw.ellipse(((cx - 4) * s, 65 * s, (cx + 4) * s, 73 * s), fill=(60, 40, 30))
        draw.line(((cx - 11) * s, 58 * s, (cx + 9) * s, 56 * s), fill=(70, 50, 40), width=int(3 * s))
    draw.polygon([(80 * s, 72 * s), (73 * s, 98 * s), (87 * s, 98 * s)], fill=(200, 150, 125))
    draw.chord((64 * s, 104 * s, 96 * s, 120 * s), 0, 180, fill=(170, 70, 70))
    return img.filter(ImageFilter.GaussianBlur(1.5 * s))


def test_real_mtcnn_weights_find_a_drawn_face():
    try:
        folder = mtcnn.find_weights()
    except mtcnn.WeightsMissing:
        pytest.skip("MTCNN weights are not installed (facenet-pytorch package or the ganforge cache)")
    faces = mtcnn.load_networks(mtcnn.MTCNN(), folder).detect(drawn_face(128))
    assert len(faces) == 1 and faces[0].score > 0.9
    eyes = faces[0].landmarks[:2]
    np.testing.assert_allclose(eyes, np.array([[62.0, 69.0], [98.0, 69.0]]) * 0.8, atol=4)


# ----------------------------------------------------------------------------------------------------------------
# The job: CSV, contact sheet, CLI.


def make_source(root):
    root.mkdir()
    for i in range(3):
        textured(seed=i).save(root / f"sharp{i}.png")
    textured(seed=5).filter(ImageFilter.GaussianBlur(3)).save(root / "soft.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return root


def test_csv_and_contact_sheet(tmp_path):
    src = make_source(tmp_path / "src")
    dest = tmp_path / "out.zip"
    summary = curate_dataset(src, dest, CurateOptions(resolution=128, blur=10.0, symmetry=0.0))
    assert (summary["read"], summary["kept"], summary["reasons"]) == (5, 3, {"unreadable": 1, "blur": 1})
    csv_path, sheet_path = curate_paths(dest)
    rows = list(csv.DictReader(open(csv_path)))
    assert list(rows[0]) == CSV_COLUMNS
    assert [r["file"] for r in rows] == ["broken.jpg", "sharp0.png", "sharp1.png", "sharp2.png", "soft.png"]
    assert [r["kept"] for r in rows] == ["0", "1", "1", "1", "0"]
    assert rows[0]["blur"] == "" and "unreadable" in rows[0]["reason"]
    assert rows[1]["output"] == "00000/img00000000.png" and rows[1]["faces"] == "" and float(rows[1]["symmetry"]) > 0
    sheet = Image.open(sheet_path)
    assert sheet.width > 2 * 128 and sheet.height > 128  # Two tiles side by side, captions below.
    assert Source(dest).names == ["00000/img00000000.png", "00000/img00000001.png", "00000/img00000002.png"]
    with pytest.raises(CurateError, match="square"):
        curate_dataset(src, tmp_path / "x", CurateOptions(resolution="128x64", faces="align"))


def test_cli_curate_with_blur_only(tmp_path):
    src = make_source(tmp_path / "src")
    dest = tmp_path / "curated"
    result = runner.invoke(dataset_app, ["curate", str(src), str(dest), "--resolution", "128", "--blur", "10", "-q"])
    assert result.exit_code == 0, result.output
    assert "kept 3 of 5" in result.output
    assert len(list(csv.DictReader(open(curate_paths(dest)[0])))) == 5
    assert sorted(p.name for p in (dest / "00000").iterdir()) == [f"img{i:08d}.png" for i in range(3)]
    result = runner.invoke(dataset_app, ["curate", str(src), str(tmp_path / "none"), "--blur", "1e7", "-q"])
    assert result.exit_code == 1 and "all 5 images" in result.output and not (tmp_path / "none").exists()


def test_cli_curate_dry_run_prints_score_percentiles_and_writes_nothing(tmp_path):
    src = make_source(tmp_path / "src")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(dataset_app, ["curate", str(src), "--dry-run", "--blur", "10", "-q"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "dry run, nothing written: these options would keep 3 of 5 images" in out
    assert "blur (--blur)" in out and "10%" in out and "95%" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # No DEST, CSV or contact sheet.
    summary = curate_dataset(src, None, CurateOptions(resolution=128, dry_run=True))
    blur = summary["scores"]["blur"]
    assert summary["kept"] == 4 and list(blur) == ["p5", "p10", "p25", "p50", "p75", "p90", "p95"]
    assert blur["p5"] <= blur["p50"] <= blur["p95"] and "tilt_deg" not in summary["scores"]  # No face step.
    written = curate_dataset(src, tmp_path / "out", CurateOptions(resolution=128))
    assert written["scores"] == summary["scores"]  # A real run reports the same percentiles.
    missing = runner.invoke(dataset_app, ["curate", str(src)])
    assert missing.exit_code == 2 and "DEST is missing" in missing.output and "--dry-run" in missing.output
