"""The explorer's server state: the models it may load, the run roots it may read, one render worker.

Requests name models and runs by key ('main', or a run id); keys are looked up in what the server was given at
start (or finds below --runs), so no request ever builds a path to a checkpoint or a run itself.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ganforge.errors import GanforgeError
from ganforge.explore.checkpoints import header_problem, usable_checkpoint
from ganforge.explore.coalesce import LatestWins
from ganforge.explore.params import DEFAULT_MAX_GRID, DEFAULT_MAX_SAVE_MB, DEFAULT_MAX_SAVES, ParamError
from ganforge.explore.render import DEFAULT_MAX_PIXELS, LoadedModel, load_model, out_of_memory
from ganforge.explore.runs import discover_runs
from ganforge.explore.saves import SaveBudget
from ganforge.tools.directions import Directions

MAIN = "main"  # The model key of --checkpoint.
GiB = 2**30
log = logging.getLogger("ganforge.explore")


@dataclass
class Limits:
    max_grid: int = DEFAULT_MAX_GRID  # Images per render request.
    max_pixels: int = DEFAULT_MAX_PIXELS  # Output pixels per render request (grid × H × W).
    model_cache: int = 2  # Generators kept loaded (a config-f 1024 G_ema is ~120 MB).
    model_cache_bytes: int = 2 * GiB  # Weights kept loaded; the model in use stays even when it alone is more.
    max_saves: int = DEFAULT_MAX_SAVES  # /api/save calls per server session; past it 429.
    max_save_bytes: int = DEFAULT_MAX_SAVE_MB * 2**20  # PNG + JSON bytes written per server session; past it 429.


@dataclass
class Explorer:
    checkpoint: Path | None  # --checkpoint, served as model 'main'.
    runs_root: Path | None  # --runs: every run below it is listed, its latest checkpoint loadable.
    device: torch.device
    save_dir: Path  # Where the save button writes PNG + JSON.
    limits: Limits = field(default_factory=Limits)
    renders: int = 0  # Images rendered for /api/render (superseded requests never get here).
    directions_path: Path | None = None  # --directions: sliders for every model of its w_dim.
    directions: Directions | None = None  # Its contents, read once at start.

    def __post_init__(self):
        self.saves = SaveBudget(self.limits.max_saves, self.limits.max_save_bytes)
        self.worker = LatestWins()
        self.render_lock = threading.Lock()  # One forward pass at a time: the worker's and a save's.
        self._load_lock = threading.Lock()
        self._models: OrderedDict[tuple[str, Path], LoadedModel] = OrderedDict()

    # Runs.

    def runs(self) -> dict[str, Path]:
        return discover_runs(self.runs_root) if self.runs_root is not None else {}

    def run(self, run_id: str | None) -> Path:
        if not run_id:
            raise ParamError("id is missing: pass a run id from /api/runs")
        found = self.runs().get(run_id)
        if found is None:
            raise ParamError(f"id={run_id[:80]!r} is not a run under --runs: pick one from /api/runs", status=404)
        return found

    # Models.

    def model_keys(self) -> list[dict]:
        """The models a page can pick: 'main' first, then each run with a checkpoint whose header reads.

        Only headers are read here; a network is built when a page asks for that model (one at a time).
        """
        keys = [dict(key=MAIN, label=self.checkpoint.name)] if self.checkpoint is not None else []
        for run_id, folder in self.runs().items():
            ckpt, _ = usable_checkpoint(folder)
            if ckpt is not None:
                keys.append(dict(key=run_id, label=f"{run_id} / {ckpt.name}"))
        return keys

    def checkpoint_for(self, key: str | None) -> tuple[str, Path]:
        if key in (None, ""):
            if self.checkpoint is not None:
                return MAIN, self.checkpoint
            keys = self.model_keys()
            if not keys:
                raise ParamError(
                    "no model to show: start the server with --checkpoint, or --runs with a run that has a checkpoint",
                    status=404,
                )
            key = keys[0]["key"]
        if key == MAIN and self.checkpoint is not None:
            return MAIN, self.checkpoint
        run = self.runs().get(key) if key != MAIN else None
        if run is None:
            raise ParamError(f"model={key[:80]!r} is not a model of this server: pick one from /api/models", status=404)
        ckpt, problems = usable_checkpoint(run)
        if ckpt is None:
            why = f" ({problems[0]})" if problems else ""
            raise ParamError(
                f"model={key!r} has no loadable checkpoint{why}: pick another from /api/models", status=404
            )
        return key, ckpt

    def model(self, key: str | None) -> LoadedModel:
        """The generator for a model key, loaded once (a run's newest checkpoint replaces its older one)."""
        key, ckpt = self.checkpoint_for(key)
        with self._load_lock:
            cached = self._models.get((key, ckpt))
            if cached is not None:
                self._models.move_to_end((key, ckpt))
                return cached
            for old in [k for k in self._models if k[0] == key]:
                del self._models[old]
            why = header_problem(ckpt) if ckpt.suffix == ".safetensors" else None
            if why:
                raise ParamError(f"model={key!r} cannot be loaded: {why}", status=422)
            try:
                model = load_model(key, ckpt, self.device, self.limits.max_pixels)
            except ParamError:
                raise
            except Exception as e:  # The file decides what fails here: see load_failure.
                raise load_failure(key, ckpt, e) from None
            self._models[(key, ckpt)] = model
            self._trim_cache()
            return model

    def _trim_cache(self) -> None:
        """Drop the least recently used models past the count or byte limit (the newest one always stays)."""

        def total() -> int:
            return sum(m.nbytes for m in self._models.values())

        while len(self._models) > 1 and (
            len(self._models) > self.limits.model_cache or total() > self.limits.model_cache_bytes
        ):
            self._models.popitem(last=False)

    def status(self) -> dict:
        with self._load_lock:
            loaded = [key for key, _ in self._models]
        return dict(
            renders=self.renders,
            completed=self.worker.completed,
            superseded=self.worker.superseded,
            device=str(self.device),
            models_loaded=loaded,
            saves=self.saves.count,
            saved_bytes=self.saves.bytes,
            max_grid=self.limits.max_grid,
            max_pixels=self.limits.max_pixels,
            save_dir=str(self.save_dir),
        )

    def close(self) -> None:
        self.worker.close()


def load_failure(key: str, ckpt: Path, e: Exception) -> ParamError:
    """The answer for a checkpoint that did not load: 507 when memory ran out, else 422 with the sentence.

    Every exception here comes from a file a client picked, so none may become a 500. Expected failures are
    GanforgeErrors (damaged, foreign, hostile files); anything else is also answered 422 but logged with its
    traceback, since it means the loader let a bad file through to code that was not meant to see it.
    """
    if out_of_memory(e):
        return ParamError(
            f"model={key!r}: there is not enough memory to load {ckpt.name}: close other programs, "
            "or use a smaller model or another --device",
            status=507,
        )
    if isinstance(e, GanforgeError):
        why = str(e).replace(str(ckpt), ckpt.name)
        why = why if ckpt.name in why else f"{ckpt.name}: {why}"
    elif isinstance(e, OSError):
        why = f"{ckpt.name} cannot be read ({e.strerror or e}): check the file and its permissions"
    else:
        log.error("loading %s raised an unexpected %s", ckpt, type(e).__name__, exc_info=e)
        why = f"{ckpt.name} does not hold a model ganforge can build ({type(e).__name__}: {str(e)[:200]})"
    return ParamError(f"model={key!r} cannot be loaded: {why}", status=422)
