"""The explorer beside broken run folders: every way a run can be broken, listed with its reason.

A broken run is listed beside the good ones and answers 200 with the reason; bad stats lines are skipped and
counted; runs offer only checkpoints that check; and no request, whatever the files on disk, gets a 500.
(Unusable --checkpoint files, the model cache and the save limits: test_explore_limits.py.)
"""

from __future__ import annotations

import errno
import json
import os
import random
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the explorer needs starlette: pip install 'ganforge[explore]'")

from starlette.testclient import TestClient  # noqa: E402
from test_explore_api import BASE, STATS, fake_runs, tiny_checkpoint, write_png  # noqa: E402

import ganforge  # noqa: E402
from ganforge.explore.app import create_app  # noqa: E402
from ganforge.explore.runfiles import read_stats  # noqa: E402
from ganforge.modelio.checkpoint import save_checkpoint  # noqa: E402

GOOD_CONFIG = {
    "config": {"kimg": 10, "preset": "tiny", "g_lr": 0.002},
    "plan": {"family": "stylegan2", "preset": "tiny"},
}
STATS_TEXT = "".join(json.dumps(r) + "\n" for r in STATS)

# config.json contents that make a run broken, and a phrase its reason must contain.
BROKEN_CONFIGS = {
    "cfg-missing": (None, "config.json is missing"),
    "cfg-notjson": (b'{"config": {"kimg": 10', "not valid JSON"),
    "cfg-list": (b"[1, 2]", "holds a list"),
    "cfg-hello": (b'{"config": "hello"}', "'config' is a string"),
    "cfg-kimg": (b'{"config": {"kimg": "x"}}', "config.kimg"),
    "cfg-plan": (b'{"plan": [1]}', "'plan' is a list"),
    "cfg-nan": (b'{"config": {"kimg": NaN}}', "config.kimg"),
    "cfg-schedule": (b'{"config": {"g_lr": {"a": 1}}}', "config.g_lr"),
    "cfg-width": (b'{"plan": {"width": -3}}', "plan.width"),
    "cfg-bigint": (b'{"config": {"kimg": ' + b"9" * 400 + b"}}", "config.kimg"),
    "cfg-deep": (b"[" * 100_000, "nested too deeply"),
    "cfg-binary": (bytes(range(256)) * 4, "not valid JSON"),
}
# Lines of a stats.jsonl being written: 3 usable records, 8 bad lines, a half-written last line.
STATS_LINES = [
    b'{"kimg": 0, "Loss/G/loss": 1.0}',
    b"not json",
    b"[1, 2]",
    b'"text"',
    b'{"kimg": "x"}',
    b'{"kimg": NaN}',
    b'{"kimg": 1, "a": Infinity, "b": "hello", "c": [1], "d": 1e999, "e": -Infinity, "f": NaN, "g": 2.5}',
    b"\xff\xfe\x00garbage",
    b"[" * 50_000,
    b"1" * 5000,
    b'{"kimg": 2, "z": 3, "big": ' + b"9" * 400 + b"}",
]
METRIC_LINES = [
    b"nope",
    b"[1]",
    b'{"results": "x"}',
    b'{"results": {"fid50k_full": NaN}}',
    b'{"results": {"fid50k_full": 12.5}, "snapshot": "checkpoint-000000004000.safetensors"}',
    b'{"snapshot": 5, "results": {"fid50k_full": 11}}',
]


def new_run(
    root: Path, name: str, config: bytes | None = json.dumps(GOOD_CONFIG).encode(), stats: bytes = STATS_TEXT.encode()
) -> Path:
    run = root / name
    run.mkdir()
    if config is not None:
        (run / "config.json").write_bytes(config)
    (run / "stats.jsonl").write_bytes(stats)
    return run


def mismatched_checkpoint(path: Path) -> Path:
    """A header that reads and a valid Plan (32 px) over tensors of another model (16 px): only loading finds it."""
    G = ganforge.build_generator(ganforge.make_plan("tiny", 16))
    save_checkpoint(
        path,
        {f"G_ema.{k}": v for k, v in G.state_dict().items()},
        {"kind": "export", "plan": ganforge.make_plan("tiny", 32).to_dict()},
    )
    return path


def big_header(path: Path) -> Path:
    """A sparse file whose safetensors header claims 20 MB: the explorer does not parse it."""
    with open(path, "wb") as f:
        f.write((20 * 2**20).to_bytes(8, "little") + b'{"')
        f.truncate(21 * 2**20)
    return path


def add_broken_config_runs(root: Path) -> None:
    for name, (config, _) in BROKEN_CONFIGS.items():
        new_run(root, name, config)
    with open(new_run(root, "cfg-huge", None) / "config.json", "wb") as f:  # Sparse: 5 MB that cost nothing.
        f.write(b'{"config": {}, "pad": "')
        f.truncate(5 * 2**20)
    (new_run(root, "cfg-loop", None) / "config.json").symlink_to("config.json")
    (new_run(root, "cfg-dir", None) / "config.json").mkdir()
    os.mkfifo(new_run(root, "cfg-fifo", None) / "config.json")
    (root.parent / "elsewhere.json").write_text(json.dumps(GOOD_CONFIG))
    (new_run(root, "cfg-outside", None) / "config.json").symlink_to(root.parent / "elsewhere.json")


def add_broken_file_runs(root: Path, good_ckpt: Path) -> None:
    run = new_run(root, "stats-bad", stats=b"\n".join(STATS_LINES) + b'\n{"kimg": 3, "Lo')
    (run / "metric-fid50k_full.jsonl").write_bytes(b"\n".join(METRIC_LINES) + b'\n{"results": {"fid')
    write_png(run / ("fakes-" + "9" * 200 + ".png"), 7)  # Not a snapshot name: no kimg overflow.
    (run / "fakes-000000001000.png").symlink_to("fakes-000000001000.png")  # A loop, named like a snapshot.
    stats_fifo = new_run(root, "stats-fifo")
    (stats_fifo / "stats.jsonl").unlink()
    os.mkfifo(stats_fifo / "stats.jsonl")
    (new_run(root, "stats-loop") / "stats.jsonl").unlink()
    (root / "stats-loop" / "stats.jsonl").symlink_to("stats.jsonl")
    damaged = new_run(root, "ckpt-damaged")
    (damaged / "checkpoint-000000001000.safetensors").write_bytes(random.Random(0).randbytes(4096))
    fallback = new_run(root, "ckpt-fallback")
    (fallback / "checkpoint-000000001000.safetensors").write_bytes(good_ckpt.read_bytes())
    (fallback / "checkpoint-000000002000.safetensors").write_bytes(good_ckpt.read_bytes()[:3000])
    many = new_run(root, "ckpt-many")  # Headers that read over tensors that do not fit: never built.
    first = mismatched_checkpoint(many / "checkpoint-000000000000.safetensors")
    for k in range(1, 20):
        (many / f"checkpoint-{k:012d}.safetensors").write_bytes(first.read_bytes())
    rot = bytearray(good_ckpt.read_bytes())  # A flipped bit in the weights: only loading (the checksum) finds it.
    rot[-100] ^= 1
    (new_run(root, "ckpt-bitrot") / "checkpoint-000000001000.safetensors").write_bytes(rot)
    big_header(new_run(root, "ckpt-bighead") / "checkpoint-000000001000.safetensors")
    (root / "loopdir").symlink_to("loopdir")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, Path]:
    """(runs root, good checkpoint): exp1 is a good run with a checkpoint; every other run is broken."""
    base = tmp_path_factory.mktemp("explore-robust")
    good = tiny_checkpoint(base / "tiny.safetensors")
    runs = fake_runs(base)
    (runs / "exp1" / "checkpoint-000000004000.safetensors").write_bytes(good.read_bytes())
    add_broken_config_runs(runs)
    add_broken_file_runs(runs, good)
    return runs, good


@pytest.fixture
def client(tree, tmp_path):
    runs, good = tree
    app = create_app(checkpoint=good, runs=runs, device="cpu", save_dir=tmp_path / "saves")
    with TestClient(app, base_url=BASE) as c:
        yield c


def listing(client) -> dict[str, dict]:
    reply = client.get("/api/runs")
    assert reply.status_code == 200, reply.text
    return {r["id"]: r for r in reply.json()["runs"]}


# Runs.


def test_a_broken_run_folder_beside_a_good_one(client):
    runs = listing(client)
    assert runs["exp1"]["broken"] is None and runs["exp1"]["target_kimg"] == 10
    expected = {name: phrase for name, (_, phrase) in BROKEN_CONFIGS.items()} | {
        "cfg-huge": "over 4 MB",
        "cfg-loop": "cannot be opened",
        "cfg-dir": "not a regular file",
        "cfg-fifo": "not a regular file",
        "cfg-outside": "outside the run folder",
        "stats-fifo": "stats.jsonl is not a regular file",
        "stats-loop": "stats.jsonl cannot be opened",
        "ckpt-damaged": "checkpoint-000000001000.safetensors",
        "ckpt-fallback": "checkpoint-000000002000",
        "ckpt-many": "G_ema in checkpoint-000000000019.safetensors",
        "ckpt-bighead": "header of 20 MB",
    }
    for name, phrase in expected.items():
        assert phrase in (runs[name]["broken"] or ""), (name, runs[name]["broken"])
    assert set(expected) | {"exp1", "stats-bad", "ckpt-bitrot"} == set(runs)
    assert "all unusable" in client.get("/api/run", params={"id": "ckpt-many"}).json()["problems"][-1]
    info = client.get("/api/run", params={"id": "exp1"}).json()  # The good run is whole.
    assert info["broken"] is None and [s["name"] for s in info["schedules"]] == ["g_lr", "d_lr", "gamma"]
    assert len(client.get("/api/run/stats", params={"id": "exp1"}).json()["records"]) == 3


@pytest.mark.parametrize("name", sorted(BROKEN_CONFIGS) + ["cfg-huge", "cfg-loop", "cfg-fifo", "cfg-outside"])
def test_a_broken_run_answers_200_with_its_reason_and_its_stats(client, name):
    info = client.get("/api/run", params={"id": name})
    assert info.status_code == 200, info.text
    assert info.json()["broken"] and info.json()["config"] == {} and info.json()["schedules"] == []
    stats = client.get("/api/run/stats", params={"id": name}).json()
    assert [r["kimg"] for r in stats["records"]] == [0.0, 4.0, 8.0]


def test_bad_stats_lines_are_skipped_and_counted(client):
    reply = client.get("/api/run/stats", params={"id": "stats-bad"})
    data = json.loads(reply.text)  # Strict JSON: a NaN token would not parse in the browser.
    assert [r["kimg"] for r in data["records"]] == [0, 1, 2] and data["skipped"] == 8
    assert data["records"][1] == {"kimg": 1, "a": "inf", "d": "inf", "e": "-inf", "f": "nan", "g": 2.5}
    assert data["records"][2] == {"kimg": 2, "z": 3}  # A 400-digit integer is no value to draw.
    assert data["skip_reason"] == f"the line at byte {len(STATS_LINES[0]) + 1} is not JSON (Expecting value)"
    half = data["offset"]  # The half-written last line waits for the next poll.
    assert half == sum(len(line) + 1 for line in STATS_LINES)
    assert client.get("/api/run/stats", params={"id": "stats-bad", "since": half}).json()["records"] == []
    info = client.get("/api/run", params={"id": "stats-bad"}).json()
    assert info["metrics"] == {"fid50k_full": [[4.0, 12.5], [5.0, 11.0]]}
    assert info["problems"] == ["metric-fid50k_full.jsonl: 3 line(s) are not metric records and were skipped"]
    assert [s["file"] for s in info["snapshots"]] == ["fakes-000000001000.png"]
    loop = client.get("/api/run/file", params={"id": "stats-bad", "path": "fakes-000000001000.png"})
    assert loop.status_code in (403, 404) and loop.json()["error"]
    for name in ("stats-fifo", "stats-loop"):
        data = client.get("/api/run/stats", params={"id": name}).json()
        assert data["records"] == [] and "stats.jsonl" in data["problem"]


def test_a_line_longer_than_a_reply_is_stepped_over(tmp_path):
    run = new_run(tmp_path, "long", stats=b'{"kimg": 0, "pad": "' + b"x" * 500 + b'"}\n{"kimg": 1}\n')
    records, skipped, offset = [], 0, 0
    for _ in range(20):
        page = read_stats(run, offset, max_bytes=128)
        records += page["records"]
        skipped += page["skipped"]
        offset = page["offset"]
        if not page["more"]:
            break
    assert [r["kimg"] for r in records] == [1] and skipped >= 1 and offset == (run / "stats.jsonl").stat().st_size


def test_metric_files_are_read_from_their_newest_lines_within_bounds(tmp_path, monkeypatch):
    import ganforge.explore.runfiles as runfiles
    from ganforge.explore.runs import nimg_of

    run = new_run(tmp_path, "metrics")
    lines = [
        json.dumps({"results": {"fid": float(k)}, "snapshot": f"checkpoint-{k * 1000:012d}.safetensors"})
        for k in range(100)
    ]
    (run / "metric-fid.jsonl").write_text("\n".join(lines) + "\n")
    (run / "metric-kid.jsonl").write_text(lines[0] + "\n")
    monkeypatch.setattr(runfiles, "MAX_METRIC_BYTES", 3 * len(lines[-1]))
    monkeypatch.setattr(runfiles, "MAX_METRIC_FILES", 1)
    series, problems = runfiles.read_metrics(run, nimg_of)
    assert series == {"fid": [[98.0, 98.0], [99.0, 99.0]]}  # The window's cut first line is left out, not "bad".
    assert problems == ["the run has 2 metric-*.jsonl files: only the first 1 are shown"]


def test_an_unreadable_run_folder_is_listed_as_broken(client, tree, monkeypatch):
    runs, _ = tree
    locked = runs / "cfg-missing"
    scandir = os.scandir

    def refuse(path="."):
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    found = listing(client)
    assert "cannot be read (Permission denied)" in found["cfg-missing"]["broken"] and found["exp1"]["broken"] is None
    info = client.get("/api/run", params={"id": "cfg-missing"})
    assert info.status_code == 200 and "Permission denied" in info.json()["broken"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder: permissions cannot be tested as root")
def test_a_folder_without_permissions(tmp_path):
    runs = fake_runs(tmp_path)
    locked = new_run(runs, "locked")
    locked.chmod(0)
    try:
        app = create_app(runs=runs, device="cpu", save_dir=tmp_path / "s")
        with TestClient(app, base_url=BASE) as c:
            assert "Permission denied" in listing(c)["locked"]["broken"]
            assert c.get("/api/run/stats", params={"id": "locked"}).status_code == 200
    finally:
        locked.chmod(0o755)


# Checkpoints.


def test_runs_offer_only_checkpoints_that_check_and_load_nothing_up_front(client):
    t0 = time.perf_counter()
    keys = {m["key"]: m["label"] for m in client.get("/api/models").json()["models"]}
    assert time.perf_counter() - t0 < 5
    assert client.get("/api/status").json()["models_loaded"] == []
    assert keys["exp1"] == "exp1 / checkpoint-000000004000.safetensors"
    assert keys["ckpt-fallback"] == "ckpt-fallback / checkpoint-000000001000.safetensors"
    assert "ckpt-damaged" not in keys and "ckpt-many" not in keys and "ckpt-bitrot" in keys
    reply = client.get("/api/model", params={"model": "ckpt-damaged"})
    assert reply.status_code == 404 and "checkpoint-000000001000.safetensors" in reply.json()["error"]
    reply = client.get("/api/model", params={"model": "ckpt-many"})
    assert reply.status_code == 404 and "checkpoint-000000000019.safetensors" in reply.json()["error"]
    reply = client.get("/api/model", params={"model": "ckpt-bitrot"})
    assert reply.status_code == 422 and "checksum" in reply.json()["error"]
    assert client.get("/api/model", params={"model": "ckpt-fallback"}).status_code == 200


def test_running_out_of_memory_is_507_with_a_sentence(client, monkeypatch):
    import ganforge.explore.app as app_module
    import ganforge.explore.render as render_module

    def cpu_oom(*args, **kwargs):  # What torch's CPU allocator raises (a RuntimeError, not a MemoryError).
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(app_module, "render", cpu_oom)
    for reply in (client.get("/api/render", params={"seed": 1}), client.post("/api/save")):
        assert reply.status_code == 507 and "not enough memory" in reply.json()["error"]
    monkeypatch.setattr(render_module, "load_generator", cpu_oom)
    reply = client.get("/api/model", params={"model": "exp1"})
    assert reply.status_code == 507 and "not enough memory to load checkpoint-000000004000" in reply.json()["error"]


# Everything at once.


def test_no_request_about_broken_files_gets_a_500(client):
    ids = list(listing(client)) + ["..", "loopdir", "nope", "", "x" * 5000]
    models = [m["key"] for m in client.get("/api/models").json()["models"]] + ids
    paths = [
        "config.json",
        "stats.jsonl",
        "fakes-000000001000.png",
        "fakes-000000000000.png",
        "metric-x.jsonl",
        "checkpoint-000000001000.safetensors",
        "../secret.txt",
        "x" * 5000 + ".png",
    ]
    requests = [
        ("get", "/", {}),
        ("get", "/runs", {}),
        ("get", "/api/status", {}),
        ("get", "/api/models", {}),
        ("get", "/api/runs", {}),
        ("get", "/static/runs.js", {}),
    ]
    for run_id in ids:
        requests += [
            ("get", "/api/run", {"id": run_id}),
            ("get", "/api/run/stats", {"id": run_id}),
            ("get", "/api/run/stats", {"id": run_id, "since": 10**30}),
            ("get", "/api/run/stats", {"id": run_id, "since": "9" * 5000}),
        ]
        requests += [("get", "/api/run/file", {"id": run_id, "path": p}) for p in paths]
    for key in models:
        requests += [
            ("get", "/api/model", {"model": key}),
            ("get", "/api/render", {"model": key, "seed": 1}),
            ("post", "/api/save", {"model": key, "seed": 1}),
        ]
    codes = {}
    for method, url, params in requests:
        reply = getattr(client, method)(url, params=params)
        codes[reply.status_code] = codes.get(reply.status_code, 0) + 1
        assert reply.status_code < 500, (url, params, reply.text[:300])
        if reply.status_code >= 400:
            assert len(reply.json()["error"]) > 20, (url, params, reply.text)
    assert codes[200] > 50 and codes.get(404, 0) > 10 and codes.get(422, 0) >= 3, codes
