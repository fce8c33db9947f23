"""Where images come from: a folder (searched recursively) or a zip, with optional class labels.

A Source lists image files by relative POSIX name ("00000/img00000000.png") and reads their bytes.
A zip is opened lazily and re-opened in every new process, so one Source can be handed to pool or
DataLoader workers (fork or spawn). Labels come from a StyleGAN2-ADA `dataset.json` at the root
(`{"labels": [[name, class], ...]}` or `{"labels": null}`) or from a JSON/CSV file given by the user.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from pathlib import Path, PurePosixPath

from ganforge.errors import GanforgeError

IMAGE_EXTENSIONS = frozenset(
    {
        ".png",
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".tga",
    }
)
LABELS_NAME = "dataset.json"  # The official StyleGAN2-ADA labels file at the dataset root.


class SourceError(GanforgeError, ValueError):
    """A dataset path or labels file that cannot be used; the message says what to change."""


def normalize_name(name: str) -> str:
    """Relative POSIX spelling used for matching labels: forward slashes, no leading './'."""
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def is_hidden(name: str) -> bool:
    """macOS resource forks, `__MACOSX/`, `.ipynb_checkpoints/` and other dot-files are not data."""
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(name).parts)


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


class Source:
    """Read-only view of a folder or zip of images. Nothing in it is ever written."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise SourceError(f"{self.path} does not exist: give a folder or a .zip of images")
        self.is_zip = self.path.is_file()
        if self.is_zip and not zipfile.is_zipfile(self.path):
            raise SourceError(f"{self.path} is a file but not a zip archive: give a folder or a .zip of images")
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None
        self._names: list[str] | None = None
        self._ignored: list[str] = []

    # Zip handles are per process: a handle inherited through fork shares its file offset with the parent.
    def _zipfile(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)
            self._zip_pid = os.getpid()
        return self._zip

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_zip"] = None
        state["_zip_pid"] = None
        return state

    def close(self) -> None:
        if self._zip is not None and self._zip_pid == os.getpid():
            self._zip.close()
        self._zip = None

    def _all_files(self) -> list[str]:
        if self.is_zip:
            return [i.filename for i in self._zipfile().infolist() if not i.is_dir()]
        out: list[str] = []
        for root, dirs, files in os.walk(self.path):
            dirs.sort()
            rel = Path(root).relative_to(self.path)
            out.extend((rel / f).as_posix() for f in files)
        return out

    def _scan(self) -> list[str]:
        """List the files once; returns the image names."""
        names, ignored = [], []
        for name in sorted(self._all_files()):
            if is_image_name(name) and not is_hidden(name):
                names.append(name)
            elif name != LABELS_NAME:
                ignored.append(name)
        self._names, self._ignored = names, ignored
        return names

    @property
    def names(self) -> list[str]:
        """Image files (by extension), sorted, as relative POSIX names."""
        return self._scan() if self._names is None else self._names

    @property
    def ignored(self) -> list[str]:
        """Files skipped without reading: no image extension, or hidden / macOS metadata."""
        if self._names is None:
            self._scan()
        return self._ignored

    def has(self, name: str) -> bool:
        if self.is_zip:
            try:
                self._zipfile().getinfo(name)
                return True
            except KeyError:
                return False
        return (self.path / name).is_file()

    def read(self, name: str) -> bytes:
        if self.is_zip:
            return self._zipfile().read(name)
        return (self.path / name).read_bytes()

    def open(self, name: str):
        """A binary file object (seekable); reading only a header stays cheap."""
        if self.is_zip:
            return self._zipfile().open(name)
        return open(self.path / name, "rb")

    def labels(self) -> dict[str, int] | None:
        """Labels from the root `dataset.json`, or None when it is missing or says `"labels": null`."""
        if not self.has(LABELS_NAME):
            return None
        where = f"{self.path}/{LABELS_NAME}" if not self.is_zip else f"{LABELS_NAME} in {self.path}"
        try:
            obj = json.loads(self.read(LABELS_NAME).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise SourceError(f"{where} is not valid JSON ({e}): fix or delete it") from None
        return labels_from_json(obj, where)


def _as_class(value, where: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str, float)):
        raise SourceError(f"{where}: the label of {name!r} is {value!r}; labels must be integer class ids (0, 1, ...)")
    try:
        number = float(value)
    except ValueError:
        raise SourceError(
            f"{where}: the label of {name!r} is {value!r}; labels must be integer class ids "
            f"(0, 1, ...), so number your class names first"
        ) from None
    if number != int(number) or number < 0:
        raise SourceError(f"{where}: the label of {name!r} is {value!r}; labels must be integer class ids >= 0")
    return int(number)


def labels_from_json(obj, where: str) -> dict[str, int] | None:
    """Accepts `{"labels": [[name, c], ...] | null}`, `{name: c, ...}` or `[[name, c], ...]`."""
    if isinstance(obj, dict) and "labels" in obj:
        obj = obj["labels"]
        if obj is None:
            return None
    if isinstance(obj, dict):
        pairs = list(obj.items())
    elif isinstance(obj, list) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in obj):
        pairs = [tuple(p) for p in obj]
    else:
        raise SourceError(
            f'{where} is not a labels mapping: write {{"labels": [["a.png", 0], ...]}}, '
            f"{{\"a.png\": 0, ...}} or a CSV with rows 'file,class'"
        )
    return {normalize_name(str(name)): _as_class(value, where, str(name)) for name, value in pairs}


def load_labels_file(path: str | os.PathLike) -> dict[str, int]:
    """A user's labels file: JSON (see `labels_from_json`) or CSV `file,class` with an optional header row."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise SourceError(f"labels file {path} {what}: give a JSON or CSV file mapping file names to classes")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SourceError(
            f"labels file {path} is not text (an image or other binary file?): give a JSON or CSV "
            f"file mapping file names to classes"
        ) from None
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("{", "["):
        try:
            labels = labels_from_json(json.loads(text), str(path))
        except ValueError as e:
            if isinstance(e, SourceError):
                raise
            raise SourceError(f"labels file {path} is not valid JSON ({e}): fix it or write a CSV") from None
        if labels is None:
            raise SourceError(f'labels file {path} says "labels": null: give a file with one class per image')
        return labels
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if rows and len(rows[0]) >= 2 and not rows[0][1].strip().lstrip("-").replace(".", "", 1).isdigit():
        rows = rows[1:]  # Header such as "file,label".
    for i, row in enumerate(rows):
        if len(row) < 2:
            raise SourceError(f"labels file {path}, row {i + 1} has one column: write 'file,class' on every row")
    return {normalize_name(r[0].strip()): _as_class(r[1].strip(), str(path), r[0].strip()) for r in rows}


class LabelLookup:
    """Finds a file's class by its relative name, or by its bare file name when the labels use bare names."""

    def __init__(self, labels: dict[str, int]):
        self.labels = labels
        self.bare = all("/" not in k for k in labels)

    def get(self, name: str) -> int | None:
        name = normalize_name(name)
        if name in self.labels:
            return self.labels[name]
        if self.bare:
            return self.labels.get(PurePosixPath(name).name)
        return None
