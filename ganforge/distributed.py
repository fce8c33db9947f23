"""Everything about several processes in one place: torchrun set-up, this process's rank, and the cross-rank
reductions the loop, ADA and the metrics use. Every function is a no-op (or the identity) in a single process,
so callers never test for torch.distributed themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ganforge.devices import parse_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Single process unless torchrun set WORLD_SIZE > 1; NCCL on GPUs, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), parse_device(device_name)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = parse_device(device_name, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def running() -> bool:
    """More than one process joined by torch.distributed."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ----------------------------------------------------------------------------
# Reductions.


def _flag(flag: bool, device: str | torch.device, op) -> bool:
    if not running():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=op)
    return bool(t.item())


def any_rank(flag: bool, device: str | torch.device) -> bool:
    """True if any rank says so (e.g. 'the weights diverged')."""
    return _flag(flag, device, dist.ReduceOp.MAX) if running() else flag


def every_rank(flag: bool, device: str | torch.device) -> bool:
    """True only if every rank says so (a cache file seen by rank 0 alone must not skip a collective)."""
    return _flag(flag, device, dist.ReduceOp.MIN) if running() else flag


def broadcast_flag(flag: bool, device: str | torch.device) -> bool:
    """Rank 0's decision, on every rank."""
    if not running():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over ranks (a new tensor; `t` itself in a single process)."""
    if not running():
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def rank_share(n: int, rank: int, world: int) -> range:
    """The contiguous items of `rank` among n: shares differ by at most one item."""
    return range(rank * n // world, (rank + 1) * n // world)


def gather_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """Every rank's [n_r, F] share of n rows (as `rank_share` splits them), concatenated in rank order."""
    rank, world = rank_world()
    if world == 1:
        return x
    most = max(len(rank_share(n, r, world)) for r in range(world))
    padded = torch.zeros([most, x.shape[1]], dtype=x.dtype, device=x.device)
    padded[: len(x)] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: len(rank_share(n, r, world))] for r, p in enumerate(parts)])


# ----------------------------------------------------------------------------
# Data-parallel training.


def data_parallel(module: nn.Module, device: torch.device, find_unused: bool) -> nn.Module:
    """`module` wrapped in DistributedDataParallel (gradients averaged over ranks); `module` itself in a single
    process. DDP registers the parameters that require grad when it is built: all of them are switched on for
    the wrapping and off again after (the loop's phases toggle them)."""
    if not running():
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    wrapped = DDP(
        module.requires_grad_(True), device_ids=ids, broadcast_buffers=False, find_unused_parameters=find_unused
    )
    module.requires_grad_(False)
    return wrapped
