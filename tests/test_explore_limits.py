"""The explorer's limits: checkpoints that cannot be used (422 with a sentence), the model cache, the saves.

A file named by --checkpoint is loaded only when a page asks for it; every way it can be unusable is a 4xx that
names the file. Loaded models and saved files are bounded per server session.
"""

from __future__ import annotations

import errno
import pickle
import random
from pathlib import Path

import pytest
import torch

pytest.importorskip("starlette", reason="the explorer needs starlette: pip install 'ganforge[explore]'")

from starlette.testclient import TestClient  # noqa: E402
from test_explore_api import BASE, free_port, tiny_checkpoint  # noqa: E402
from test_explore_robust import big_header, mismatched_checkpoint, new_run  # noqa: E402

import ganforge  # noqa: E402
from ganforge.explore.app import create_app  # noqa: E402
from ganforge.explore.state import Limits  # noqa: E402
from ganforge.modelio.checkpoint import save_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("explore-limits") / "tiny.safetensors")


# Checkpoints.


def bad_checkpoints(folder: Path, good: Path) -> dict[str, Path]:
    """Files that `--checkpoint` may name and that no loader can use."""
    folder.mkdir(exist_ok=True)
    files = {
        "truncated.safetensors": good.read_bytes()[: good.stat().st_size // 2],
        "random.safetensors": random.Random(1).randbytes(4096),
        "empty.safetensors": b"",
        "pickle.safetensors": pickle.dumps({"G_ema": 1}),
        "damaged.pkl": random.Random(2).randbytes(4096),
        "truncated.pkl": pickle.dumps({"G_ema": list(range(100))})[:50],
    }
    out = {}
    for name, data in files.items():
        (out.setdefault(name, folder / name)).write_bytes(data)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(folder / "foreign.safetensors"))
    out["foreign.safetensors"] = folder / "foreign.safetensors"
    plan = ganforge.make_plan("tiny", 16).to_dict()
    G = ganforge.build_generator(ganforge.make_plan("tiny", 16))
    weights = {f"G_ema.{k}": v for k, v in G.state_dict().items()}
    for name, meta in {
        "plan-hello": {"plan": "hello"},
        "plan-types": {"plan": dict(plan, z_dim="64")},
        "plan-range": {"plan": dict(plan, mapping_layers=10**9)},
        "no-plan": {},
    }.items():
        save_checkpoint(folder / f"{name}.safetensors", weights, {"kind": "export", **meta})
        out[f"{name}.safetensors"] = folder / f"{name}.safetensors"
    out["mismatch.safetensors"] = mismatched_checkpoint(folder / "mismatch.safetensors")
    out["bighead.safetensors"] = big_header(folder / "bighead.safetensors")
    return out


@pytest.fixture(scope="module")
def bad_ckpts(good, tmp_path_factory) -> dict[str, Path]:
    return bad_checkpoints(tmp_path_factory.mktemp("bad-ckpts"), good)


@pytest.mark.parametrize(
    "name",
    [
        "truncated.safetensors",
        "random.safetensors",
        "empty.safetensors",
        "pickle.safetensors",
        "damaged.pkl",
        "truncated.pkl",
        "foreign.safetensors",
        "plan-hello.safetensors",
        "plan-types.safetensors",
        "plan-range.safetensors",
        "no-plan.safetensors",
        "mismatch.safetensors",
        "bighead.safetensors",
    ],
)
def test_a_bad_checkpoint_is_422_with_a_sentence(bad_ckpts, tmp_path, name):
    app = create_app(checkpoint=bad_ckpts[name], device="cpu", save_dir=tmp_path / "s")
    with TestClient(app, base_url=BASE) as c:
        for reply in (c.get("/api/model"), c.get("/api/render", params={"seed": 1}), c.post("/api/save")):
            assert reply.status_code == 422, reply.text
            message = reply.json()["error"]
            assert message.startswith("model='main' cannot be loaded: ") and name in message, message
            assert str(bad_ckpts[name].parent) not in message  # The file's name, not the server's folders.
        assert c.get("/api/status").json()["models_loaded"] == [] and not (tmp_path / "s").exists()


def test_the_model_cache_is_bounded_by_count_and_bytes(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    good = tiny_checkpoint(tmp_path / "tiny.safetensors")
    for name in ("a", "b", "c"):
        (new_run(runs, name) / "checkpoint-000000001000.safetensors").write_bytes(good.read_bytes())
    for limits, kept in ((Limits(), ["b", "c"]), (Limits(model_cache=5, model_cache_bytes=1), ["c"])):
        app = create_app(runs=runs, device="cpu", save_dir=tmp_path / "s", limits=limits)
        with TestClient(app, base_url=BASE) as c:
            for name in ("a", "b", "c"):
                assert c.get("/api/render", params={"model": name}).status_code == 200
            assert c.get("/api/status").json()["models_loaded"] == kept


# Saves.


def test_saves_are_bounded_by_count_and_bytes(good, tmp_path):
    app = create_app(checkpoint=good, device="cpu", save_dir=tmp_path / "a", limits=Limits(max_saves=2))
    with TestClient(app, base_url=BASE) as c:
        sizes = [c.post("/api/save", params={"seed": k}) for k in (1, 2)]
        assert all(r.status_code == 200 for r in sizes)
        over = c.post("/api/save", params={"seed": 3})
        assert over.status_code == 429 and "limit" in over.json()["error"]
        status = c.get("/api/status").json()
        written = sum(f.stat().st_size for f in (tmp_path / "a").iterdir())
        assert status["saves"] == 2 and status["saved_bytes"] == written
    one = status["saved_bytes"] // 2
    app = create_app(checkpoint=good, device="cpu", save_dir=tmp_path / "b", limits=Limits(max_save_bytes=one * 3 // 2))
    with TestClient(app, base_url=BASE) as c:
        assert c.post("/api/save", params={"seed": 1}).status_code == 200
        over = c.post("/api/save", params={"seed": 1})
        assert over.status_code == 429 and "bytes" in over.json()["error"]
    assert len(list((tmp_path / "b").iterdir())) == 2  # The refused save wrote nothing.


def test_the_command_sets_the_save_limits(good, tmp_path, monkeypatch):
    import typer
    import uvicorn
    from typer.testing import CliRunner

    from ganforge.explore.cli import explore

    command = typer.Typer()
    command.command()(explore)
    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda asgi, **kw: started.update(limits=asgi.state.explorer.limits))
    args = ["--checkpoint", str(good), "--save-dir", str(tmp_path / "s"), "--port", str(free_port())]
    result = CliRunner().invoke(command, args + ["--max-saves", "3", "--max-save-mb", "2"])
    assert result.exit_code == 0, result.output
    assert started["limits"].max_saves == 3 and started["limits"].max_save_bytes == 2 * 2**20
    assert CliRunner().invoke(command, args + ["--max-saves", "-1"]).exit_code == 2


def test_an_unwritable_save_folder_and_a_full_disk(good, tmp_path, monkeypatch):
    import ganforge.explore.saves as saves

    (tmp_path / "a-file").write_text("not a folder")
    app = create_app(checkpoint=good, device="cpu", save_dir=tmp_path / "a-file" / "saves")
    with TestClient(app, base_url=BASE) as c:
        reply = c.post("/api/save")
        assert reply.status_code == 503 and "cannot be written" in reply.json()["error"]
    writes = []

    def full_disk(path, write_fn):
        writes.append(path)
        if len(writes) == 2:  # The PNG fits, the JSON does not.
            raise OSError(errno.ENOSPC, "No space left on device")
        write_fn(path)

    monkeypatch.setattr(saves, "atomic_write", full_disk)
    app = create_app(checkpoint=good, device="cpu", save_dir=tmp_path / "saves")
    with TestClient(app, base_url=BASE) as c:
        reply = c.post("/api/save")
        assert reply.status_code == 507 and "is full" in reply.json()["error"]
        assert c.get("/api/status").json()["saves"] == 0
    assert list((tmp_path / "saves").iterdir()) == []  # No PNG without its JSON.
