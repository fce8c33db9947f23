"""`ganforge train` and `ganforge demo`: thin wrappers over ganforge.training."""

from __future__ import annotations

import inspect
import json
import os

import typer

from ganforge.cli_schema import schema_option
from ganforge.console import console, fail
from ganforge.errors import GanforgeError
from ganforge.training.demo import DEMO_KIMG


def _preset_list() -> str:
    from ganforge.config import MODEL_PRESETS
    from ganforge.training.recipes import RECIPES

    lines = [f"  {name:<10} {r.description}" for name, r in RECIPES.items()]
    lines += [
        f"  {name:<10} {p.description} (with the auto recipe)"
        for name, p in MODEL_PRESETS.items()
        if name not in RECIPES
    ]
    return "\n".join(lines)


def _train(config: str | None, dry_run: bool, **given) -> None:
    from ganforge.training.config import load_config_file, merge, require_gamma

    file_values = load_config_file(config) if config else {}
    try:
        cfg = merge(file_values, given).resolved()
        require_gamma(cfg)
    except GanforgeError as e:  # A bad option value: a usage error.
        fail(str(e))
    if dry_run:
        typer.echo(json.dumps(dry_run_config(cfg), indent=2))
        return
    run_training(cfg)


def dry_run_config(cfg) -> dict:
    """The config as it will run: presets filled in from the data's size when the data can be read."""
    from ganforge.training.config import with_preset
    from ganforge.training.run import open_dataset

    if not cfg.data:
        return cfg.to_dict()
    data = open_dataset(cfg)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return with_preset(cfg, data.shape[1], data.shape[2], world).to_dict()


def build_train_command():
    """`ganforge train`, its options generated from TrainConfig's fields."""
    from ganforge.training.config import AUG, FIELDS, HYPER, IO, MAIN, MODEL, PERF, TRANSFER

    def train(config: str | None = None, dry_run: bool = False, **given) -> None:
        _train(config, dry_run, **given)

    params = [
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=str | None,
            default=typer.Option(
                None,
                "--config",
                help="TOML (or config.json) file of options; the command line overrides it.",
                metavar="FILE",
                rich_help_panel="Main",
            ),
        ),
        inspect.Parameter(
            "dry_run",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=bool,
            default=typer.Option(
                False,
                "--dry-run",
                help="Print the config as it would run (presets filled in from the data) and exit.",
                rich_help_panel="Input/output",
            ),
        ),
    ]
    order = [MAIN, MODEL, HYPER, AUG, TRANSFER, PERF, IO]  # The panels of --help, in this order.
    fields = sorted(
        (f for f in FIELDS.values() if f.metadata["opt"].cli), key=lambda f: order.index(f.metadata["opt"].group)
    )
    params += [schema_option(f) for f in fields]
    # Typer reads the generated signature (mypy does not model attributes set on a function).
    train.__signature__ = inspect.Signature(params[:1] + params[2:] + params[1:2])  # type: ignore[attr-defined]
    train.__doc__ = TRAIN_DOC.replace("PRESETS", _preset_list())
    return train


TRAIN_DOC = """Train a GAN on a folder or zip of images.

Presets (--preset; capacity alone with --model):

PRESETS

Examples:

  ganforge train --data faces-256.zip                                    # preset auto, as the official --cfg=auto

  ganforge train --data faces-256.zip --preset paper256 --resume latest  # continue after a stop

  torchrun --nproc_per_node 8 -m ganforge train --data ffhq-1024.zip --preset paper1024 --batch 32

  ganforge train --data faces-256.zip --family stylegan3-r --gamma 2     # as the official --cfg=stylegan3-r
"""


def run_training(cfg) -> None:
    """Train; expected failures (GanforgeError) reach the top-level handler as one line and exit 1."""
    from ganforge.training.loop import train as train_loop

    train_loop(cfg)


def demo(
    outdir: str = typer.Option("runs/demo", help="Where the demo data, run and generated images go."),
    kimg: float = typer.Option(DEMO_KIMG, help="Training length in kimg (the default: ~5 min on 2 CPU cores)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Generate the built-in shapes dataset, train the `demo` preset on it, and generate images from the result."""
    from pathlib import Path

    from ganforge.data.demo import make_demo_dataset
    from ganforge.training.demo import demo_config

    out = Path(outdir)
    data = make_demo_dataset(out / "shapes-32", count=1200, resolution=(32, 32))
    typer.echo(f"Demo data: {data} (1,200 images of discs, squares and crosses, 32x32)")
    cfg = demo_config(data, out, device=device, kimg=kimg)
    run_training(cfg)
    from ganforge.modelio.check import latest_good
    from ganforge.tools.generate import generate_images

    ckpt = latest_good(out / "run")
    if ckpt is None:
        fail(f"the demo run wrote no good checkpoint into {out / 'run'}: see its log", code=1)
    paths = generate_images(ckpt, seeds=list(range(8)), outdir=out / "generated", truncation_psi=1.0)
    typer.echo(f"Generated {len(paths)} images from {ckpt.name} into {out / 'generated'}")
    typer.echo("\n".join(demo_pointers(out / "run", ckpt, out)))


def demo_pointers(run_dir, ckpt, runs_root) -> list[str]:
    """Where to look once the demo is done: the progress image, the latest samples, the explorer command."""
    from ganforge.training.run import PROGRESS_NAME, PROGRESS_SEEDS

    return [
        "Where to look:",
        f"  progress: {run_dir / PROGRESS_NAME}  (the first {PROGRESS_SEEDS} sample seeds, one row each, at every "
        f"snapshot; oldest left, newest right)",
        f"  latest samples: {run_dir / 'fakes_latest.png'}",
        f"  explore the model and the run: ganforge explore --checkpoint {ckpt} --runs {runs_root}  "
        f"(needs pip install 'ganforge[explore]')",
    ]


def transfer(
    src: str = typer.Argument(..., help="Source checkpoint (.safetensors)."),
    out: str = typer.Option(..., "--out", help="Output checkpoint for `ganforge train --init`."),
    resolution: str = typer.Option(None, metavar="WxH", help="New resolution [default: the source's]."),
    preset: str = typer.Option(None, help="New capacity preset [default: the source's channels]."),
    cbase: int = typer.Option(None, help="New channel base."),
    cmax: int = typer.Option(None, help="New channel cap."),
    g_input: str = typer.Option(None, "--input", help="First block input: const or noconst (hot-swap)."),
) -> None:
    """Copy every tensor that fits into a model at another resolution, capacity or input block.

    Examples:
      ganforge transfer run/checkpoint-000025000000.safetensors --resolution 1024 --out big.safetensors
      ganforge train --data faces-1024.zip --init big.safetensors --freeze "G<=512,D<=512" --unfreeze-every 200
      ganforge transfer ckpt.safetensors --input noconst --out noconst.safetensors
    """
    from rich.table import Table

    from ganforge.tools.transfer import transfer as do_transfer

    overrides = {k: v for k, v in dict(cbase=cbase, cmax=cmax, g_input=g_input).items() if v is not None}
    plan, report = do_transfer(src, out, resolution=resolution, preset=preset, **overrides)
    table = Table(title=f"Transfer into {plan.resolution_text}, channels {list(plan.channels)}")
    for col in ("network", "copied", "new (fresh init)", "dropped (not used)"):
        table.add_column(col)
    for net, counts in report.counts().items():
        table.add_row(net, str(counts["copied"]), str(counts["new"]), str(counts["dropped"]))
    console.print(table)
    for net in ("G", "D"):
        if report.new.get(net):
            console.print(f"{net} new: " + ", ".join(sorted({n.rsplit(".", 1)[0] for n in report.new[net]})))
        if report.dropped.get(net):
            console.print(f"{net} dropped: " + ", ".join(sorted({n.rsplit(".", 1)[0] for n in report.dropped[net]})))
    console.print(f"Wrote {out}: start a run from it with `ganforge train --data DATA --init {out}`")
