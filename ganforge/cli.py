"""Command line: one thin function per command; the work lives in the package.

Examples:
    ganforge inspect --preset config-f --resolution 1024
    ganforge inspect --preset tiny --resolution 512x256 --json
    ganforge inspect --preset tiny --resolution 64 --family dcgan
    ganforge inspect --family stylegan3-r --resolution 256 --json
"""

from __future__ import annotations

import inspect as pyinspect
import json
import sys
from pathlib import Path
from typing import cast

import typer
from rich.table import Table

from ganforge.console import console, fail, run_cli, usage
from ganforge.errors import GanforgeError
from ganforge.latents import MAX_SEEDS, check_psi, check_rotate, parse_seeds, parse_translate
from ganforge.plan import make_plan, parse_resolution
from ganforge.tools.cli import NoiseMode
from ganforge.tools.directions import check_strength, parse_direction, parse_layers

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="StyleGAN2-family GANs at any resolution.",
)


@app.callback()
def root() -> None:
    """ganforge: train and use StyleGAN2-family GANs at any resolution."""


def _inspect(
    preset: str, resolution: str, family: str, img_channels: int, classes: int, as_json: bool, **model
) -> None:
    """Per-layer shapes, parameter counts and memory for a preset at a resolution (no GPU, no memory used)."""
    from ganforge.inspector import LayerRow, format_bytes, format_count, inspect_plan, linear_text
    from ganforge.training.config import TrainConfig, with_preset
    from ganforge.training.preflight import plan_overrides

    try:
        h, w = parse_resolution(resolution)
        given = {k: v for k, v in model.items() if v is not None}
        cfg = with_preset(TrainConfig(preset=preset, family=family, **given).resolved(), h, w)
        overrides, channel_table = plan_overrides(cfg)
        assert cfg.model is not None  # with_preset always fills the capacity preset.
        plan = make_plan(
            cfg.model,
            (h, w),
            family=family,
            img_channels=img_channels,
            c_dim=classes,
            channel_table=channel_table,
            **overrides,
        )
    except GanforgeError as e:
        fail(str(e))
    info = inspect_plan(plan)
    if as_json:
        sys.stdout.write(json.dumps(info) + "\n")
        return
    for key, title in (("generator", "Generator"), ("discriminator", "Discriminator")):
        net = info[key]
        table = Table(title=f"{title} — {plan.family} {plan.preset} at {plan.resolution_text} (WxH)")
        table.add_column("layer")
        table.add_column("kind")
        table.add_column("output [C, H, W]")
        table.add_column("params", justify="right")
        table.add_column("flattened")
        for row in net["layers"]:
            linear = linear_text(LayerRow(**row))
            table.add_row(row["name"], row["kind"], str(row["output_shape"]), f"{row['params']:,}", linear)
        console.print(table)
        console.print(
            f"{title}: {net['params']:,} parameters ({format_count(net['params'])}), "
            f"{net['buffers']:,} buffer values, ~{format_bytes(net['activation_bytes_per_image'])} "
            f"of activations per image (fp32)"
        )
    g = info["generator"]
    console.print(
        f"num_ws: {g['num_ws']}   output: {g['output_shape']}   base: {plan.base_w}x{plan.base_h}   "
        f"channels per block: {list(plan.channels)}"
    )
    console.print(
        f"G+D: {info['total_params']:,} parameters ({format_count(info['total_params'])}); "
        f"Adam training state ~{format_bytes(info['train_state_bytes'])}"
    )
    m = info["memory_estimate"]
    console.print(
        f"Estimated peak memory (fp32): training {format_bytes(m['train_base_bytes'])} + "
        f"{format_bytes(m['train_bytes_per_image'])} per image of the per-GPU batch; inference "
        f"{format_bytes(m['infer_base_bytes'])} + {format_bytes(m['infer_bytes_per_image'])} per image"
    )


def build_inspect_command():
    """`ganforge inspect`: the model options are those of `ganforge train` (generated from the same schema)."""
    from ganforge.cli_schema import schema_option
    from ganforge.training.config import FIELDS, MODEL, PRESET_NAMES

    def inspect_command(**kwargs) -> None:
        _inspect(**kwargs)

    fixed = [
        (
            "preset",
            str,
            typer.Option("auto", help=f"Preset (capacity of a recipe or a model preset): {', '.join(PRESET_NAMES)}."),
        ),
        ("resolution", str, typer.Option("1024", metavar="WxH", help="Output size: 256 or WxH such as 512x256.")),
        (
            "family",
            str,
            typer.Option("stylegan2", help="Model family: stylegan2, stylegan3-t, stylegan3-r or dcgan."),
        ),
        ("img_channels", int, typer.Option(3, min=1, max=16, help="Image channels (3 = RGB, 1 = grayscale).")),
        ("classes", int, typer.Option(0, min=0, max=100_000, help="Number of label classes; 0 = unconditional.")),
        ("as_json", bool, typer.Option(False, "--json", help="Print one JSON object instead of tables.")),
    ]
    params = [pyinspect.Parameter(n, pyinspect.Parameter.KEYWORD_ONLY, default=d, annotation=t) for n, t, d in fixed]
    params += [schema_option(f) for f in FIELDS.values() if f.metadata["opt"].group == MODEL and f.name != "patch_d"]
    # Typer reads the generated signature (mypy does not model attributes set on a function).
    inspect_command.__signature__ = pyinspect.Signature(params)  # type: ignore[attr-defined]
    inspect_command.__doc__ = _inspect.__doc__
    return inspect_command


@app.command()
def generate(
    checkpoint: str = typer.Option(
        ..., help="ganforge checkpoint (.safetensors) or official StyleGAN2-ADA / StyleGAN3 .pkl."
    ),
    seeds: str = typer.Option(
        "0-7", callback=usage(parse_seeds), help=f"Seeds: 0-99 or 1,5,9 (0..2^32-1, at most {MAX_SEEDS:,})."
    ),
    outdir: str = typer.Option("out", help="Output folder."),
    trunc: float = typer.Option(1.0, callback=usage(check_psi), help="Truncation psi, -10..10 (1 = off, 0.7 typical)."),
    trunc_cutoff: int = typer.Option(None, min=0, help="Truncate only the first N ws (0..num_ws)."),
    class_idx: int = typer.Option(None, "--class", min=0, help="Class label for conditional models."),
    noise_mode: NoiseMode = typer.Option(NoiseMode.const, help="Per-pixel noise."),
    grid: bool = typer.Option(False, "--grid", help="Also write grid.png."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto."),
    translate: str = typer.Option(
        None,
        metavar="X,Y",
        callback=usage(parse_translate),
        help="StyleGAN3: shift the image by X,Y in units of its size (official gen_images.py --translate).",
    ),
    rotate: float = typer.Option(
        None, metavar="DEG", callback=usage(check_rotate), help="StyleGAN3: rotate the image by DEG degrees."
    ),
    direction: str = typer.Option(
        None,
        metavar="FILE:K",
        callback=usage(parse_direction),
        help="Move w along direction K (0 = strongest) of a `ganforge directions` file.",
    ),
    strength: float = typer.Option(
        None, callback=usage(check_strength), help="--direction strength (GANSpace: standard deviations)."
    ),
    layers: str = typer.Option(
        None, metavar="A-B", callback=usage(parse_layers), help="ws moved by --direction; default: the file's."
    ),
    ws: str = typer.Option(
        None, metavar="FILE", help="Draw the ws saved in FILE (.npz or .safetensors: clip-search, project) instead."
    ),
) -> None:
    """Generate images from seeds (seed -> z exactly as the official generate.py).

    StyleGAN3 generators can be moved: ganforge generate --checkpoint sg3.pkl --translate 0.1,0 --rotate 15
    Along a latent direction: ganforge generate --checkpoint CKPT --direction sefa.safetensors:0 --strength 3
    Saved ws (clip-search's w.safetensors, project's projected_w.npz): ganforge generate --checkpoint CKPT --ws w.npz
    """
    from ganforge.tools.generate import generate_images

    paths = generate_images(
        checkpoint,
        cast(list[int], seeds),  # The option's callback parsed the text.
        outdir,
        trunc,
        trunc_cutoff,
        noise_mode.value,
        class_idx,
        grid=grid,
        device=device,
        translate=cast("tuple[float, float] | None", translate),  # The option's callback parsed the text.
        rotate=rotate,
        direction=cast("tuple[str, int] | None", direction),  # The option's callback parsed the text.
        strength=strength,
        layers=cast("list[int] | None", layers),
        ws=ws,
    )
    console.print(f"Wrote {len(paths)} images to {outdir}")


@app.command()
def convert(
    src: str = typer.Argument(..., help="Official StyleGAN2-ADA or StyleGAN3 network-snapshot .pkl."),
    dest: str = typer.Argument(..., help="Output .safetensors checkpoint."),
) -> None:
    """Convert an official StyleGAN2-ADA or StyleGAN3 pickle to a safe ganforge checkpoint (no code from the
    pickle runs)."""
    from ganforge.images import OutputError, check_output_file
    from ganforge.modelio.convert import convert_official

    if not src.strip():
        fail("SRC is empty: give the official network-snapshot .pkl to convert", 1)
    if Path(src).suffix.lower() == ".safetensors":
        fail(f"SRC {src} is a .safetensors file, which ganforge reads as it is: nothing to convert", 1)
    dest_path = check_output_file(dest, "DEST", (".safetensors",))
    if dest_path.resolve() == Path(src).resolve():
        raise OutputError(f"DEST {dest} is SRC: choose another output file")
    console.print(f"Wrote {convert_official(src, dest_path)}")


def _register() -> None:
    app.command(name="inspect")(build_inspect_command())
    from ganforge import cli_train
    from ganforge.data.cli import dataset_app

    app.add_typer(dataset_app, name="dataset")
    app.command(name="train")(cli_train.build_train_command())
    app.command()(cli_train.demo)
    app.command()(cli_train.transfer)
    from ganforge.tools import cli as tools_cli

    app.command("style-mix")(tools_cli.style_mix)
    app.command("video")(tools_cli.video)
    app.command("export")(tools_cli.export)
    app.command("project")(tools_cli.project)
    from ganforge.tools.cli_directions import directions

    app.command()(directions)
    from ganforge.tools.clip_cli import clip_search

    app.command("clip-search")(clip_search)
    from ganforge.explore.cli import explore

    app.command()(explore)
    from ganforge.metrics.cli import metrics as metrics_command

    app.command(name="metrics")(metrics_command)


_register()


def main(args: list[str] | None = None) -> None:
    run_cli(app, args)


if __name__ == "__main__":
    main()
