"""Paths from requests, confined to the roots the server was given.

A requested path must be relative, free of '..', and resolve (symlinks followed) to a file inside the root:
a link pointing out of the root is refused like a '../' would be.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from ganforge.explore.params import ParamError

SERVED_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".json", ".jsonl", ".txt")


def inside(path: Path, root: Path) -> bool:
    """True when the resolved path is root or below it."""
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13).
        return False
    return True


def safe_file(root: Path, relative: str, suffixes: tuple[str, ...] = SERVED_SUFFIXES) -> Path:
    """root / relative after every check, or ParamError (400 for a bad path, 403 for an escape, 404 if absent)."""
    text = str(relative)
    if not text or "\x00" in text or "\\" in text:
        raise ParamError(f"path={text!r} is not a plain relative path: use forward slashes inside the run folder")
    pure = PurePosixPath(text)
    if pure.is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        raise ParamError(f"path={text!r} is absolute: pass a path relative to the run folder", status=403)
    if ".." in pure.parts:
        raise ParamError(f"path={text!r} climbs out with '..': pass a path inside the run folder", status=403)
    if pure.suffix.lower() not in suffixes:
        raise ParamError(f"path={text!r}: only {', '.join(suffixes)} files are served", status=403)
    target = root / pure
    if not inside(target, root):
        raise ParamError(f"path={text!r} leads out of the run folder (a symlink?): refused", status=403)
    try:
        found = target.resolve()
        if found.is_file():
            return found
    except (OSError, RuntimeError):  # A name too long for the filesystem, a loop: nothing to serve either way.
        pass
    raise ParamError(f"path={text[:80]!r} does not exist in this run", status=404)
