"""The worker's guard: drain before the kernel's OOM killer or a full thread pool ends it badly.

An OOM kill takes every in-flight session on the worker with it (they wait out their
leases, and the steps in flight run again). A worker whose sync tool threads are all
abandoned claims nothing more and can only be freed by a restart. In both cases the
guard drains the worker, so that it finishes and commits its in-flight steps, releases
its leases and exits 0, and its supervisor starts a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tether.execution.worker import Worker
from tether.observe import process

_log = logging.getLogger("tether.execution.guard")

MEMORY_LIMIT = "memory_limit"
THREADS_EXHAUSTED = "threads_exhausted"


def parse_size(text: str) -> int:
    """Bytes from ``"512M"``, ``"2G"``, ``"1.5GiB"``, ``"800MB"`` or a plain byte count
    (K, M, G, T in powers of 1024). ``ValueError`` says what is accepted."""
    raw = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    factor = 1
    if raw and raw[-1] in units:
        factor, raw = units[raw[-1]], raw[:-1]
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(
            f"{text!r} is not a memory size; write a number of bytes or one with a unit, "
            "like 512M or 2G"
        )
    return int(value * factor)


class Guard:
    """Checks the worker every ``every`` seconds; drains it once, giving the reason."""

    def __init__(
        self,
        worker: Worker,
        *,
        max_memory: int | None,
        every: float = 0.5,
        rss: Callable[[], float] = process.rss_bytes,
    ) -> None:
        self.worker = worker
        self.max_memory = max_memory
        self.every = every
        self._rss = rss
        self.reason: str | None = None

    async def watch(self) -> None:
        """Run until it drains the worker (or is cancelled)."""
        while not self.worker.draining:
            reason = self.check()
            if reason is not None:
                self.reason = reason
                self.worker.drain(reason)
                return
            await asyncio.sleep(self.every)

    def check(self) -> str | None:
        """Why the worker must drain now, logging it; None while all is well."""
        if self.max_memory is not None:
            rss = self._rss()
            if rss >= self.max_memory:
                _log.warning(
                    "worker.memory_limit",
                    extra={
                        "worker": self.worker.instance_id,
                        "rss_bytes": int(rss),
                        "max_memory_bytes": self.max_memory,
                        "in_flight": len(self.worker.in_flight),
                        "detail": "resident memory passed --max-memory: draining (finish "
                        "in-flight steps, release leases, exit 0) before an OOM kill; look "
                        "for state kept between tasks if this repeats",
                    },
                )
                return MEMORY_LIMIT
        if self.worker.saturated:
            _log.warning(
                "worker.draining",
                extra={"worker": self.worker.instance_id, "reason": THREADS_EXHAUSTED},
            )
            return THREADS_EXHAUSTED
        return None
