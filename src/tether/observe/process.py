"""The worker process's own resource use, read at scrape time.

``rss_bytes`` is the resident set size of this process: what the kernel holds in RAM
for it, the number that grows when an agent accumulates state and that an OOM killer
acts on. Linux reads ``/proc/self/statm`` (current RSS); elsewhere the peak RSS from
``resource.getrusage`` is the best available answer.
"""

from __future__ import annotations

import os
import sys

_STATM = "/proc/self/statm"


def rss_bytes() -> float:
    """Current resident memory of this process in bytes (peak RSS where /proc is absent)."""
    try:
        with open(_STATM, "rb") as f:
            fields = f.read().split()
        return float(int(fields[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, IndexError, ValueError):
        return _peak_rss_bytes()


def _peak_rss_bytes() -> float:
    try:
        import resource
    except ImportError:  # no /proc and no resource module (Windows): unknown, not zero
        return float("nan")
    peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    # ru_maxrss is in bytes on macOS, in kibibytes on Linux and the BSDs.
    return peak if sys.platform == "darwin" else peak * 1024.0
