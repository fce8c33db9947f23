"""Remake an image saved by the explorer from its JSON, walks and style mixes included.

python -m ganforge.explore.reproduce explore-saves/seed0042.json            # writes seed0042-reproduced.png
python -m ganforge.explore.reproduce explore-saves/seed0042.json --out x.png --checkpoint moved.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ganforge.explore.edits import check_edits
from ganforge.explore.params import MAX_SEED, settings_from_dict
from ganforge.explore.render import image_array, load_model, render, resolve_device
from ganforge.explore.saves import FORMAT
from ganforge.images import save_png
from ganforge.tools.directions import load_directions


def reproduce(
    saved: str | Path,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    directions: str | Path | None = None,
) -> Path:
    """Render the saved settings again and write the PNG; returns its path."""
    saved = Path(saved)
    record = json.loads(saved.read_text())
    if record.get("format") != FORMAT:
        raise ValueError(f"{saved} is not an explorer save (format {record.get('format')!r}, want {FORMAT!r})")
    settings = settings_from_dict(record["settings"], max_grid=MAX_SEED)
    model = load_model("reproduce", Path(checkpoint or record["checkpoint"]), resolve_device(device), 2**62)
    settings = model.check(settings, 2**62)
    path = directions or record.get("directions")
    dirs = load_directions(path, flag="--directions") if path else None
    check_edits(settings, model, dirs)
    array = image_array(render(model, settings, dirs))
    out = Path(out) if out else saved.with_name(f"{saved.stem}-reproduced.png")
    save_png(array, out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ganforge.explore.reproduce", description=__doc__.split("\n")[1])
    parser.add_argument("saved", help="JSON written by the explorer's save button")
    parser.add_argument("--out", default=None, help="PNG to write (default: <saved>-reproduced.png)")
    parser.add_argument("--checkpoint", default=None, help="use this checkpoint instead of the recorded path")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--directions", default=None, help="use this directions file instead of the recorded path")
    args = parser.parse_args(argv)
    print(reproduce(args.saved, args.out, args.checkpoint, args.device, args.directions))


if __name__ == "__main__":
    main()
