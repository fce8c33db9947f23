"""The explorer with a directions file (`--directions`: sliders) and with a StyleGAN3 model (translate x, y and
rotate): the API applies them as `ganforge generate --direction / --translate / --rotate` do, saves commands that
remake the image, refuses what does not fit the model; the page shows the controls only where they apply."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_tiny
from PIL import Image

pytest.importorskip("starlette", reason="the explorer needs starlette: pip install 'ganforge[explore]'")
pytest.importorskip("uvicorn", reason="the explorer needs uvicorn: pip install 'ganforge[explore]'")

from test_explore_api import BASE, LiveServer, pixels, run_cli  # noqa: E402

from ganforge import build_generator, make_plan  # noqa: E402
from ganforge.explore.app import create_app  # noqa: E402
from ganforge.tools.directions import save_directions  # noqa: E402
from ganforge.tools.factorize import ganspace, sefa  # noqa: E402


@pytest.fixture(scope="module")
def models(tiny, tmp_path_factory):
    """{name: path}: the tiny StyleGAN2 and StyleGAN3 checkpoints, a w_dim 32 StyleGAN2, and directions files
    (GANSpace with 10 directions, SeFa with 3) of the tiny StyleGAN2."""
    root = tmp_path_factory.mktemp("explore-dirs")
    torch.manual_seed(0)
    plan = make_plan("tiny", 16, family="stylegan3-r", cmax=8, mapping_layers=1, sg3_layers=4, sg3_critical=1)
    G3 = build_generator(plan).eval()
    with torch.no_grad():
        G3.synthesis.input.affine.weight.normal_(0, 0.1)
    save_directions(ganspace(tiny[0], 10, 500), root / "gs.safetensors")
    save_directions(sefa(tiny[0], None, 3), root / "sefa.safetensors")
    return dict(
        sg2=tiny[1],
        sg3=save_tiny(G3, root / "sg3.safetensors"),
        w32=save_tiny(build_generator(make_plan("tiny", 16, w_dim=32)).eval(), root / "w32.safetensors"),
        gs=root / "gs.safetensors",
        sefa=root / "sefa.safetensors",
    )


def client_for(checkpoint, tmp_path, directions=None):
    from starlette.testclient import TestClient

    app = create_app(checkpoint=checkpoint, device="cpu", save_dir=tmp_path / "saves", directions=directions)
    return TestClient(app, base_url=BASE)


def error_of(reply, status: int) -> str:
    assert reply.status_code == status, reply.text
    message = reply.json()["error"]
    assert "\n" not in message and "Traceback" not in message
    return message


def test_direction_sliders_move_the_image_as_generate_does(models, tmp_path):
    with client_for(models["sg2"], tmp_path, models["gs"]) as c:
        info = c.get("/api/model").json()["directions"]
        assert info["method"] == "ganspace" and info["count"] == 8 and info["file"] == "gs.safetensors"
        assert info["unit"] == "standard deviations" and len(info["values"]) == 8
        plain = pixels(c.get("/api/render", params={"seed": 2}))
        assert np.array_equal(plain, pixels(c.get("/api/render", params={"seed": 2, "dirs": "0,0"})))
        one = {"seed": 2, "dirs": "0,2.5"}
        moved = pixels(c.get("/api/render", params=one))
        assert not np.array_equal(plain, moved)
        two = pixels(c.get("/api/render", params={"seed": 2, "dirs": "1,2.5"}))
        assert not np.array_equal(two, moved)

        # One direction: the saved `ganforge generate` line remakes the image bit for bit.
        record = c.post("/api/save", params=one).json()
        assert "--direction" in record["command"] and record["directions"].endswith("gs.safetensors")
        run_cli(record["command"])
        assert np.array_equal(np.asarray(Image.open(record["command_output"])), moved)

        # Two: only the reproduce command, which reads the recorded directions file.
        record = c.post("/api/save", params={"seed": 2, "dirs": "1,2.5"}).json()
        assert record["command"] is None and "one --direction" in record["command_note"]
        from ganforge.explore.reproduce import main

        out = tmp_path / "again.png"
        main(shlex.split(record["reproduce_command"])[3:] + ["--out", str(out)])
        assert np.array_equal(np.asarray(Image.open(out)), two)


def test_direction_refusals(models, tmp_path):
    with client_for(models["sg2"], tmp_path, models["sefa"]) as c:
        assert c.get("/api/model").json()["directions"]["count"] == 3
        assert "3 sliders" in error_of(c.get("/api/render", params={"dirs": "0,0,0,1"}), 400)
        for bad in ("nan", "1e9", "x", ",".join(["1"] * 65)):
            assert "dirs" in error_of(c.get("/api/render", params={"dirs": bad}), 400)
    with client_for(models["sg2"], tmp_path) as c:  # No --directions.
        assert c.get("/api/model").json()["directions"] is None
        assert "--directions FILE" in error_of(c.get("/api/render", params={"dirs": "1"}), 400)
        assert np.array_equal(pixels(c.get("/api/render", params={"dirs": "0"})), pixels(c.get("/api/render")))
    with client_for(models["w32"], tmp_path, models["sefa"]) as c:  # Directions of a 64-dimensional w.
        info = c.get("/api/model").json()["directions"]
        assert info["count"] == 0 and "w_dim is 32" in info["problem"]
        assert "w_dim is 32" in error_of(c.get("/api/render", params={"dirs": "1"}), 422)
    with pytest.raises(ValueError, match="is a ganforge checkpoint, not a directions file"):
        create_app(checkpoint=models["sg2"], device="cpu", save_dir=tmp_path, directions=models["sg3"])


def test_explore_refuses_a_bad_directions_file_in_one_sentence(models, cli, tmp_path):
    code, _, err = cli("explore", "--checkpoint", models["sg2"], "--directions", tmp_path / "missing.safetensors")
    assert code == 2 and err.count("\n") == 1 and "--directions" in err and "does not exist" in err, err


def test_stylegan3_translate_and_rotate(models, tmp_path):
    with client_for(models["sg3"], tmp_path) as c:
        assert c.get("/api/model").json()["sg3"] is True
        plain = pixels(c.get("/api/render", params={"seed": 1}))
        moves = {"seed": 1, "tx": 0.125, "ty": -0.25, "rotate": 15}
        moved = pixels(c.get("/api/render", params=moves))
        assert not np.array_equal(plain, moved)
        assert np.array_equal(plain, pixels(c.get("/api/render", params={"seed": 1, "tx": 0})))  # Reset after.
        record = c.post("/api/save", params=moves).json()
        assert "--translate=0.125,-0.25" in record["command"] and "--rotate=15.0" in record["command"]
        run_cli(record["command"])
        assert np.array_equal(np.asarray(Image.open(record["command_output"])), moved)
        assert json.loads(Path(record["json"]).read_text())["settings"]["rotate"] == 15
        for bad in ({"tx": "1e308"}, {"ty": "nan"}, {"rotate": "nan"}, {"rotate": 361}):
            (name,) = bad
            assert name in error_of(c.get("/api/render", params=bad), 400)
    with client_for(models["sg2"], tmp_path) as c:
        assert c.get("/api/model").json()["sg3"] is False
        assert "StyleGAN3" in error_of(c.get("/api/render", params={"tx": 0.1}), 400)


def test_the_page_shows_sliders_and_moves_only_where_they_apply(models, tmp_path):
    from test_explore_browser import CHROMIUM, shown

    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium), or set GANFORGE_CHROMIUM")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    sg3_app = create_app(checkpoint=models["sg3"], device="cpu", save_dir=tmp_path / "s3", directions=models["sefa"])
    sg2_app = create_app(checkpoint=models["sg2"], device="cpu", save_dir=tmp_path / "s2")
    with sync_api.sync_playwright() as p, LiveServer(sg3_app) as live3, LiveServer(sg2_app) as live2:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live3.url + "/")
        first = shown(page, seed=0)
        assert page.is_visible("#move-panel") and page.is_visible("#dirs-panel")
        assert page.locator("#dirs input[type=range]").count() == 3
        page.eval_on_selector("#dir-1", "(e) => { e.value = 2; e.dispatchEvent(new Event('input')); }")
        slid = shown(page, dirs="0,2")
        assert slid != first
        page.eval_on_selector("#tx", "(e) => { e.value = 0.25; e.dispatchEvent(new Event('input')); }")
        assert shown(page, dirs="0,2", tx=0.25) != slid
        page.click("#move-reset")
        assert shown(page, dirs="0,2") == slid
        page.screenshot(path=str(tmp_path / "explore-directions.png"), full_page=True)
        page.goto(live2.url + "/")
        shown(page, seed=0)
        assert not page.is_visible("#move-panel") and not page.is_visible("#dirs-panel")
        assert not errors and not page.is_visible("#error")
        browser.close()
