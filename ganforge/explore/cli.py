"""`ganforge explore`: a local web page to look at a model and at training runs.

Registered on the main app in ganforge.cli (`app.command()(explore)`). Examples:
    ganforge explore --checkpoint runs/demo/run/checkpoint-000000002048.safetensors
    ganforge explore --runs runs                       # every run below runs/, live while they train
    ganforge explore --checkpoint G.safetensors --runs runs --port 8000 --device cuda
    ganforge explore --checkpoint G.safetensors --directions sefa.safetensors    # direction sliders
"""

from __future__ import annotations

import socket

import typer

from ganforge.console import console, fail, warn
from ganforge.explore.params import DEFAULT_MAX_SAVE_MB, DEFAULT_MAX_SAVES


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def explore(
    checkpoint: str = typer.Option(None, help="Model to show: ganforge checkpoint (.safetensors) or official .pkl."),
    runs: str = typer.Option(None, help="Folder of training runs (each with stats.jsonl / checkpoints)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback exposes the page."),
    port: int = typer.Option(7860, min=1, max=65535, help="TCP port."),
    device: str = typer.Option("auto", help="auto (a CUDA GPU when present), cpu or cuda."),
    save_dir: str = typer.Option("explore-saves", help="Where the save button writes PNG + JSON."),
    max_saves: int = typer.Option(DEFAULT_MAX_SAVES, min=0, help="Saves per session; past it a save is refused."),
    max_save_mb: int = typer.Option(
        DEFAULT_MAX_SAVE_MB,
        min=0,
        metavar="MB",
        help="Megabytes written by saves per session; past it a save is refused.",
    ),
    directions: str = typer.Option(
        None, metavar="FILE", help="Directions from `ganforge directions`: sliders for the strongest ones."
    ),
) -> None:
    """Start a local web page: the model (seed, ψ, noise, class, style mixing, grids, direction sliders, StyleGAN3
    translate/rotate) and the runs' curves."""
    try:
        import uvicorn

        from ganforge.explore.app import create_app
        from ganforge.explore.state import Limits
    except ImportError as e:
        fail(f"the explorer needs starlette and uvicorn ({e.name} is missing): pip install 'ganforge[explore]'")
    if checkpoint is None and runs is None:
        fail("give --checkpoint CKPT, --runs DIR or both")
    try:
        limits = Limits(max_saves=max_saves, max_save_bytes=max_save_mb * 2**20)
        app = create_app(checkpoint, runs, device, save_dir, host, limits, directions)
    except ValueError as e:
        fail(str(e))
    if not port_free(host, port):
        fail(f"--port {port} is already in use on {host}: pass another --port")
    shown = f"[{host}]" if ":" in host else host
    if host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"--host {host} makes the explorer reachable from other machines")
    console.print(
        f"ganforge explore: http://{shown}:{port}/  (runs: http://{shown}:{port}/runs; Ctrl-C stops)",
        highlight=False,
        soft_wrap=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
