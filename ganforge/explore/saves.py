"""Save what the page shows: the PNG plus a JSON with the exact settings and the command lines that remake it.

`command` is a `ganforge generate` line whenever the image is plain seeds (no walk, no style mix); it writes
`command_output`. `reproduce_command` works for every saved image, walks and mixes included.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import numpy as np

from ganforge.checkpoint import atomic_write_text
from ganforge.explore.params import RenderSettings
from ganforge.images import save_png

FORMAT = "ganforge-explore-save"
VERSION = 1


def file_stem(s: RenderSettings) -> str:
    stem = f"seed{s.seed:04d}" if s.grid == 1 else f"seeds{s.seed:04d}-{s.seeds[-1]:04d}"
    if s.walking:
        stem += f"-walk{s.space}{s.walk_seed}_{s.walk:+.2f}"
    if s.mixing:
        stem += f"-mix{s.mix_seed}_{s.mix_from}-{s.mix_to}"
    return stem


def unique_stem(folder: Path, stem: str) -> str:
    """stem, or stem-2, stem-3 … so that a save never overwrites an earlier one."""
    k, name = 1, stem
    while (folder / f"{name}.png").exists() or (folder / f"{name}.json").exists():
        k += 1
        name = f"{stem}-{k}"
    return name


def generate_command(checkpoint: Path, s: RenderSettings, outdir: Path, device: str) -> tuple[str | None, str]:
    """(`ganforge generate` line or None, the file it writes or why there is no line)."""
    if s.walking or s.mixing:
        what = "a latent walk" if s.walking else "a style mix"
        return None, f"ganforge generate has no option for {what}: use reproduce_command"
    seeds = str(s.seed) if s.grid == 1 else f"{s.seed}-{s.seeds[-1]}"
    args = ["ganforge", "generate", "--checkpoint", str(checkpoint), "--seeds", seeds, "--outdir", str(outdir),
            "--trunc", repr(float(s.psi)), "--noise-mode", s.noise]
    if s.cutoff is not None:
        args += ["--trunc-cutoff", str(s.cutoff)]
    if s.class_idx is not None:
        args += ["--class", str(s.class_idx)]
    if s.grid > 1:
        args.append("--grid")
    if device != "cpu":
        args += ["--device", device]
    output = outdir / (f"seed{s.seed:04d}.png" if s.grid == 1 else "grid.png")
    return shlex.join(args), str(output)


def save_render(save_dir: Path, checkpoint: Path, model_key: str, s: RenderSettings, array: np.ndarray,
                pixel_digest: str, device: str) -> dict:
    """Write <stem>.png and <stem>.json into save_dir; returns the JSON record (with both paths)."""
    save_dir = Path(save_dir).resolve()
    save_dir.mkdir(parents=True, exist_ok=True)
    stem = unique_stem(save_dir, file_stem(s))
    png, meta = save_dir / f"{stem}.png", save_dir / f"{stem}.json"
    save_png(array, png)
    checkpoint = Path(checkpoint).resolve()
    command, output = generate_command(checkpoint, s, save_dir / f"{stem}-generate", device)
    record = dict(
        format=FORMAT, version=VERSION, saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        checkpoint=str(checkpoint), model=model_key, settings=s.to_dict(),
        image=png.name, digest=pixel_digest, size=[int(array.shape[1]), int(array.shape[0])], device=device,
        command=command, command_output=output if command else None, command_note=None if command else output,
        reproduce_command=shlex.join(["python", "-m", "ganforge.explore.reproduce", str(meta)]),
        exact=s.noise != "random",
    )
    if s.noise == "random":
        record["note"] = "noise_mode random draws new noise on every run: regenerated images differ in detail"
    atomic_write_text(meta, json.dumps(record, indent=2) + "\n")
    return dict(record, png=str(png), json=str(meta))
