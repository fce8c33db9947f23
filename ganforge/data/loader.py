"""Infinite, sharded batches whose step-k batch is a pure function of (seed, k): resumable from a step index.

`StepSampler` is the one sampler, used by training (`training/run.py` `build_loader`) and by `make_loader`.
Epoch e is the permutation `torch.randperm(n)` seeded with seed + e; the global batch of step k is positions
[k·B, (k+1)·B) of the concatenated epochs (B = batch_size · world_size), and rank r takes its contiguous
share [r·batch_size, (r+1)·batch_size) of it. Across ranks every index is therefore seen once per epoch, and
resuming needs only the step index: `make_loader(..., start_step=k)` hands out step k's batch first.
`InfiniteLoader.next_step` counts the batches actually handed out (not those prefetched by workers).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

GIB = 1 << 30


def _check(n: int, batch_size: int, rank: int, world_size: int, start_step: int) -> None:
    if n < 1:
        raise ValueError("the dataset is empty: give it at least one image")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank}, world_size={world_size}: need world_size >= 1 and 0 <= rank < world_size")
    if start_step < 0:
        raise ValueError(f"start_step={start_step} must be at least 0")


class StepSampler(torch.utils.data.Sampler[list[int]]):
    """Endless batches of indices for one rank, starting at step `start_step`; see the module docstring."""

    def __init__(
        self,
        n: int,  # Items in the dataset (mirrored copies included).
        batch_size: int,  # Indices per batch on this rank; the global batch is batch_size · world_size.
        rank: int = 0,  # This process's rank, 0..world_size-1.
        world_size: int = 1,  # Number of ranks sharing the data.
        seed: int = 0,  # Epoch e is the permutation seeded with seed + e (the same on every rank).
        start_step: int = 0,  # First step handed out by iteration.
        shuffle: bool = True,  # False = indices in order every epoch.
    ):
        _check(n, batch_size, rank, world_size, start_step)
        super().__init__()
        self.n, self.batch_size, self.rank, self.world_size = n, batch_size, rank, world_size
        self.seed, self.start_step, self.shuffle = seed, start_step, shuffle
        self._perms: dict[int, torch.Tensor] = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of epoch `epoch` (int64 [n]); the last two used are cached."""
        if epoch not in self._perms:
            if self.shuffle:
                perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))
            else:
                perm = torch.arange(self.n)
            self._perms = {e: p for e, p in self._perms.items() if e == epoch - 1}
            self._perms[epoch] = perm
        return self._perms[epoch]

    def indices(self, step: int) -> list[int]:
        """This rank's indices of step `step`."""
        first = (step * self.world_size + self.rank) * self.batch_size
        out: list[int] = []
        pos, end = first, first + self.batch_size
        while pos < end:  # A batch may span epochs (several when the dataset is smaller than the batch).
            epoch, offset = divmod(pos, self.n)
            take = min(end - pos, self.n - offset)
            out += self.permutation(epoch)[offset : offset + take].tolist()
            pos += take
        return out

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.indices(step)
            step += 1


def _decode_all(dataset, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every distinct image and label, decoded once (in worker processes) into two CPU tensors."""
    n = getattr(dataset, "num_images", len(dataset))
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, sampler=range(n), num_workers=workers)
    images = torch.empty([n, *dataset[0][0].shape], dtype=torch.uint8)
    labels = torch.empty([n, *dataset[0][1].shape], dtype=torch.float32)
    start = 0
    for img, lab in loader:
        images[start : start + len(img)], labels[start : start + len(img)] = img, lab
        start += len(img)
    return images, labels


def _loader_batches(batches: Iterator, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    # A free function, not a method: a generator that refers back to its InfiniteLoader forms a reference cycle,
    # and a DataLoader freed by the cycle collector cannot stop its workers (its queues are closed first).
    for images, labels in batches:  # The sampler is infinite: this loop never ends.
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def _resident_batches(
    images: torch.Tensor, labels: torch.Tensor, sampler: StepSampler
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    n = images.shape[0]
    for batch in sampler:
        idx = torch.tensor(batch, dtype=torch.int64)
        flip = (idx >= n).to(images.device)  # Index >= n: the mirrored copy of image index - n.
        base = (idx % n).to(images.device)
        out = images[base]
        if bool(flip.any()):
            out[flip] = out[flip].flip(-1)
        yield out, labels[base]


class InfiniteLoader:
    """Endless (uint8 images [N, C, H, W], float32 labels [N, c_dim]) on `device`; see `make_loader`."""

    def __init__(
        self,
        dataset,
        sampler: StepSampler,
        workers: int,
        device: torch.device,
        resident: bool,
        memory_budget: int,
        pin_memory: bool,
    ):
        self.dataset, self.sampler, self.device, self.resident = dataset, sampler, device, resident
        self.batch_size = sampler.batch_size
        self.handed_out = 0  # Batches returned by next() so far.
        self._it: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
        if resident:
            images, labels = self._load_resident(workers, memory_budget)
            self._it = _resident_batches(images, labels, sampler)
        else:
            loader = torch.utils.data.DataLoader(
                dataset,
                batch_sampler=sampler,
                num_workers=workers,
                pin_memory=pin_memory,
                prefetch_factor=2 if workers else None,
                persistent_workers=False,
            )
            # Started now, not at the first next(): starting draws the workers' base seed from torch's global
            # generator, which the training loop seeds right before each next() (the step's z and noise).
            self._it = _loader_batches(iter(loader), device)

    @property
    def next_step(self) -> int:
        """The step of the next batch: pass it as `start_step` to resume right after the batches handed out."""
        return self.sampler.start_step + self.handed_out

    def _load_resident(self, workers: int, memory_budget: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = getattr(self.dataset, "num_images", len(self.dataset))
        shape = list(self.dataset[0][0].shape)
        need = n * int(np.prod(shape))
        if need > memory_budget:
            raise ValueError(
                f"resident=True would hold {need / GIB:.2f} GiB on {self.device} ({n} images of "
                f"{shape} uint8), above memory_budget={memory_budget / GIB:.2f} GiB: use resident=False, "
                f"a smaller max_size, or raise memory_budget"
            )
        images, labels = _decode_all(self.dataset, workers)
        return images.to(self.device), labels.to(self.device)

    def __iter__(self) -> InfiniteLoader:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._it is None:
            raise RuntimeError("this loader was closed: make a new one with make_loader")
        batch = next(self._it)
        self.handed_out += 1
        return batch

    def close(self) -> None:
        """Stop the worker processes and free a resident copy now (also done when the loader is garbage-collected)."""
        self._it = None


def make_loader(
    dataset,  # An ImageDataset (or any dataset of (uint8 [C, H, W], float32 [c_dim]) items).
    batch_size: int,  # Images per batch on this rank; the global batch is batch_size · world_size.
    rank: int = 0,  # This process's rank.
    world_size: int = 1,  # Number of ranks.
    seed: int = 0,  # Shuffle seed, shared by all ranks.
    workers: int = 2,  # DataLoader worker processes (0 = decode in this process).
    device: str | torch.device = "cpu",  # Where batches are delivered.
    resident: bool = False,  # Decode everything once into one uint8 tensor on `device` (small datasets).
    *,
    shuffle: bool = True,  # False = in order (evaluation).
    memory_budget: int = 4 * GIB,  # Largest resident image tensor, in bytes.
    start_step: int = 0,  # First step to hand out: a previous loader's `next_step` resumes it exactly.
    pin_memory: bool | None = None,  # Page-locked CPU batches; None = when `device` is CUDA.
) -> InfiniteLoader:
    """An infinite iterator of (uint8 images [N, C, H, W], float32 labels [N, c_dim]) for one rank.

    Batch k is `StepSampler(len(dataset), batch_size, rank, world_size, seed).indices(k)`: the same on every
    run, so `make_loader(..., start_step=loader.next_step)` continues exactly where `loader` stopped.
    """
    sampler = StepSampler(len(dataset), batch_size, rank, world_size, seed, start_step, shuffle)
    device = torch.device(device)
    pin = device.type == "cuda" if pin_memory is None else pin_memory
    return InfiniteLoader(dataset, sampler, workers, device, resident, memory_budget, pin and not resident)
