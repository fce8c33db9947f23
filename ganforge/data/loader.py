"""Infinite, sharded, resumable batches for training.

`InfiniteShardedSampler` draws a fresh permutation every epoch from (seed, epoch) and gives rank r the
entries r, r+W, r+2W, ... of it, so across W ranks every index is seen exactly once per epoch. Its state
is (epoch, position); `make_loader` returns an `InfiniteLoader` whose `state_dict()` counts only the
batches actually handed out (not those prefetched by workers), so training resumes mid-epoch exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

GIB = 1 << 30


class InfiniteShardedSampler(torch.utils.data.Sampler):
    """Endless indices for one rank; iterate it from one place at a time (it keeps its own position)."""

    def __init__(
        self,
        dataset_len: int,  # Items in the dataset (mirrored copies included).
        rank: int = 0,  # This process's rank, 0..world_size-1.
        world_size: int = 1,  # Number of ranks sharing the data.
        seed: int = 0,  # Permutation seed (>= 0); epoch e uses the permutation of (seed, e).
        shuffle: bool = True,  # False = indices in order every epoch.
    ):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank}, world_size={world_size}: need world_size >= 1 and 0 <= rank < world_size")
        if dataset_len < world_size:
            raise ValueError(
                f"the dataset has {dataset_len} items but there are {world_size} ranks: every rank "
                f"needs at least one item, so use fewer ranks or more data"
            )
        if seed < 0:
            raise ValueError(f"seed={seed} must be >= 0")
        super().__init__()
        self.dataset_len, self.rank, self.world_size = dataset_len, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch = 0  # Current epoch.
        self.position = 0  # Indices of this epoch already handed out by this rank.

    @property
    def epoch_length(self) -> int:
        """Indices this rank gets per epoch (ranks differ by one when W does not divide the length)."""
        return len(range(self.rank, self.dataset_len, self.world_size))

    def order(self, epoch: int) -> np.ndarray:
        """This rank's indices for an epoch."""
        if self.shuffle:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.dataset_len)
        else:
            perm = np.arange(self.dataset_len)
        return perm[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        while True:
            order = self.order(self.epoch)
            while self.position < len(order):
                self.position += 1
                yield int(order[self.position - 1])
            self.epoch, self.position = self.epoch + 1, 0

    def advanced(self, epoch: int, position: int, count: int) -> tuple[int, int]:
        """(epoch, position) after `count` more indices from (epoch, position)."""
        total = position + count
        return epoch + total // self.epoch_length, total % self.epoch_length

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "dataset_len": self.dataset_len,
            "world_size": self.world_size,
            "rank": self.rank,
            "shuffle": self.shuffle,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume at (epoch, position); the other keys, when present, must match this sampler."""
        for key in ("dataset_len", "world_size", "seed", "shuffle"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"the sampler state was saved with {key}={state[key]!r} but this sampler has "
                    f"{key}={getattr(self, key)!r}: resume with the same dataset, ranks and seed"
                )
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position <= self.epoch_length:
            raise ValueError(
                f"sampler state epoch={epoch}, position={position} is out of range for "
                f"{self.epoch_length} indices per epoch"
            )
        self.epoch, self.position = self.advanced(epoch, position, 0)


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


def _loader_batches(loader, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    # A free function, not a method: a generator that refers back to its InfiniteLoader forms a reference cycle,
    # and a DataLoader freed by the cycle collector cannot stop its workers (its queues are closed first).
    for images, labels in loader:  # The sampler is infinite: this loop never ends.
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


class InfiniteLoader:
    """Endless (uint8 images [N, C, H, W], float32 labels [N, c_dim]) on `device`; see `make_loader`."""

    def __init__(
        self,
        dataset,
        batch_size: int,
        sampler: InfiniteShardedSampler,
        workers: int,
        device: torch.device,
        resident: bool,
        memory_budget: int,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.dataset, self.batch_size, self.sampler, self.device = dataset, batch_size, sampler, device
        self.resident = resident
        self._images = self._labels = self._loader = None
        if resident:
            self._load_resident(workers, memory_budget)
        else:
            self._loader = torch.utils.data.DataLoader(
                dataset,
                batch_size=batch_size,
                sampler=sampler,
                num_workers=workers,
                drop_last=True,
                pin_memory=device.type == "cuda",
                persistent_workers=workers > 0,
            )
        self._start = (sampler.epoch, sampler.position)
        self._consumed = 0
        self._it: Iterator | None = None

    def _load_resident(self, workers: int, memory_budget: int) -> None:
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
        self._images, self._labels = images.to(self.device), labels.to(self.device)

    def _resident_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = iter(self.sampler)
        n = self._images.shape[0]
        while True:
            idx = torch.tensor([next(indices) for _ in range(self.batch_size)], dtype=torch.int64)
            flip = (idx >= n).to(self.device)
            base = (idx % n).to(self.device)
            images = self._images[base]
            if bool(flip.any()):
                images[flip] = images[flip].flip(-1)
            yield images, self._labels[base]

    def __iter__(self) -> InfiniteLoader:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._it is None:
            if not self.resident and self._loader is None:
                raise RuntimeError("this loader was closed: make a new one with make_loader")
            self._it = self._resident_batches() if self.resident else _loader_batches(self._loader, self.device)
        batch = next(self._it)
        self._consumed += self.batch_size
        return batch

    def close(self) -> None:
        """Stop the worker processes now (they also stop when the loader is garbage-collected)."""
        self._it = self._loader = None

    def state_dict(self) -> dict:
        """Sampler state after the batches handed out so far (prefetched ones are not counted)."""
        epoch, position = self.sampler.advanced(*self._start, self._consumed)
        return {**self.sampler.state_dict(), "epoch": epoch, "position": position}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a state_dict(): the next batch is the one that followed it."""
        self.sampler.load_state_dict(state)
        self._start, self._consumed, self._it = (self.sampler.epoch, self.sampler.position), 0, None


def make_loader(
    dataset,  # An ImageDataset (or any dataset of (uint8 [C, H, W], float32 [c_dim]) items).
    batch_size: int,  # Images per batch on this rank.
    rank: int = 0,  # This process's rank.
    world_size: int = 1,  # Number of ranks.
    seed: int = 0,  # Shuffle seed, shared by all ranks.
    workers: int = 2,  # DataLoader worker processes (0 = decode in this process).
    device: str | torch.device = "cpu",  # Where batches are delivered.
    resident: bool = False,  # Decode everything once into one uint8 tensor on `device` (small datasets).
    *,
    shuffle: bool = True,  # False = in order (evaluation).
    memory_budget: int = 4 * GIB,  # Largest resident image tensor, in bytes.
    state: dict | None = None,  # A previous `state_dict()` to resume from.
) -> InfiniteLoader:
    """An infinite iterator of (uint8 images [N, C, H, W], float32 labels [N, c_dim]) for one rank."""
    sampler = InfiniteShardedSampler(len(dataset), rank, world_size, seed, shuffle)
    if state is not None:
        sampler.load_state_dict(state)
    return InfiniteLoader(dataset, batch_size, sampler, workers, torch.device(device), resident, memory_budget)
