"""Save what the page shows: the PNG plus a JSON with the exact settings and the command lines that remake it.

`command` is a `ganforge generate` line whenever the image is plain seeds (no walk, no style mix); it writes
`command_output`. `reproduce_command` works for every saved image, walks and mixes included.

Saves are bounded per server session (count and bytes, SaveBudget): a page or a script calling /api/save in a
loop gets 429 before it fills the disk. Both files are encoded first and written only when they fit.
"""

from __future__ import annotations

import errno
import io
import json
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ganforge.explore.params import ParamError, RenderSettings
from ganforge.modelio.checkpoint import atomic_write

FORMAT = "ganforge-explore-save"
VERSION = 1


@dataclass
class SaveBudget:
    max_saves: int  # Saves per server session.
    max_bytes: int  # Bytes written per server session (PNG + JSON).
    count: int = 0
    bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # Held while a save writes.

    def check(self, nbytes: int = 0) -> None:
        """ParamError 429 when one more save of nbytes would pass either limit."""
        if self.count >= self.max_saves:
            raise ParamError(
                f"this server has saved {self.count} images, its limit per session: restart "
                "`ganforge explore` (with a higher --max-saves) to save more",
                status=429,
            )
        if self.bytes + nbytes > self.max_bytes:
            raise ParamError(
                f"this save ({nbytes:,} bytes) would pass the server's limit of {self.max_bytes:,} bytes "
                f"written per session ({self.bytes:,} so far): restart `ganforge explore` (with a higher "
                "--max-save-mb) to save more",
                status=429,
            )


def write_failure(save_dir: Path, e: OSError) -> ParamError:
    """507 when the disk or quota is full, 503 when the folder cannot be written at all."""
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return ParamError(
            f"the save folder {save_dir} is full ({e.strerror}): free some space, or restart with another --save-dir",
            status=507,
        )
    return ParamError(
        f"the save folder {save_dir} cannot be written ({e.strerror or e}): restart with a "
        "--save-dir the explorer may write",
        status=503,
    )


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def file_stem(s: RenderSettings) -> str:
    stem = f"seed{s.seed:04d}" if s.grid == 1 else f"seeds{s.seed:04d}-{s.seeds[-1]:04d}"
    if s.walking:
        stem += f"-walk{s.space}{s.walk_seed}_{s.walk:+.2f}"
    if s.mixing:
        stem += f"-mix{s.mix_seed}_{s.mix_from}-{s.mix_to}"
    if any(s.dirs):
        stem += "-dir" + "_".join(f"{k}{v:+g}" for k, v in enumerate(s.dirs) if v)
    if s.moving:
        stem += f"-move{s.tx:+g}_{s.ty:+g}_{s.rotate:+g}"
    return stem


def unique_stem(folder: Path, stem: str) -> str:
    """stem, or stem-2, stem-3 … so that a save never overwrites an earlier one."""
    k, name = 1, stem
    while (folder / f"{name}.png").exists() or (folder / f"{name}.json").exists():
        k += 1
        name = f"{stem}-{k}"
    return name


def generate_command(
    checkpoint: Path, s: RenderSettings, outdir: Path, device: str, directions: Path | None = None
) -> tuple[str | None, str]:
    """(`ganforge generate` line or None, the file it writes or why there is no line)."""
    if s.walking or s.mixing:
        what = "a latent walk" if s.walking else "a style mix"
        return None, f"ganforge generate has no option for {what}: use reproduce_command"
    moved = [(k, v) for k, v in enumerate(s.dirs) if v]
    if len(moved) > 1 or (moved and directions is None):
        return None, "ganforge generate takes one --direction and this image moves along several: use reproduce_command"
    seeds = str(s.seed) if s.grid == 1 else f"{s.seed}-{s.seeds[-1]}"
    args = [
        "ganforge",
        "generate",
        "--checkpoint",
        str(checkpoint),
        "--seeds",
        seeds,
        "--outdir",
        str(outdir),
        "--trunc",
        repr(float(s.psi)),
        "--noise-mode",
        s.noise,
    ]
    if s.cutoff is not None:
        args += ["--trunc-cutoff", str(s.cutoff)]
    if s.class_idx is not None:
        args += ["--class", str(s.class_idx)]
    if s.grid > 1:
        args.append("--grid")
    if moved:  # Values may be negative: written as --flag=value, never mistaken for an option.
        args += ["--direction", f"{directions}:{moved[0][0]}", f"--strength={float(moved[0][1])!r}"]
    if s.tx or s.ty:
        args.append(f"--translate={float(s.tx)!r},{float(s.ty)!r}")
    if s.rotate:
        args.append(f"--rotate={float(s.rotate)!r}")
    if device != "cpu":
        args += ["--device", device]
    output = outdir / (f"seed{s.seed:04d}.png" if s.grid == 1 else "grid.png")
    return shlex.join(args), str(output)


def save_record(
    save_dir: Path,
    stem: str,
    checkpoint: Path,
    model_key: str,
    s: RenderSettings,
    array: np.ndarray,
    pixel_digest: str,
    device: str,
    directions: Path | None = None,
) -> dict:
    """The JSON written beside <stem>.png."""
    png, meta = save_dir / f"{stem}.png", save_dir / f"{stem}.json"
    command, output = generate_command(checkpoint, s, save_dir / f"{stem}-generate", device, directions)
    record = dict(
        format=FORMAT,
        version=VERSION,
        saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        checkpoint=str(checkpoint),
        directions=str(directions) if directions is not None and any(s.dirs) else None,
        model=model_key,
        settings=s.to_dict(),
        image=png.name,
        digest=pixel_digest,
        size=[int(array.shape[1]), int(array.shape[0])],
        device=device,
        command=command,
        command_output=output if command else None,
        command_note=None if command else output,
        reproduce_command=shlex.join(["python", "-m", "ganforge.explore.reproduce", str(meta)]),
        exact=s.noise != "random",
    )
    if s.noise == "random":
        record["note"] = "noise_mode random draws new noise on every run: regenerated images differ in detail"
    return record


def save_render(
    save_dir: Path,
    checkpoint: Path,
    model_key: str,
    s: RenderSettings,
    array: np.ndarray,
    pixel_digest: str,
    device: str,
    budget: SaveBudget,
    directions: Path | None = None,  # The --directions file that `s.dirs` refers to.
) -> dict:
    """Write <stem>.png and <stem>.json into save_dir within the budget; returns the JSON record (with both paths).

    ParamError 429 past the budget, 507 for a full disk, 503 for a folder that cannot be written; a failed save
    leaves no file behind.
    """
    save_dir = Path(save_dir).resolve()
    image = png_bytes(array)
    with budget.lock:
        budget.check(len(image))
        try:
            save_dir.mkdir(parents=True, exist_ok=True)
            stem = unique_stem(save_dir, file_stem(s))
            ckpt = Path(checkpoint).resolve()
            record = save_record(save_dir, stem, ckpt, model_key, s, array, pixel_digest, device, directions)
            text = (json.dumps(record, indent=2) + "\n").encode()
            budget.check(len(image) + len(text))
            png, meta = save_dir / f"{stem}.png", save_dir / f"{stem}.json"
            atomic_write(png, lambda tmp: Path(tmp).write_bytes(image))
            try:
                atomic_write(meta, lambda tmp: Path(tmp).write_bytes(text))
            except BaseException:
                png.unlink(missing_ok=True)
                raise
        except OSError as e:
            raise write_failure(save_dir, e) from None
        budget.count += 1
        budget.bytes += len(image) + len(text)
    return dict(record, png=str(png), json=str(meta))
