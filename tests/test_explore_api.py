"""The explorer's HTTP API against a tiny in-process model: images, validation, paths, coalescing, saves, runs.

Also the shared fixtures of the browser test (imported there): a tiny checkpoint, a fake run folder, a live server.
"""

from __future__ import annotations

import io
import json
import shlex
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="the explorer needs starlette: pip install 'ganforge[explore]'")
pytest.importorskip("uvicorn", reason="the explorer needs uvicorn: pip install 'ganforge[explore]'")

import ganforge  # noqa: E402
from ganforge.explore.app import create_app  # noqa: E402
from ganforge.explore.coalesce import LatestWins, Superseded  # noqa: E402
from ganforge.explore.runfiles import read_stats  # noqa: E402
from ganforge.explore.state import Limits  # noqa: E402
from ganforge.modelio.checkpoint import save_checkpoint  # noqa: E402

BASE = "http://127.0.0.1"
STATS = [
    {
        "kimg": 0.0,
        "timestamp": 1.0,
        "Loss/G/loss": 2.0,
        "Loss/D/loss": 1.5,
        "Augment/p": 0.0,
        "Timing/sec_per_kimg": 30.0,
    },
    {
        "kimg": 4.0,
        "timestamp": 2.0,
        "Loss/G/loss": 1.2,
        "Loss/D/loss": 1.1,
        "Augment/p": 0.05,
        "Timing/sec_per_kimg": 31.0,
    },
    {
        "kimg": 8.0,
        "timestamp": 3.0,
        "Loss/G/loss": "nan",
        "Loss/D/loss": 0.9,
        "Augment/p": 0.11,
        "Timing/sec_per_kimg": 29.5,
    },
]


def tiny_checkpoint(path: Path, resolution: int = 16) -> Path:
    """A freshly initialised tiny G (w_avg = 0, so ψ = 0 maps every seed to one image) that load_generator reads."""
    torch.manual_seed(0)
    plan = ganforge.make_plan("tiny", resolution)
    G = ganforge.build_generator(plan).eval()
    save_checkpoint(
        path, {f"G_ema.{k}": v for k, v in G.state_dict().items()}, {"kind": "export", "plan": plan.to_dict()}
    )
    return path


def write_png(path: Path, value: int, size: int = 8) -> None:
    Image.fromarray(np.full([size, size, 3], value, np.uint8)).save(path)


def fake_runs(root: Path, stats: list[dict] = STATS) -> Path:
    """runs/exp1: config with schedule strings, stats.jsonl, two snapshots; plus a secret beside the runs root."""
    run = root / "runs" / "exp1"
    run.mkdir(parents=True)
    config = {
        "config": {
            "kimg": 10,
            "preset": "tiny",
            "g_lr": "0.002,0.0002@5",
            "d_lr": 0.002,
            "d_lr_mult": 2.0,
            "gamma": "linear:10,5@8",
        },
        "plan": {"family": "stylegan2", "preset": "tiny", "width": 16, "height": 16},
    }
    (run / "config.json").write_text(json.dumps(config))
    (run / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stats))
    write_png(run / "fakes-000000000000.png", 10)
    write_png(run / "fakes-000000004000.png", 200)
    write_png(run / "fakes_latest.png", 200)
    (root / "secret.txt").write_text("not for the browser")
    (run / "leak.txt").symlink_to(root / "secret.txt")
    outside = root / "outside-run"  # A run reachable only through a link: not listed, not served.
    outside.mkdir()
    (outside / "stats.jsonl").write_text("{}\n")
    (root / "runs" / "linked").symlink_to(outside, target_is_directory=True)
    return root / "runs"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("explore-model") / "tiny.safetensors")


@pytest.fixture
def client(tiny_ckpt, tmp_path):
    from starlette.testclient import TestClient

    app = create_app(checkpoint=tiny_ckpt, runs=fake_runs(tmp_path), device="cpu", save_dir=tmp_path / "saves")
    with TestClient(app, base_url=BASE) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn in a thread on a free localhost port (the real server, as `ganforge explore` runs it)."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def pixels(reply) -> np.ndarray:
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(reply.content)))


# Images.


def test_seed_changes_the_image_and_the_same_seed_repeats(client):
    a, b, a2 = (pixels(client.get("/api/render", params={"seed": s})) for s in (1, 2, 1))
    assert a.shape == (16, 16, 3)
    assert not np.array_equal(a, b)
    assert np.array_equal(a, a2)


def test_psi_zero_gives_one_image_for_every_seed(client):
    a = pixels(client.get("/api/render", params={"seed": 1, "psi": 0}))
    b = pixels(client.get("/api/render", params={"seed": 2, "psi": 0}))
    assert np.array_equal(a, b)


def test_style_mix_changes_the_image_and_all_layers_give_the_second_seed(client):
    num_ws = client.get("/api/model").json()["num_ws"]
    plain = pixels(client.get("/api/render", params={"seed": 1}))
    other = pixels(client.get("/api/render", params={"seed": 9}))
    coarse = pixels(client.get("/api/render", params={"seed": 1, "mix_seed": 9, "mix_from": 0, "mix_to": 2}))
    full = pixels(client.get("/api/render", params={"seed": 1, "mix_seed": 9, "mix_from": 0, "mix_to": num_ws - 1}))
    assert not np.array_equal(coarse, plain) and not np.array_equal(coarse, other)
    assert np.array_equal(full, other)


def test_grid_and_walk(client):
    grid = pixels(client.get("/api/render", params={"seed": 3, "grid": 4}))
    assert grid.shape == (32, 32, 3)  # 2 x 2, as `ganforge generate --grid`.
    start = pixels(client.get("/api/render", params={"seed": 3}))
    assert np.array_equal(grid[:16, :16], start)
    for space in ("z", "w"):
        at0 = pixels(client.get("/api/render", params={"seed": 3, "walk_seed": 8, "walk": 0, "space": space}))
        mid = pixels(client.get("/api/render", params={"seed": 3, "walk_seed": 8, "walk": 0.5, "space": space}))
        end = pixels(client.get("/api/render", params={"seed": 3, "walk_seed": 8, "walk": 1, "space": space}))
        assert np.array_equal(at0, start) and not np.array_equal(mid, start)
        assert np.array_equal(end, pixels(client.get("/api/render", params={"seed": 8})))


BAD = [
    ({"seed": -1}, "seed"),
    ({"seed": 2**32}, "seed"),
    ({"seed": "abc"}, "seed"),
    ({"psi": 3}, "psi"),
    ({"psi": "nan"}, "psi"),
    ({"psi": "inf"}, "psi"),
    ({"noise": "loud"}, "noise"),
    ({"grid": 0}, "grid"),
    ({"grid": 17}, "grid"),
    ({"grid": "many"}, "grid"),
    ({"cutoff": 99}, "cutoff"),
    ({"class": 0}, "class"),
    ({"mix_seed": 1, "mix_from": 0, "mix_to": 99}, "mix_to"),
    ({"mix_seed": 1, "mix_from": 3, "mix_to": 1}, "mix_from"),
    ({"walk_seed": 1, "walk": 2}, "walk"),
    ({"space": "x"}, "space"),
    ({"bogus": 1}, "bogus"),
    ({"seed": 2**32 - 2, "grid": 4}, "grid"),
    ({"model": "nope"}, "model"),
]


@pytest.mark.parametrize("params, named", BAD)
def test_bad_parameters_are_4xx_with_a_sentence(client, params, named):
    reply = client.get("/api/render", params=params)
    assert 400 <= reply.status_code < 500, reply.text
    message = reply.json()["error"]
    assert named in message and len(message) > 20


def test_refusals_that_are_not_ranges(client, tiny_ckpt, tmp_path):
    from starlette.testclient import TestClient

    assert client.get("/api/render?seed=1&seed=2").status_code == 400
    assert client.post("/api/save", params={"psi": 9}).status_code == 400
    assert client.get("/api/nothing").json()["error"]
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding.
    assert client.get("/api/render", headers={"sec-fetch-site": "cross-site"}).status_code == 403
    assert client.post("/api/save", headers={"origin": "http://evil.example"}).status_code == 403
    assert client.post("/api/save", headers={"origin": BASE}).status_code == 200
    capped = create_app(checkpoint=tiny_ckpt, device="cpu", save_dir=tmp_path / "s", limits=Limits(max_pixels=16 * 40))
    with TestClient(capped, base_url=BASE) as c:
        reply = c.get("/api/render", params={"grid": 4})
        assert reply.status_code == 413 and "grid=2 or fewer" in reply.json()["error"]
    tiny_cap = create_app(checkpoint=tiny_ckpt, device="cpu", save_dir=tmp_path / "s", limits=Limits(max_pixels=100))
    with TestClient(tiny_cap, base_url=BASE) as c:
        reply = c.get("/api/model")
        assert reply.status_code == 413 and "16x16" in reply.json()["error"]


# Files and paths.


@pytest.mark.parametrize(
    "path",
    [
        "../secret.txt",
        "../../secret.txt",
        "sub/../../secret.txt",
        "/etc/passwd",
        "C:\\Windows\\win.ini",
        "..\\secret.txt",
        "leak.txt",
        "%2e%2e/secret.txt",
        "",
    ],
)
def test_paths_out_of_the_run_are_refused(client, path):
    reply = client.get("/api/run/file", params={"id": "exp1", "path": path})
    assert reply.status_code in (400, 403, 404), reply.text
    assert "not for the browser" not in reply.text and reply.json()["error"]


def test_files_inside_a_run_are_served_and_run_ids_are_looked_up(client):
    reply = client.get("/api/run/file", params={"id": "exp1", "path": "fakes-000000004000.png"})
    assert np.asarray(Image.open(io.BytesIO(reply.content)))[0, 0, 0] == 200
    for run_id in ("..", "../runs/exp1", "/tmp", "exp2", "linked", "."):
        assert client.get("/api/run", params={"id": run_id}).status_code == 404


# Runs.


def test_runs_list_info_and_schedules(client):
    runs = client.get("/api/runs").json()["runs"]
    assert [r["id"] for r in runs] == ["exp1"]
    reply = client.get("/api/run", params={"id": "exp1"})
    info = reply.json()
    assert [s["file"] for s in info["snapshots"]] == ["fakes-000000000000.png", "fakes-000000004000.png"]
    sched = {s["name"]: s for s in info["schedules"]}
    assert sched["g_lr"]["mode"] == "step" and sched["g_lr"]["points"] == [[0.0, 0.002], [5.0, 0.0002]]
    assert sched["gamma"]["mode"] == "linear" and sched["gamma"]["text"] == "linear:10,5@8"
    assert sched["d_lr"]["points"] == [[0.0, 0.004]]  # d_lr × d_lr_mult.
    again = client.get("/api/run", params={"id": "exp1"}, headers={"if-none-match": reply.headers["etag"]})
    assert again.status_code == 304


def test_stats_by_offset_return_only_new_complete_lines(client, tmp_path):
    first = client.get("/api/run/stats", params={"id": "exp1"}).json()
    assert [r["kimg"] for r in first["records"]] == [0.0, 4.0, 8.0]
    stats = tmp_path / "runs" / "exp1" / "stats.jsonl"
    with open(stats, "a") as f:
        f.write(json.dumps({"kimg": 12.0, "Loss/G/loss": 1.0}) + "\n" + '{"kimg": 16.0, "Loss/G')  # Half a line.
    second = client.get("/api/run/stats", params={"id": "exp1", "since": first["offset"]}).json()
    assert [r["kimg"] for r in second["records"]] == [12.0] and not second["reset"]
    stats.write_text(json.dumps({"kimg": 0.5}) + "\n")  # A new run in the same folder: the file shrank.
    third = client.get("/api/run/stats", params={"id": "exp1", "since": second["offset"]}).json()
    assert third["reset"] and [r["kimg"] for r in third["records"]] == [0.5]
    assert client.get("/api/run/stats", params={"id": "exp1", "since": -1}).status_code == 400
    stats.write_text("".join(json.dumps({"kimg": k}) + "\n" for k in range(10)))
    page = read_stats(stats.parent, 0, max_bytes=40)  # A long file comes in pages.
    assert page["more"] and [r["kimg"] for r in page["records"]] == [0, 1, 2]
    rest = read_stats(stats.parent, page["offset"])
    assert not rest["more"] and [r["kimg"] for r in rest["records"]] == list(range(3, 10))


# Coalescing.


def test_latest_wins_runs_only_the_running_and_the_newest_job():
    worker, ran = LatestWins(), []
    gate = threading.Event()
    first = worker.submit(lambda: (gate.wait(5), ran.append(0)))
    time.sleep(0.05)
    futures = [worker.submit(lambda i=i: ran.append(i)) for i in range(1, 50)]
    gate.set()
    assert futures[-1].result(5) is None
    first.result(5)
    assert ran == [0, 49]
    assert all(isinstance(f.exception(5), Superseded) for f in futures[:-1])
    worker.close()


def http_get(url: str) -> tuple[int, bytes]:
    """(status, body) from a plain GET; 4xx replies are answers here, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_burst_of_200_requests_coalesces_and_the_server_stays_up(tiny_ckpt, tmp_path):
    app = create_app(checkpoint=tiny_ckpt, device="cpu", save_dir=tmp_path / "saves")
    with LiveServer(app) as server:
        assert http_get(f"{server.url}/api/model")[0] == 200  # Load the model before the burst.

        def drag(i: int) -> int:  # A slider dragged through 200 seeds by 8 impatient clients.
            return http_get(f"{server.url}/api/render?seed={i}&grid=16")[0]

        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(drag, range(200)))
        elapsed = time.perf_counter() - t0
        status = json.loads(http_get(f"{server.url}/api/status")[1])
        assert set(codes) <= {200, 409} and codes.count(409) > 0
        assert status["renders"] == codes.count(200) and status["renders"] < 100, (status, elapsed)
        print(f"burst: {len(codes)} requests in {elapsed:.2f} s, {status['renders']} renders")
        assert http_get(f"{server.url}/api/render?seed=3")[0] == 200
    assert elapsed < 30


# Saves.


def run_cli(command: str) -> None:
    from typer.testing import CliRunner

    from ganforge.cli import app

    args = shlex.split(command)
    assert args[:2] == ["ganforge", "generate"]
    result = CliRunner().invoke(app, args[1:])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "params",
    [{"seed": 5, "psi": 0.7, "cutoff": 3}, {"seed": 11, "grid": 4, "psi": -0.35}, {"seed": 2, "noise": "none"}],
)
def test_save_writes_png_and_json_that_ganforge_generate_reproduces(client, params):
    record = client.post("/api/save", params=params).json()
    saved = np.asarray(Image.open(record["png"]))
    meta = json.loads(Path(record["json"]).read_text())
    assert meta["settings"]["seed"] == params["seed"] and meta["command"] == record["command"]
    assert np.array_equal(saved, pixels(client.get("/api/render", params=params)))
    run_cli(meta["command"])
    assert np.array_equal(np.asarray(Image.open(meta["command_output"])), saved)


def test_walks_and_mixes_save_a_reproduce_command(client):
    from ganforge.explore.reproduce import main

    params = {"seed": 4, "walk_seed": 7, "walk": 0.3, "space": "w", "mix_seed": 1, "mix_from": 2, "mix_to": 4}
    record = client.post("/api/save", params=params).json()
    assert record["command"] is None and "reproduce_command" in record
    again = client.post("/api/save", params=params).json()
    assert again["png"] != record["png"]  # Never overwrites.
    args = shlex.split(record["reproduce_command"])
    assert args[:3] == ["python", "-m", "ganforge.explore.reproduce"]
    out = Path(record["png"]).with_name("again.png")
    main(args[3:] + ["--out", str(out)])
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(record["png"])))


# Other models and the command.


def test_conditional_and_dcgan_models(tmp_path):
    from starlette.testclient import TestClient

    torch.manual_seed(0)
    cond_plan = ganforge.make_plan("tiny", 16, c_dim=3)
    dcgan_plan = ganforge.make_plan("tiny", 16, family="dcgan")
    for plan, name in ((cond_plan, "cond"), (dcgan_plan, "dcgan")):
        G = ganforge.build_generator(plan).eval()
        save_checkpoint(
            tmp_path / f"{name}.safetensors",
            {f"G_ema.{k}": v for k, v in G.state_dict().items()},
            {"kind": "export", "plan": plan.to_dict()},
        )
    app = create_app(checkpoint=tmp_path / "cond.safetensors", device="cpu", save_dir=tmp_path / "s")
    with TestClient(app, base_url=BASE) as c:
        assert c.get("/api/model").json()["c_dim"] == 3
        assert "pass class=0..2" in c.get("/api/render", params={"seed": 1}).json()["error"]
        assert c.get("/api/render", params={"seed": 1, "class": 3}).status_code == 400
        a, b = (pixels(c.get("/api/render", params={"seed": 1, "class": k})) for k in (0, 2))
        assert not np.array_equal(a, b)
    app = create_app(checkpoint=tmp_path / "dcgan.safetensors", device="cpu", save_dir=tmp_path / "s")
    with TestClient(app, base_url=BASE) as c:
        assert not c.get("/api/model").json()["stylegan"]
        assert pixels(c.get("/api/render", params={"seed": 1, "grid": 4})).shape == (32, 32, 3)
        assert "DCGAN" in c.get("/api/render", params={"seed": 1, "psi": 0.5}).json()["error"]


def test_explore_command_prints_the_url_and_refuses_bad_options(tiny_ckpt, tmp_path, monkeypatch):
    import typer
    import uvicorn
    from typer.testing import CliRunner

    from ganforge.explore.cli import explore

    app = typer.Typer()
    app.command()(explore)
    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda asgi, host, port, **kw: started.update(host=host, port=port))
    port = free_port()
    result = CliRunner().invoke(
        app, ["--checkpoint", str(tiny_ckpt), "--port", str(port), "--save-dir", str(tmp_path / "s")]
    )
    assert result.exit_code == 0, result.output
    assert f"http://127.0.0.1:{port}/" in result.output and started == {"host": "127.0.0.1", "port": port}
    assert CliRunner().invoke(app, []).exit_code == 2
    missing = CliRunner().invoke(app, ["--checkpoint", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code == 2 and "not a file" in missing.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = CliRunner().invoke(app, ["--checkpoint", str(tiny_ckpt), "--port", str(busy.getsockname()[1])])
        assert taken.exit_code == 2 and "already in use" in taken.output
