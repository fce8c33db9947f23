"""`ganforge train` and `ganforge demo`: thin wrappers over ganforge.train."""

from __future__ import annotations

import json

import typer

from ganforge.console import console, fail

H_MAIN, H_HYPER, H_PERF, H_IO = "Main", "Hyperparameters", "Performance", "Input/output"


def train(
    data: str = typer.Option(None, help="Dataset folder or zip.", rich_help_panel=H_MAIN),
    outdir: str = typer.Option(None, help="Parent directory of runs [default: runs].", rich_help_panel=H_MAIN),
    run_name: str = typer.Option(None, help="Run directory name [default: family-preset-WxH-data].",
                                 rich_help_panel=H_MAIN),
    config: str = typer.Option(None, help="TOML file of options; the command line overrides it.",
                               rich_help_panel=H_MAIN),
    preset: str = typer.Option(None, help="Capacity/training preset [default: tiny].", rich_help_panel=H_MAIN),
    resolution: str = typer.Option(None, metavar="WxH|auto", help="Model size [default: auto = the data's].",
                                   rich_help_panel=H_MAIN),
    family: str = typer.Option(None, help="stylegan2 or dcgan.", rich_help_panel=H_MAIN),
    cond: bool = typer.Option(None, "--cond/--no-cond", help="Use the dataset's class labels.", rich_help_panel=H_MAIN),
    patch_d: bool = typer.Option(None, "--patch-d/--no-patch-d", help="DCGAN: PatchGAN discriminator.",
                                 rich_help_panel=H_MAIN),
    kimg: float = typer.Option(None, min=0.001, help="Length of the run in thousands of images.",
                               rich_help_panel=H_MAIN),
    batch: int = typer.Option(None, min=1, help="Global batch size [default: preset].", rich_help_panel=H_MAIN),
    batch_gpu: int = typer.Option(None, min=1, help="Images per pass per process; smaller than the per-process "
                                  "batch = gradient accumulation (same batch, less memory).", rich_help_panel=H_PERF),
    seed: int = typer.Option(None, min=0, help="Random seed.", rich_help_panel=H_MAIN),
    device: str = typer.Option(None, help="auto, cpu, cuda or cuda:N.", rich_help_panel=H_MAIN),
    resume: str = typer.Option(None, metavar="latest|PATH", help="Continue a run.", rich_help_panel=H_MAIN),
    g_lr: str = typer.Option(None, help="G learning rate, or a schedule: 0.002,0.0002@10000.",
                             rich_help_panel=H_HYPER),
    d_lr: str = typer.Option(None, help="D learning rate or schedule [default: G's].", rich_help_panel=H_HYPER),
    d_lr_mult: float = typer.Option(None, help="D lr multiplier (2 = D at twice G's rate).", rich_help_panel=H_HYPER),
    gamma: str = typer.Option(None, help="R1 weight (0 = off), or a schedule: linear:10,5@5000.",
                              rich_help_panel=H_HYPER),
    pl_weight: float = typer.Option(None, min=0, help="Path-length weight (0 = off).", rich_help_panel=H_HYPER),
    style_mixing: str = typer.Option(None, help="Style-mixing probability (0 = off) or a schedule.",
                                     rich_help_panel=H_HYPER),
    ema_kimg: float = typer.Option(None, min=0, help="G EMA half-life in kimg.", rich_help_panel=H_HYPER),
    mirror: bool = typer.Option(None, "--mirror/--no-mirror", help="Add x-flipped copies of the data.",
                                rich_help_panel=H_HYPER),
    aug: str = typer.Option(None, help="Augmentation: ada (default), fixed, diffaugment or none.",
                            rich_help_panel=H_HYPER),
    aug_pipe: str = typer.Option(None, help="ADA op groups: bgc (default), bg, blit, geom, color, bgcfnc …",
                                 rich_help_panel=H_HYPER),
    aug_p: float = typer.Option(None, min=0, help="Initial (ada) or constant (fixed) augment probability.",
                                rich_help_panel=H_HYPER),
    ada_target: str = typer.Option(None, help="ADA target (0.6), or a schedule.", rich_help_panel=H_HYPER),
    ada_kimg: float = typer.Option(None, min=0.001, help="ADA speed: kimg for p to move by 1 (500).",
                                   rich_help_panel=H_HYPER),
    diffaugment: str = typer.Option(None, help="DiffAugment policy (color,translation,cutout).",
                                    rich_help_panel=H_HYPER),
    cbase: int = typer.Option(None, help="Channel base.", rich_help_panel=H_HYPER),
    cmax: int = typer.Option(None, help="Channel cap.", rich_help_panel=H_HYPER),
    z_dim: int = typer.Option(None, help="Latent z size.", rich_help_panel=H_HYPER),
    w_dim: int = typer.Option(None, help="Latent w size.", rich_help_panel=H_HYPER),
    mapping: int = typer.Option(None, "--map", help="Mapping depth.", rich_help_panel=H_HYPER),
    init: str = typer.Option(None, help="Start from these weights (e.g. `ganforge transfer` output).",
                             rich_help_panel=H_MAIN),
    freeze: str = typer.Option(None, help="Frozen parts: mapping, G<=512, D<256, G:b64 (comma-separated).",
                               rich_help_panel=H_HYPER),
    freeze_d: int = typer.Option(None, min=0, help="FreezeD: freeze the first N D blocks.", rich_help_panel=H_HYPER),
    unfreeze_every: float = typer.Option(None, min=0, help="Release one frozen resolution every N kimg.",
                                         rich_help_panel=H_HYPER),
    unfreeze_order: str = typer.Option(None, help="top-down or bottom-up.", rich_help_panel=H_HYPER),
    precision: str = typer.Option(None, help="auto, bf16, fp16 or fp32.", rich_help_panel=H_PERF),
    compile: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile the main phases (eager "
                                 "fallback if compiling fails).", rich_help_panel=H_PERF),
    workers: int = typer.Option(None, min=0, help="Data loader processes.", rich_help_panel=H_PERF),
    snap: float = typer.Option(None, help="kimg between checkpoints and sample grids.", rich_help_panel=H_IO),
    tick: float = typer.Option(None, help="kimg between progress lines.", rich_help_panel=H_IO),
    keep: int = typer.Option(None, min=1, help="Checkpoints to keep.", rich_help_panel=H_IO),
    metrics: str = typer.Option(None, help="Metrics at every snapshot, e.g. fid50k_full.", rich_help_panel=H_IO),
    metrics_num_gen: int = typer.Option(None, min=1, help="Generated images per snapshot metric.",
                                        rich_help_panel=H_IO),
    detector_inception: str = typer.Option(None, help="FID Inception TorchScript file.", rich_help_panel=H_IO),
    tensorboard: bool = typer.Option(None, "--tensorboard/--no-tensorboard", help="Write TensorBoard logs.",
                                     rich_help_panel=H_IO),
    memory_check: bool = typer.Option(None, "--memory-check/--no-memory-check", help="Refuse to start when the "
                                      "estimated peak memory does not fit the device [default: check].",
                                      rich_help_panel=H_PERF),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit.",
                                 rich_help_panel=H_IO),
) -> None:
    """Train a GAN on a folder or zip of images.

    Examples:
      ganforge train --data faces.zip --preset paper256 --kimg 25000
      ganforge train --data faces.zip --preset paper256 --kimg 25000 --resume latest
      torchrun --nproc_per_node 8 -m ganforge train --data faces.zip --preset paper1024 --batch 32
    """

    from ganforge.train.config import ConfigError, load_config_file, merge

    given = dict(data=data, outdir=outdir, run_name=run_name, preset=preset, resolution=resolution, family=family,
                 cond=cond, patch_d=patch_d, kimg=kimg, batch=batch, batch_gpu=batch_gpu, seed=seed, device=device,
                 resume=resume,
                 g_lr=g_lr, d_lr=d_lr, d_lr_mult=d_lr_mult, gamma=gamma, pl_weight=pl_weight,
                 style_mixing=style_mixing, ema_kimg=ema_kimg, mirror=mirror, precision=precision,
                 compile=compile, workers=workers, memory_check=memory_check,
                 snap=snap, tick=tick, keep=keep, tensorboard=tensorboard, init=init, freeze=freeze,
                 freeze_d=freeze_d, unfreeze_every=unfreeze_every, unfreeze_order=unfreeze_order, aug=aug,
                 aug_pipe=aug_pipe, aug_p=aug_p, ada_target=ada_target, ada_kimg=ada_kimg, diffaugment=diffaugment,
                 metrics=metrics, metrics_num_gen=metrics_num_gen, detector_inception=detector_inception)
    for key in ("g_lr", "d_lr", "gamma", "style_mixing", "ada_target"):  # numbers stay numbers; schedules stay strings
        if isinstance(given[key], str):
            try:
                given[key] = float(given[key])
            except ValueError:
                pass
    model = {k: v for k, v in dict(cbase=cbase, cmax=cmax, z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping).items()
             if v is not None}
    try:
        file_values = load_config_file(config) if config else {}
        if model:
            given["model"] = {**file_values.get("model", {}), **model}
        cfg = merge(file_values, given).resolved()
    except ConfigError as e:
        fail(str(e))
    if dry_run:
        typer.echo(json.dumps(cfg.to_dict(), indent=2))
        return
    run_training(cfg)


def run_training(cfg) -> None:
    """Train; expected failures (GanforgeError) reach the top-level handler as one line and exit 1."""
    from ganforge.train.loop import train as train_loop

    train_loop(cfg)


def demo(
    outdir: str = typer.Option("runs/demo", help="Where the demo data, run and generated images go."),
    kimg: float = typer.Option(12.0, help="Training length in thousands of images (about 2 minutes on a CPU)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Generate the built-in shapes dataset, train the tiny model on it, and generate images from the result."""
    from pathlib import Path

    from ganforge.data.demo import make_demo_dataset
    from ganforge.train.config import TrainConfig

    out = Path(outdir)
    data = make_demo_dataset(out / "shapes-32", count=1200, resolution=(32, 32))
    typer.echo(f"Demo data: {data} (1,200 images of discs, squares and crosses, 32x32)")
    cfg = TrainConfig(data=str(data), outdir=str(out), run_name="run", preset="tiny", kimg=kimg, batch=16,
                      snap=max(kimg / 4, 0.5), tick=max(kimg / 12, 0.25), device=device, resume="latest",
                      workers=0, grid=(8, 4)).resolved()
    run_training(cfg)
    from ganforge.checkpoint_check import latest_good
    from ganforge.tools.generate import generate_images

    ckpt = latest_good(out / "run")
    paths = generate_images(ckpt, seeds=list(range(8)), outdir=out / "generated", truncation_psi=1.0)
    typer.echo(f"Generated {len(paths)} images from {ckpt.name} into {out / 'generated'}")


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
            console.print(f"{net} new: " + ", ".join(sorted({n.rsplit('.', 1)[0] for n in report.new[net]})))
        if report.dropped.get(net):
            console.print(f"{net} dropped: " + ", ".join(sorted({n.rsplit('.', 1)[0] for n in report.dropped[net]})))
    console.print(f"Wrote {out}: start a run from it with `ganforge train --data DATA --init {out}`")
