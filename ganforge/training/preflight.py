"""Checks before a run starts: everything that can refuse it runs before the run directory exists.

The model Plan against the data (never resizing the data), the accumulation rounds, the freeze specs
against the model's layers, the --init weights, and the memory estimate against what the device has.
A refused start leaves nothing behind.
"""

from __future__ import annotations

import os

import torch

from ganforge.modelio import check
from ganforge.netcheck import expected_shapes
from ganforge.plan import (
    Plan,
    PlanError,
    check_resolution,
    format_resolution,
    make_plan,
    parse_resolution,
)
from ganforge.plan_compare import compare_data
from ganforge.training.config import SG3_FAMILIES, ConfigError, TrainConfig, filled, sg3_magnitude_ema_beta
from ganforge.training.freeze import FreezeError, matches_any


def _explicit_resolution(cfg: TrainConfig, data_shape: list[int]) -> None:
    """An explicit --resolution must be the data's: training data is never resized silently."""
    if cfg.resolution == "auto":
        return
    h, w = parse_resolution(cfg.resolution)
    check_resolution(h, w)  # An impossible size is named as such, with the nearest valid ones.
    dh, dw = data_shape[1], data_shape[2]
    if (h, w) != (dh, dw):
        want, have = format_resolution(h, w), format_resolution(dh, dw)
        stem = str(cfg.data).rstrip("/").removesuffix(".zip")
        raise ConfigError(
            f"--resolution {cfg.resolution} but the images in {cfg.data} are {have} (WxH), and ganforge never resizes "
            f"training data silently: make a copy at that size with `ganforge dataset prepare {cfg.data} "
            f"{stem}-{want}.zip --resolution {want}` and train on it, or drop --resolution to train at {have}"
        )


def check_outdir(cfg: TrainConfig) -> None:
    """--outdir exists as a writable folder or can be made (nothing is created here)."""
    from ganforge.images import OutputError, check_output_dir

    try:
        check_output_dir(cfg.outdir, "--outdir")
    except OutputError as e:
        raise ConfigError(str(e)) from None


# Model options (the names `ganforge train` and `inspect` use) -> Plan fields.
PLAN_FIELDS = {
    "cbase": "cbase",
    "cmax": "cmax",
    "z_dim": "z_dim",
    "w_dim": "w_dim",
    "map": "mapping_layers",
    "g_arch": "g_architecture",
    "d_arch": "d_architecture",
    "style": "style",
    "input": "g_input",
    "fp16_res": "num_fp16_res",
    "mbstd_group": "mbstd_group",
}


def plan_overrides(cfg) -> tuple[dict, dict[int, int] | None]:
    """(make_plan overrides, channel table) from the model options that are set."""
    overrides = {plan_key: getattr(cfg, key) for key, plan_key in PLAN_FIELDS.items() if getattr(cfg, key) is not None}
    if cfg.conv_clamp is not None:
        overrides["conv_clamp"] = None if cfg.conv_clamp == "none" else float(cfg.conv_clamp)
    table = {int(r): c for r, c in cfg.channels.items()} if cfg.channels else None
    return overrides, table


def training_plan(cfg: TrainConfig, data_shape: list[int], c_dim: int, device: torch.device) -> Plan:
    """Plan from the config (or the --init checkpoint), resolution 'auto' from the data; mismatches fail here."""
    if cfg.init:
        why = check.problem(cfg.init)
        if why is not None:
            raise ConfigError(f"--init {cfg.init} cannot be used: {why}")
        plan = check.inspect_file(cfg.init).plan
        rep = compare_data(plan, data_shape, c_dim, checkpoint=cfg.init)
        if not rep.ok:
            raise PlanError(f"--init {cfg.init}: {rep}")
        return plan
    _explicit_resolution(cfg, data_shape)
    res = (data_shape[1], data_shape[2])
    try:
        check_resolution(*res)
    except PlanError as e:
        raise PlanError(
            f"{e} (the size comes from the data in {cfg.data}: prepare it at a valid size with "
            f"`ganforge dataset prepare`)"
        ) from None
    overrides, table = plan_overrides(cfg)
    if cfg.precision == "fp32":
        overrides["num_fp16_res"] = 0
    elif cfg.precision in ("bf16", "fp16"):
        overrides["fp16_dtype"] = cfg.precision
    elif device.type == "cuda" and not torch.cuda.is_bf16_supported():
        overrides["fp16_dtype"] = "fp16"
    if cfg.family in SG3_FAMILIES:  # Official train.py: a half-life of 20k images whatever the batch.
        overrides["magnitude_ema_beta"] = sg3_magnitude_ema_beta(filled(cfg.batch, "batch"))
    model = filled(cfg.model, "model")
    plan = make_plan(
        model,
        res,
        family=cfg.family,
        img_channels=data_shape[0],
        c_dim=c_dim,
        channel_table=table,
        **overrides,
    )
    rep = compare_data(plan, data_shape, c_dim)
    if not rep.ok:
        raise PlanError(str(rep))
    return plan


def accumulation_rounds(cfg: TrainConfig, plan: Plan, batch_gpu: int) -> int:
    """Forward/backward passes per phase and process: batch_gpu / --batch-gpu, checked against mbstd groups."""
    size = cfg.batch_gpu or batch_gpu
    if batch_gpu % size:
        raise PlanError(
            f"--batch-gpu {size} must divide the per-process batch {batch_gpu} (--batch {cfg.batch}): "
            f"use one of {', '.join(str(d) for d in valid_pass_sizes(plan, batch_gpu))}"
        )
    group = min(plan.mbstd_group, size) if plan.family != "dcgan" and plan.mbstd_group else 0
    if group and size % group:
        world = filled(cfg.batch, "batch") // batch_gpu
        fix = f"--batch-gpu {plan.mbstd_group}" if cfg.batch_gpu else f"--batch {plan.mbstd_group * world * 2}"
        raise PlanError(
            f"{'--batch-gpu' if cfg.batch_gpu else 'the per-process batch'} {size} is not a multiple of "
            f"the minibatch-std group {plan.mbstd_group}: use {fix} or a multiple"
        )
    return batch_gpu // size


def valid_pass_sizes(plan: Plan, batch_gpu: int) -> list[int]:
    """--batch-gpu values that divide the per-process batch and fit the minibatch-std groups, ascending."""
    out = []
    for size in range(1, batch_gpu + 1):
        group = min(plan.mbstd_group, size) if plan.family != "dcgan" and plan.mbstd_group else 0
        if batch_gpu % size == 0 and not (group and size % group):
            out.append(size)
    return out


def check_freeze(cfg: TrainConfig, plan: Plan, specs: list[str]) -> None:
    """Every freeze spec must name at least one layer of this model (a typo would freeze nothing)."""
    names = {"G": list(expected_shapes(plan, "G")), "D": list(expected_shapes(plan, "D", cfg.patch_d))}
    for spec in specs:
        if not matches_any(spec, names, plan):
            blocks = ", ".join(plan.block_names)
            if plan.is_sg3:
                blocks = f"G layers input, {', '.join(x.name for x in plan.sg3_geometry)}; D blocks {blocks}"
            raise FreezeError(
                f"--freeze {spec!r} matches no layer of this model (blocks {blocks}; mapping): "
                f"use mapping, G<=R, D<R, G:bNAME, G or D"
            )


# ----------------------------------------------------------------------------
# Memory.


def _local_processes() -> int:
    """Processes sharing this machine's RAM (torchrun's LOCAL_WORLD_SIZE)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def check_memory(cfg: TrainConfig, plan: Plan, batch_gpu: int, rounds: int, device: torch.device) -> None:
    """Refuse a start whose estimated peak does not fit the free memory, naming the largest --batch-gpu that does.

    The estimate is the inspector's fp32 memory model (reduced precision needs less); `--no-memory-check` skips it.
    """
    if not cfg.memory_check:
        return
    from ganforge.inspector import estimate_peak_bytes, format_bytes, inspect_plan
    from ganforge.metrics.features import available_memory

    info = inspect_plan(plan)
    free = available_memory(device)
    if device.type == "cpu":
        free //= _local_processes()
    need = estimate_peak_bytes(info, "train", batch_gpu // rounds)
    if need <= free:
        return
    where = f"free on {device}" if device.type == "cuda" else "of RAM available to this process"
    fits = [s for s in valid_pass_sizes(plan, batch_gpu) if estimate_peak_bytes(info, "train", s) <= free]
    if fits:
        fix = (
            f"use --batch-gpu {fits[-1]} (gradient accumulation: the same batch of {cfg.batch}, estimated "
            f"{format_bytes(estimate_peak_bytes(info, 'train', fits[-1]))})"
        )
    else:
        fix = "even one image per pass does not fit: use a smaller --preset or resolution, or a larger device"
    raise ConfigError(
        f"training {plan.family} {plan.preset} at {plan.resolution_text} with {batch_gpu // rounds} image(s) per pass "
        f"needs an estimated {format_bytes(need)} but {format_bytes(free)} is {where}: {fix}; or pass "
        f"--no-memory-check to try anyway"
    )
