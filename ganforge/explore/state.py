"""The explorer's server state: the models it may load, the run roots it may read, one render worker.

Requests name models and runs by key ('main', or a run id); keys are looked up in what the server was given at
start (or finds below --runs), so no request ever builds a path to a checkpoint or a run itself.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ganforge.checkpoint import latest_checkpoint
from ganforge.explore.coalesce import LatestWins
from ganforge.explore.params import DEFAULT_MAX_GRID, ParamError
from ganforge.explore.render import DEFAULT_MAX_PIXELS, LoadedModel, load_model
from ganforge.explore.runs import discover_runs

MAIN = "main"  # The model key of --checkpoint.
MODEL_CACHE = 2  # Generators kept loaded (a config-f 1024 G_ema is ~120 MB).


@dataclass
class Limits:
    max_grid: int = DEFAULT_MAX_GRID  # Images per render request.
    max_pixels: int = DEFAULT_MAX_PIXELS  # Output pixels per render request (grid × H × W).


@dataclass
class Explorer:
    checkpoint: Path | None  # --checkpoint, served as model 'main'.
    runs_root: Path | None  # --runs: every run below it is listed, its latest checkpoint loadable.
    device: torch.device
    save_dir: Path  # Where the save button writes PNG + JSON.
    limits: Limits = field(default_factory=Limits)
    renders: int = 0  # Images rendered for /api/render (superseded requests never get here).

    def __post_init__(self):
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
            raise ParamError(f"id={run_id!r} is not a run under --runs: pick one from /api/runs", status=404)
        return found

    # Models.

    def model_keys(self) -> list[dict]:
        """The models a page can pick: 'main' first, then each run that has a loadable checkpoint."""
        keys = [dict(key=MAIN, label=self.checkpoint.name)] if self.checkpoint is not None else []
        for run_id, folder in self.runs().items():
            ckpt = latest_checkpoint(folder)
            if ckpt is not None:
                keys.append(dict(key=run_id, label=f"{run_id} / {ckpt.name}"))
        return keys

    def checkpoint_for(self, key: str | None) -> tuple[str, Path]:
        if key in (None, ""):
            if self.checkpoint is not None:
                return MAIN, self.checkpoint
            keys = self.model_keys()
            if not keys:
                raise ParamError("no model to show: start the server with --checkpoint, or --runs with a run that "
                                 "has a checkpoint", status=404)
            key = keys[0]["key"]
        if key == MAIN and self.checkpoint is not None:
            return MAIN, self.checkpoint
        run = self.runs().get(key) if key != MAIN else None
        if run is None:
            raise ParamError(f"model={key!r} is not a model of this server: pick one from /api/models", status=404)
        ckpt = latest_checkpoint(run)
        if ckpt is None:
            raise ParamError(f"model={key!r} has no loadable checkpoint: pick one from /api/models", status=404)
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
            try:
                model = load_model(key, ckpt, self.device, self.limits.max_pixels)
            except ParamError:
                raise
            except (ValueError, OSError) as e:
                raise ParamError(f"model={key!r}: {ckpt.name} could not be loaded: {e}", status=422) from None
            self._models[(key, ckpt)] = model
            while len(self._models) > MODEL_CACHE:
                self._models.popitem(last=False)
            return model

    def status(self) -> dict:
        with self._load_lock:
            loaded = [key for key, _ in self._models]
        return dict(renders=self.renders, completed=self.worker.completed, superseded=self.worker.superseded,
                    device=str(self.device), models_loaded=loaded,
                    max_grid=self.limits.max_grid, max_pixels=self.limits.max_pixels, save_dir=str(self.save_dir))

    def close(self) -> None:
        self.worker.close()
