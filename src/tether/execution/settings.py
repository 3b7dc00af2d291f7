"""The knobs of execution, with defaults that recover from a lost worker in seconds."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from tether import errors


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    lease_ttl: float = 10.0
    """Seconds a lease lives without renewal; a killed worker's tasks resume after this."""
    heartbeat_interval: float | None = None
    """Seconds between lease renewals; default a third of ``lease_ttl``."""
    poll_interval: float = 0.25
    """Seconds an idle worker waits before looking for work again."""
    drain_grace: float = 30.0
    """Seconds a draining worker lets in-flight steps finish before releasing them."""
    on_stuck: Literal["retry", "handover"] = "retry"
    """What a stuck step (silent past its heartbeat timeout) leads to: ``retry`` it here
    by its retry policy, or ``handover``: release the task so a fresh run continues it
    (the stuck work is abandoned), for hangs that belong to this worker."""
    durable_sleep_after: float = 30.0
    """Seconds beyond which ``ctx.sleep`` (and ``sleep_until``) is a durable timer: the
    task waits holding no lease nor worker slot, and any worker resumes it when due."""
    tool_timeout: float = 300.0
    """Default seconds a tool may run without a heartbeat before it is timed out."""
    stuck_after: float = 120.0
    """Seconds a step with a timeout may run without ever heartbeating before it is
    reported stuck (a ``step.stuck`` event and ``sessions_stuck``); it keeps running
    until its timeout. A step that beats is stuck when silent past its heartbeat timeout."""
    sync_tool_threads: int = 32
    """Threads a worker runs sync tools on. A timed-out sync tool's thread is abandoned
    until it returns; when every thread is abandoned the worker stops claiming."""
    max_memory: int | None = None
    """Resident bytes past which a ``tether worker`` drains and exits 0 (None: no limit)."""
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)
    """How backoff waits; tests inject a recorder instead of wall time."""
    rand: Callable[[], float] = field(default=random.random)
    """Jitter source; tests inject a fixed one."""

    def __post_init__(self) -> None:
        """Refuse knobs that cannot work. A renewal at or past half the lease's life lets
        the worker's own leases lapse mid-step, and its own claim loop would take them
        again: the same task twice at once in one process."""
        for name in ("lease_ttl", "poll_interval", "tool_timeout"):
            value = getattr(self, name)
            if not value > 0 or value == float("inf"):
                raise errors.InvalidInput(
                    f"{name.replace('_', ' ')} must be a positive number of seconds, not {value}"
                )
        if not self.drain_grace >= 0:
            raise errors.InvalidInput(
                f"drain grace must be 0 or more seconds, not {self.drain_grace}"
            )
        beat = self.heartbeat_interval
        if beat is not None and not 0 < beat < self.lease_ttl / 2:
            raise errors.InvalidInput(
                f"heartbeat {beat}s must be more than 0 and less than half the lease ttl "
                f"({self.lease_ttl}s / 2 = {self.lease_ttl / 2:g}s), so a lease is renewed "
                "before it can lapse; lower --heartbeat or raise --lease-ttl"
            )

    @property
    def renew_every(self) -> float:
        return self.heartbeat_interval or self.lease_ttl / 3
