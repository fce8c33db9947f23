"""ganforge.resources: the memory readings the benchmarks and the bounded-memory tests rely on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ganforge.resources import peak_rss_gb, rss_gb

CHILD = "from ganforge.resources import peak_rss_gb, rss_gb; print(peak_rss_gb(), rss_gb())"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the inheritance through execve is Linux's")
def test_a_child_reports_its_own_peak_not_its_parents():
    """ru_maxrss survives execve, so a child of a large process used to report the parent's peak as its own."""
    block = bytearray(1 << 30)  # 1 GiB, every page touched: this process's peak is now above 1 GiB.
    block[::4096] = b"\x01" * len(range(0, len(block), 4096))
    assert peak_rss_gb() >= 1.0 and rss_gb() >= 1.0
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout.split()
    del block
    child_peak, child_now = float(out[0]), float(out[1])
    assert 0.0 < child_now <= child_peak < 0.5, f"child peak {child_peak:.2f} GiB, now {child_now:.2f} GiB"
