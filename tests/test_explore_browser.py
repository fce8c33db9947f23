"""The explorer's pages in headless Chromium (Playwright driving the system chromium, no browser download).

Screenshots are kept as artifacts: <pytest tmp_path>/explore-model.png and explore-runs.png.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the explorer needs starlette: pip install 'ganforge[explore]'")
pytest.importorskip("uvicorn", reason="the explorer needs uvicorn: pip install 'ganforge[explore]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")

from test_explore_api import LiveServer, fake_runs, tiny_checkpoint  # noqa: E402

from ganforge.explore.app import create_app  # noqa: E402

CHROMIUM = os.environ.get("GANFORGE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (apt-get install -y chromium), or set GANFORGE_CHROMIUM to a Chromium binary",
)
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore-browser")
    app = create_app(
        checkpoint=tiny_checkpoint(root / "tiny.safetensors"),
        runs=fake_runs(root),
        device="cpu",
        save_dir=root / "saves",
    )
    with LiveServer(app) as live:
        live.runs = root / "runs"
        yield live


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def shown(page, **expect) -> str:
    """Wait until the image shows a reply to the current settings containing `expect`; returns its pixel digest."""
    page.wait_for_function(
        """(want) => {
            const img = document.getElementById('view');
            if (img.dataset.pending !== '0' || !img.dataset.digest) return false;
            const q = new URLSearchParams(img.dataset.query);
            return Object.entries(want).every(([k, v]) => q.get(k) === String(v));
        }""",
        arg=expect,
        timeout=TIMEOUT_MS,
    )
    return page.get_attribute("#view", "data-digest")


def test_model_page_seed_psi_and_style_mix(server, browser, tmp_path):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")
    first = shown(page, seed=0)
    page.fill("#seed", "1")
    seed1 = shown(page, seed=1)
    assert seed1 != first  # Changing the seed changes the image.

    page.fill("#psi", "0")
    psi0_seed1 = shown(page, seed=1, psi=0)
    page.fill("#seed", "2")
    assert shown(page, seed=2, psi=0) == psi0_seed1  # ψ = 0: every seed is w_avg.

    page.fill("#psi", "1")
    plain = shown(page, seed=2, psi=1)
    page.check("#mix-on")
    page.fill("#mix-seed", "7")
    page.eval_on_selector("#mix-to", "(e) => { e.value = 3; e.dispatchEvent(new Event('input')); }")
    mixed = shown(page, seed=2, mix_seed=7, mix_to=3)
    assert mixed != plain  # The second seed took over ws 0..3.
    assert page.text_content("#mix-to-out").startswith("3 (")

    page.click("h1")  # Focus off the inputs: arrows then walk latent space instead of moving a slider.
    page.keyboard.press("ArrowUp")
    assert shown(page, seed=3) != mixed  # Arrow keys move through latent space.

    page.click("#save")
    page.wait_for_function("() => document.getElementById('saved').textContent.startsWith('saved')", timeout=TIMEOUT_MS)
    assert Path(page.get_attribute("#saved", "data-json")).is_file()
    page.screenshot(path=str(tmp_path / "explore-model.png"), full_page=True)
    assert not page.is_visible("#error") and not errors
    page.close()


def test_runs_page_draws_curves_and_snapshots(server, browser, tmp_path):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/runs")
    page.wait_for_selector("figure.chart svg path.line", timeout=TIMEOUT_MS)
    d = page.get_attribute("figure.chart svg path.line[data-series='Loss/D/loss']", "d")
    assert d.startswith("M") and d.count("L") == 2  # Three ticks of Loss/D/loss.
    assert page.locator("figure.chart figcaption", has_text="ADA p").count() == 1
    assert "0.002,0.0002@5" in page.text_content("#schedules")
    assert "0.11" in page.text_content("#summary")  # The latest ADA p.
    page.wait_for_function("() => document.getElementById('snap-img').naturalWidth > 0", timeout=TIMEOUT_MS)
    assert "4 kimg" in page.text_content("#snap-out")
    with open(server.runs / "exp1" / "stats.jsonl", "a") as f:  # Training goes on: the page polls and redraws.
        f.write('{"kimg": 12.0, "Loss/G/loss": 0.8, "Loss/D/loss": 0.7, "Schedule/g_lr": 0.0002}\n')
    page.wait_for_function(
        """() => (document.querySelector("path.line[data-series='Loss/D/loss']").getAttribute('d').match(/L/g) || [])
                 .length === 3""",
        timeout=TIMEOUT_MS,
    )
    # The learning rate logged at each tick is drawn beside the planned schedule, not as a chart of its own.
    page.wait_for_selector("#schedule-charts path.line[data-series='in force']", state="attached", timeout=TIMEOUT_MS)
    assert page.locator("#charts figcaption", has_text="Schedule/").count() == 0
    page.screenshot(path=str(tmp_path / "explore-runs.png"), full_page=True)
    assert Path(tmp_path / "explore-runs.png").stat().st_size > 0 and not errors
    page.close()


def test_runs_page_shows_a_broken_run_beside_a_good_one(browser, tmp_path):
    runs = fake_runs(tmp_path)
    broken = runs / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"config": "hello"}')
    (broken / "stats.jsonl").write_bytes(b'{"kimg": 0, "Loss/G/loss": 1}\nnot json\n{"kimg": 1, "Loss/G/loss": NaN}\n')
    with LiveServer(create_app(runs=runs, device="cpu", save_dir=tmp_path / "saves")) as live:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live.url + "/runs?id=broken")
        page.wait_for_selector("#problems li", timeout=TIMEOUT_MS)
        problems = page.text_content("#problems")
        assert "'config' is a string" in problems and "1 line(s) skipped" in problems
        series = "path.line[data-series='Loss/G/loss']"  # Its stats still draw (a lone point has no visible line).
        page.wait_for_selector(series, state="attached", timeout=TIMEOUT_MS)
        assert "broken: config.json" in page.text_content("#runs a.broken")
        assert page.locator("#runs a.broken").count() == 1
        page.click("#runs a[href='/runs?id=exp1']")
        page.wait_for_selector("path.line[data-series='Loss/D/loss']", timeout=TIMEOUT_MS)
        page.wait_for_function("() => document.getElementById('problems').hidden", timeout=TIMEOUT_MS)
        assert not page.is_visible("#error") and not errors
        page.close()
