"""Device names as users write them (`auto`, `cpu`, `cuda`, `cuda:1`, `mps`) -> a checked torch.device."""

from __future__ import annotations

import torch

from ganforge.errors import GanforgeError


class DeviceError(GanforgeError, ValueError):
    """A device that is not a device, or that this machine does not have."""


def parse_device(name: object, local_rank: int = 0, flag: str = "--device") -> torch.device:
    """'auto' = this process's CUDA GPU when there is one, else the CPU. A CUDA device must exist here;
    a bare 'cuda' means the GPU of this process's local rank."""
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise DeviceError(f"{flag} {str(name)[:60]!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type == "meta":
        raise DeviceError(f"{flag} meta holds no data: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{flag} {text}: no CUDA GPU is visible on this machine; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= count:
            raise DeviceError(f"{flag} {text}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
    elif device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError(f"{flag} mps: Apple's Metal backend is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"{flag} {text}: ganforge runs on cpu, cuda or mps")
    return device
