"""ImageDataset: a torch Dataset over a prepared StyleGAN2-ADA dataset, or over any folder/zip of images.

A prepared dataset (a `dataset.json` at the root) is trusted to hold one size, as the official loader
does: only the first image is read up front. A plain folder or zip is scanned (headers only): its images
must share one size unless `resolution` is given, in which case every image is center-crop-resized on the
fly. Items are `(uint8 [C, H, W], float32 one-hot [c_dim])`; with `xflip=True` the length doubles and
index i >= n is image i - n mirrored left-right (the official `--mirror`).

The zip is opened lazily in each process (DataLoader workers re-open it after fork or spawn).
"""

from __future__ import annotations

import io
import os
import warnings
from collections import Counter

import numpy as np
import torch
from PIL import Image

from ganforge.data.check import GRAY_MODES, suggested_dest
from ganforge.data.convert import Target, convert_image, oriented_size
from ganforge.data.loader import InfiniteLoader, StepSampler, make_loader
from ganforge.data.source import LABELS_NAME, LabelLookup, Source, SourceError
from ganforge.plan import format_resolution, parse_resolution

__all__ = ["ImageDataset", "InfiniteLoader", "StepSampler", "make_loader"]

SUBSET_SEED = 0  # max_size keeps a fixed random subset (sorted), as the official loader does.


class ImageDataset(torch.utils.data.Dataset):
    """Images and one-hot labels from a folder or zip; see the module docstring."""

    def __init__(
        self,
        path: str | os.PathLike,  # Prepared dataset (folder or zip) or any folder/zip of images.
        resolution: int | str | None = None,  # 256 or WxH: center-crop-resize every image to it; None = as stored.
        use_labels: bool = True,  # Read class labels from dataset.json; False = c_dim 0.
        xflip: bool = False,  # Double the length with left-right mirrored copies.
        max_size: int | None = None,  # Keep at most this many images (a fixed random subset); None = all.
    ):
        self.path = str(path)
        self.source = Source(path)
        names = self.source.names
        if not names:
            raise SourceError(
                f"{self.path} holds no images: give a folder or zip of images (.png, .jpg, ...), "
                f"or build one with `ganforge dataset prepare`"
            )
        if max_size is not None and max_size < len(names):
            keep = np.sort(np.random.default_rng(SUBSET_SEED).permutation(len(names))[: max(max_size, 1)])
            names = [names[i] for i in keep]
        self.names = names
        self.xflip = bool(xflip)
        self.prepared = self.source.has(LABELS_NAME)
        want = parse_resolution(resolution) if resolution is not None else None
        (h, w), channels = self._probe(want)
        self._strict = want is None  # Without a resolution, every image must already be (h, w).
        self._target = Target(h, w, channels, "crop")
        self.shape = [channels, h, w]
        self.label_ids = self._read_labels() if use_labels else None
        self.c_dim = int(self.label_ids.max()) + 1 if self.label_ids is not None and len(self.label_ids) else 0
        self.num_classes = self.c_dim

    # ------------------------------------------------------------------ set-up
    def _header(self, name: str) -> tuple[int, int, str]:
        with self.source.open(name) as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(f)
            w, h = oriented_size(img)
            return h, w, img.mode

    def _probe(self, want: tuple[int, int] | None) -> tuple[tuple[int, int], int]:
        """((h, w), channels): from the first image of a prepared dataset, else from every header."""
        names = self.names[:1] if self.prepared else self.names
        sizes: Counter = Counter()
        modes: set[str] = set()
        for name in names:
            try:
                h, w, mode = self._header(name)
            except Exception as e:
                raise SourceError(
                    f"{name} in {self.path} cannot be read ({type(e).__name__}: {e}): clean the data "
                    f"with `ganforge dataset prepare` or remove the file"
                ) from None
            sizes[(h, w)] += 1
            modes.add(mode)
        channels = 1 if all(m in GRAY_MODES for m in modes) else 3
        if want is not None:
            return want, channels
        if len(sizes) > 1:
            found = ", ".join(f"{format_resolution(h, w)}: {n}" for (h, w), n in sizes.most_common(4))
            top = format_resolution(*sizes.most_common(1)[0][0])
            raise SourceError(
                f"{self.path} has images of {len(sizes)} sizes (WxH {found}{', ...' if len(sizes) > 4 else ''}): "
                f"pass resolution= to center-crop them on the fly, or make them one size with "
                f"`ganforge dataset prepare {self.path} {suggested_dest(self.path, top)} --resolution {top}`"
            )
        return next(iter(sizes)), channels

    def _read_labels(self) -> np.ndarray | None:
        labels = self.source.labels()
        if not labels:
            return None
        lookup = LabelLookup(labels)
        ids = [lookup.get(n) for n in self.names]
        missing = [n for n, c in zip(self.names, ids) if c is None]
        if missing:
            raise SourceError(
                f"{len(missing)} images of {self.path} have no label in {LABELS_NAME} (first: "
                f"{missing[0]}): label every image with `ganforge dataset prepare ... --labels FILE`, "
                f"or pass use_labels=False"
            )
        return np.asarray(ids, dtype=np.int64)

    # ------------------------------------------------------------------ access
    @property
    def num_images(self) -> int:
        """Distinct images (without the mirrored copies)."""
        return len(self.names)

    def __len__(self) -> int:
        return self.num_images * (2 if self.xflip else 1)

    @property
    def label_counts(self) -> list[int]:
        """Images per class over the distinct images (empty without labels)."""
        if not self.c_dim or self.label_ids is None:
            return []
        return np.bincount(self.label_ids, minlength=self.c_dim).tolist()

    def get_label(self, index: int) -> torch.Tensor:
        """One-hot float32 [c_dim] ([0] without labels)."""
        label = torch.zeros(self.c_dim, dtype=torch.float32)
        if self.c_dim and self.label_ids is not None:
            label[int(self.label_ids[index % self.num_images])] = 1
        return label

    def _decode(self, name: str) -> np.ndarray:
        h, w = self.shape[1:]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img: Image.Image = Image.open(io.BytesIO(self.source.read(name)))
                size = oriented_size(img)
                if not self._strict or size == (w, h):
                    img, _ = convert_image(img, self._target)
        except Exception as e:
            raise SourceError(
                f"{name} in {self.path} cannot be decoded ({type(e).__name__}: {e}): clean the data "
                f"with `ganforge dataset prepare`"
            ) from None
        if size != (w, h) and self._strict:
            raise SourceError(
                f"{name} in {self.path} is {size[0]}x{size[1]} but the dataset is {w}x{h}: pass "
                f"resolution= or re-prepare it with `ganforge dataset prepare ... --resolution {w}x{h}`"
            )
        a = np.asarray(img)
        return a[:, :, None] if a.ndim == 2 else a

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} items")
        flip = index >= self.num_images
        a = self._decode(self.names[index - self.num_images if flip else index])
        if flip:
            a = a[:, ::-1]
        chw = np.require(a.transpose(2, 0, 1), requirements=["C", "W"])  # One copy: contiguous and writable.
        return torch.from_numpy(chw), self.get_label(index)

    def __repr__(self) -> str:
        c, h, w = self.shape
        return (
            f"ImageDataset({self.path!r}: {self.num_images} images, {w}x{h} (WxH), {c} channel(s), "
            f"c_dim={self.c_dim}, xflip={self.xflip})"
        )
