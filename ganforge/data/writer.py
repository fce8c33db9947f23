"""Writing a dataset in the official StyleGAN2-ADA layout, atomically.

`00000/img00000000.png`, ... (1000 images per folder) and `dataset.json`, in a folder or in an
uncompressed zip (ZIP_STORED). Everything is written under a hidden temporary name beside DEST and
renamed into place on success, so DEST is either complete or untouched; on failure the temporary
output is removed.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path


def output_name(index: int) -> str:
    """The official layout: 1000 images per folder."""
    return f"{index // 1000:05d}/img{index:08d}.png"


def report_path(dest: str | os.PathLike) -> Path:
    """Inside a DEST folder; beside a DEST zip as DEST.report.json."""
    dest = Path(dest)
    return Path(f"{dest}.report.json") if dest.suffix.lower() == ".zip" else dest / "report.json"


def remove(path: Path) -> None:
    """Delete a file, link or folder tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Writer:
    """`with Writer(dest) as w: w.add(name, data)`: committed when the block ends, removed if it raises."""

    def __init__(self, dest: str | os.PathLike):
        self.dest = Path(dest)
        self.tmp = self.dest.with_name(f".{self.dest.name}.partial-{os.getpid()}")
        self.is_zip = self.dest.suffix.lower() == ".zip"
        self._report: bytes | None = None
        remove(self.tmp)
        if self.is_zip:
            self.zip = zipfile.ZipFile(self.tmp, "w", zipfile.ZIP_STORED)
        else:
            self.tmp.mkdir(parents=True)

    def add(self, name: str, data: bytes) -> None:
        if self.is_zip:
            self.zip.writestr(name, data)
            return
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def add_report(self, data: bytes) -> None:
        """report.json inside a folder; DEST.report.json beside a zip (written after the zip is in place)."""
        if self.is_zip:
            self._report = data
        else:
            self.add(report_path(self.dest).name, data)

    def commit(self) -> None:
        if self.is_zip:
            self.zip.close()
        remove(self.dest)  # The caller checked it is absent, an empty folder, or to be replaced (--force).
        os.replace(self.tmp, self.dest)
        if self._report is not None:
            write_atomic(report_path(self.dest), self._report)

    def abort(self) -> None:
        if self.is_zip:
            self.zip.close()
        remove(self.tmp)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()
