"""This process's memory and the machine's free memory (Linux /proc and getrusage; safe fallbacks elsewhere)."""

from __future__ import annotations

import sys
from pathlib import Path

GIB = 2**30


def _proc_kib(path: str, key: str) -> int | None:
    """The 'key: N kB' value of a /proc file in KiB, or None where there is no such file or line."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_ram_bytes() -> int | None:
    """MemAvailable: what can be allocated without swapping; None where the system does not say."""
    kib = _proc_kib("/proc/meminfo", "MemAvailable")
    return None if kib is None else kib * 1024


def rss_gb() -> float:
    """This process's resident memory now, GiB (0 where unknown)."""
    kib = _proc_kib("/proc/self/status", "VmRSS")
    return 0.0 if kib is None else kib / 2**20


def peak_rss_gb() -> float:
    """This process's resident-memory high-water mark, GiB (0 where unknown).

    Linux's VmHWM first: getrusage's ru_maxrss survives execve, so a process started by a large one (subprocess
    forks, then execs) would report its parent's peak as its own."""
    kib = _proc_kib("/proc/self/status", "VmHWM")
    if kib is not None:
        return kib / 2**20
    try:
        import resource
    except ImportError:  # Windows.
        return 0.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**30 if sys.platform == "darwin" else rss / 2**20  # macOS reports bytes, Linux KiB.
