"""What a run folder's files say, read defensively: bounded sizes, every line checked, nothing trusted.

A run folder may be half written (a live run), damaged, or made by hand. Every reader here returns what it
could use plus a sentence for what it could not, and raises nothing for bad content, so one broken file never
takes down the run list, the other runs, or the rest of its own run.

Numbers come back as strict JSON: NaN/Infinity tokens and overflowing literals become the strings 'nan', 'inf'
and '-inf' (what the trainer writes for a non-finite stat), which the page draws as gaps.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

from ganforge.explore.params import ParamError
from ganforge.explore.paths import inside

MiB = 2**20
MAX_CONFIG_BYTES = 4 * MiB  # A ganforge config.json is a few KB; anything this big is not one.
MAX_STATS_BYTES = 8 * MiB  # stats.jsonl read per request; a client pages on with ?since=.
MAX_METRIC_BYTES = 1 * MiB  # The newest part of each metric-*.jsonl that is read (~3000 evaluations).
MAX_METRIC_FILES = 32  # metric-*.jsonl files read per run; together at most 32 MB per request.
MAX_FIELDS = 1000  # Values in one stats record; a record with more is not a training log (and would flood the page).
MAX_KEY_CHARS = 200
NON_FINITE = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}
NON_FINITE_TEXT = ("nan", "inf", "-inf")


class FileProblem(Exception):
    """A run file that exists but cannot be used; str() is the sentence shown for the run."""


def open_run_file(run: Path, name: str):
    """The open binary file run/name, None when it does not exist, or FileProblem.

    O_NONBLOCK: a FIFO named stats.jsonl must not hang a server thread in open(); it is refused after.
    """
    path = run / name
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FileProblem(f"{name} cannot be opened ({e.strerror}): check its permissions and links") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileProblem(f"{name} is not a regular file: replace it with the file the trainer writes")
        if not inside(path, run):
            raise FileProblem(f"{name} is a link to a file outside the run folder: the explorer does not follow it")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _number(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else str(value)


def parse_json(data: bytes | str):
    """A JSON value with non-finite numbers as 'nan'/'inf'/'-inf' strings; ValueError or RecursionError if bad."""
    return json.loads(data, parse_constant=NON_FINITE.__getitem__, parse_float=_number)


def json_problem(e: BaseException) -> str:
    """Why bytes are not JSON, in a few words (RecursionError: nesting deeper than the parser goes)."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(e).split(":")[0][:80]


def type_name(value) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def is_number(value) -> bool:
    """A JSON number the page can use: not a boolean, not 'nan'/'inf', and within ±1e300.

    Compared rather than passed to math.isfinite, which raises OverflowError for a 400-digit integer.
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool) and -1e300 < value < 1e300


# Config.

# The config.json fields the explorer reads, and what each must be; anything else is shown as it is.
CONFIG_FIELDS = {
    "kimg": "number",
    "preset": "string",
    "d_lr_mult": "number",
    "g_lr": "schedule",
    "d_lr": "schedule",
    "gamma": "schedule",
    "style_mixing": "schedule",
    "ada_target": "schedule",
}
PLAN_FIELDS = {"family": "string", "preset": "string", "width": "count", "height": "count"}
KINDS = {
    "number": (is_number, "a finite number"),
    "count": (lambda v: is_number(v) and v == int(v) and v > 0, "a positive whole number"),
    "string": (lambda v: isinstance(v, str), "a string"),
    "schedule": (lambda v: is_number(v) or isinstance(v, str), "a number or a schedule string"),
}


def field_problem(section: str, data: dict, fields: dict[str, str]) -> str | None:
    for name, kind in fields.items():
        value = data.get(name)
        ok, wanted = KINDS[kind]
        if value is not None and not ok(value):
            shown = json.dumps(value)[:40]
            return f"config.json: {section}{name} is {shown}, not {wanted}: fix or remove it"
    return None


def config_problem(data: dict) -> str | None:
    """The first field the explorer reads that has the wrong type, as a sentence; None when all are usable."""
    for part in ("config", "plan"):
        if part in data and not isinstance(data[part], dict):
            return f"config.json: '{part}' is {type_name(data[part])}, not an object: the file is damaged"
    cfg = data.get("config", data)
    return field_problem("config.", cfg, CONFIG_FIELDS) or field_problem("plan.", data.get("plan", {}), PLAN_FIELDS)


def read_config(run: Path) -> tuple[dict, str | None]:
    """(config.json as an object, None) or ({} or the object, the sentence saying what is wrong with it)."""
    try:
        f = open_run_file(run, "config.json")
        if f is None:
            return {}, "config.json is missing, so the target length and schedules are unknown"
        with f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileProblem as e:
        return {}, str(e)
    except OSError as e:
        return {}, f"config.json cannot be read ({e.strerror}): check the disk and its permissions"
    if len(data) > MAX_CONFIG_BYTES:
        return {}, f"config.json is over {MAX_CONFIG_BYTES // MiB} MB, far more than a ganforge config: replace it"
    try:
        value = parse_json(data)
    except (ValueError, RecursionError) as e:
        return {}, f"config.json is not valid JSON ({json_problem(e)}): the file is damaged"
    if not isinstance(value, dict):
        return {}, f"config.json holds {type_name(value)}, not an object: the file is damaged"
    return value, config_problem(value)


# Stats.


def clean_record(line: bytes) -> tuple[dict | None, str | None]:
    """(record, None) for a usable stats line; (None, why) for a line that is skipped.

    A record needs a numeric kimg (its place on the x axis); values that are not numbers are left out.
    """
    try:
        value = parse_json(line)
    except (ValueError, RecursionError) as e:
        return None, f"not JSON ({json_problem(e)})"
    if not isinstance(value, dict):
        return None, f"{type_name(value)}, not an object"
    if not is_number(value.get("kimg")):
        return None, "without a numeric kimg"
    if len(value) > MAX_FIELDS:
        return None, f"a record of {len(value)} values, over the {MAX_FIELDS} the page draws"
    record = {k: v for k, v in value.items() if len(k) <= MAX_KEY_CHARS and (is_number(v) or v in NON_FINITE_TEXT)}
    return record, None


def read_stats(run: Path, since: int = 0, max_bytes: int = MAX_STATS_BYTES) -> dict:
    """Records of stats.jsonl from byte offset `since` up to the last complete line.

    Returns {records, offset, reset, more, skipped, skip_reason, problem}: the next request passes `offset`
    back; reset=True means the file shrank (a new run in the same folder) and the records start again from the
    top; more=True means the reply stopped at max_bytes and the client should ask again at once; skipped counts
    the lines left out (skip_reason says why the first was); problem is a sentence when the file is unusable.
    """
    reply = dict(records=[], offset=0, reset=since > 0, more=False, skipped=0, skip_reason=None, problem=None)
    try:
        f = open_run_file(run, "stats.jsonl")
        if f is None:
            return reply
        with f:
            size = os.fstat(f.fileno()).st_size
            reset = since > size
            start = 0 if reset else since
            f.seek(start)
            chunk = f.read(max_bytes)
    except FileProblem as e:
        return dict(reply, problem=str(e))
    except OSError as e:
        return dict(reply, problem=f"stats.jsonl cannot be read ({e.strerror}): check the disk and its permissions")
    end = chunk.rfind(b"\n") + 1  # A line still being written stays for the next poll.
    if end == 0 and len(chunk) == max_bytes:  # One line longer than a whole reply: step over this part of it.
        return dict(
            reply,
            offset=start + len(chunk),
            reset=reset,
            more=True,
            skipped=1,
            skip_reason=f"the line at byte {start} is over {max_bytes:,} bytes",
        )
    records, skipped, reason, pos = [], 0, None, start
    for line in chunk[:end].split(b"\n")[:-1]:
        if line.strip():
            record, why = clean_record(line)
            if record is not None:
                records.append(record)
            else:
                skipped += 1
                reason = reason or f"the line at byte {pos} is {why}"
        pos += len(line) + 1
    return dict(
        reply,
        records=records,
        offset=start + end,
        reset=reset,
        more=start + end < size and end > 0,
        skipped=skipped,
        skip_reason=reason,
    )


# Metrics.


def metric_points(record, index: int, nimg_of) -> list[tuple[str, list[float]]] | None:
    """[(result name, [kimg, value])…] of one metric line, or None when the line is not a metric record."""
    if not isinstance(record, dict) or not isinstance(record.get("results"), dict):
        return None
    snapshot = record.get("snapshot")
    nimg = nimg_of(snapshot) if isinstance(snapshot, str) else None
    x = nimg / 1000 if nimg is not None else float(index)
    return [(str(k)[:MAX_KEY_CHARS], [x, float(v)]) for k, v in record["results"].items() if is_number(v)]


def read_tail(f, max_bytes: int) -> bytes:
    """The complete lines among the last max_bytes of a file (a line still being written is left out)."""
    size = os.fstat(f.fileno()).st_size
    f.seek(max(size - max_bytes, 0))
    data = f.read(max_bytes)
    first = data.find(b"\n") + 1 if size > max_bytes else 0
    return data[first : data.rfind(b"\n") + 1]


def read_metrics(run: Path, nimg_of) -> tuple[dict[str, list[list[float]]], list[str]]:
    """({result name: [[kimg, value]…]}, problems) from metric-<name>.jsonl (x from the snapshot name, else
    the line number); bad lines are skipped and counted in a problem sentence."""
    series: dict[str, list[list[float]]] = {}
    problems = []
    files = sorted(run.glob("metric-*.jsonl"))
    if len(files) > MAX_METRIC_FILES:
        problems.append(f"the run has {len(files)} metric-*.jsonl files: only the first {MAX_METRIC_FILES} are shown")
    for path in files[:MAX_METRIC_FILES]:
        try:
            f = open_run_file(run, path.name)
            if f is None:
                continue
            with f:
                lines = read_tail(f, MAX_METRIC_BYTES).splitlines()
        except FileProblem as e:
            problems.append(str(e))
            continue
        except OSError as e:
            problems.append(f"{path.name} cannot be read ({e.strerror})")
            continue
        bad = 0
        for i, line in enumerate(lines):
            try:
                points = metric_points(parse_json(line), i, nimg_of) if line.strip() else []
            except (ValueError, RecursionError):
                points = None
            if points is None:
                bad += 1
            for key, point in points or []:
                series.setdefault(key, []).append(point)
        if bad:
            problems.append(f"{path.name}: {bad} line(s) are not metric records and were skipped")
    return series, problems


def parse_since(text: str | None) -> int:
    if text is None or text == "":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise ParamError(f"since={text[:40]!r} is not a byte offset: pass the 'offset' of the previous reply") from None
    if value < 0:
        raise ParamError(f"since={value} is negative: pass the 'offset' of the previous reply (0 = from the top)")
    return value
