"""The command line's consoles and its one way of failing: `error: <sentence>` on stderr and an exit code.

Rich markup is off on both consoles: paths and messages print exactly as written (a folder named `[/x]`
or a message quoting `[bold]` stays as it is). Styling goes through Text objects, never through markup.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from ganforge.errors import GanforgeError

try:  # Typer >= 0.22 vendors click; run_cli prints this error as one line with exit 2.
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older Typer
    from click.exceptions import UsageError  # type: ignore[assignment]  # The same class, from click itself.

console = Console(markup=False, highlight=False)
err = Console(stderr=True, markup=False, highlight=False)


def styled(label: str, style: str, message: str) -> Text:
    """`label message` with only the label styled (the message is never parsed as markup)."""
    return Text.assemble((label, style), " ", message)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` to stderr (unwrapped, so paths and commands stay whole) and exit with `code`."""
    err.print(styled("error:", "bold red", message), soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err.print(styled("warning:", "bold yellow", message), soft_wrap=True)


def usage(check: Callable[[Any], Any]) -> Callable[[typer.Context, Any], Any]:
    """A Typer option callback: the value becomes check(value); a GanforgeError from the check is a usage error
    (one line, exit 2) that runs before any file is read."""

    def callback(ctx: typer.Context, value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except GanforgeError as e:
            raise UsageError(str(e), ctx=ctx) from None

    return callback


def os_error_sentence(e: OSError) -> str:
    """A sentence for an OSError that names the path and the usual fix."""
    path = e.filename if e.filename is not None else ""
    where = f"{path}: " if path else ""
    fixes: dict[int | None, str] = {  # e.errno is None for an OSError raised without one.
        errno.ENOENT: "check the path",
        errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
        errno.EISDIR: "it is a folder: give a file",
        errno.EACCES: "check its permissions or choose another path",
        errno.EPERM: "check its permissions or choose another path",
        errno.ENOSPC: "the disk is full: free space or choose another output folder",
        errno.EROFS: "the file system is read-only: choose another output folder",
        errno.EEXIST: "it already exists: remove it or choose another path",
        errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
    }
    reason = e.strerror or type(e).__name__
    fix = fixes.get(e.errno, "check the path and try again")
    return f"{where}{reason.lower()}: {fix}"


def run_cli(app: typer.Typer, args: list[str] | None = None) -> NoReturn:
    """Run the Typer app; expected failures become one line on stderr (exit 1, or 2 for usage errors).

    A GanforgeError, an OSError (missing path, full disk …) and running out of memory are expected and
    print one sentence. Anything else is a bug in ganforge and keeps its traceback.
    """
    try:  # Typer >= 0.22 vendors click.
        from typer._click import exceptions as click_errors
    except ImportError:
        from click import exceptions as click_errors  # type: ignore[no-redef]  # Older Typer: click itself.

    try:
        code = app(args=args, standalone_mode=False)
    except typer.Exit as e:
        code = e.exit_code
    except typer.Abort:
        err.print(styled("error:", "bold red", "interrupted"), soft_wrap=True)
        code = 130
    except click_errors.ClickException as e:  # Usage errors: a bad flag, a missing argument, a value of the wrong type.
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()
            sys.exit(e.exit_code)
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        err.print(styled("error:", "bold red", e.format_message().replace("\n", " ") + hint), soft_wrap=True)
        code = e.exit_code
    except GanforgeError as e:
        err.print(styled("error:", "bold red", str(e)), soft_wrap=True)
        code = 1
    except OSError as e:
        err.print(styled("error:", "bold red", os_error_sentence(e)), soft_wrap=True)
        code = 1
    except MemoryError as e:  # Ours carry a sentence; the interpreter's carry none.
        text = (
            str(e)
            if str(e) and " " in str(e)
            else ("out of memory: use a smaller batch, resolution or model, or fewer images at once")
        )
        err.print(styled("error:", "bold red", text), soft_wrap=True)
        code = 1
    except KeyboardInterrupt:
        err.print(styled("error:", "bold red", "interrupted"), soft_wrap=True)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
