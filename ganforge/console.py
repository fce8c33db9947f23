"""The command line's consoles and its one way of failing: a red one-line error on stderr and an exit code."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` to stderr (unwrapped, so paths and commands stay whole) and exit with `code`."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err.print(f"[bold yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
