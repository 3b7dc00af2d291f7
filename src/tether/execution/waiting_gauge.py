"""``tasks_waiting`` from the store: waiting tasks belong to no process, so the gauge
is read from the store's count, by the process that serves metrics."""

from __future__ import annotations

import asyncio
import logging

from tether import errors
from tether.observe.metrics import Metrics
from tether.store.base import Store

_log = logging.getLogger("tether.execution.waiting_gauge")

REFRESH_EVERY = 5.0


async def refresh(store: Store, metrics: Metrics) -> None:
    metrics.set_waiting(await store.count_tasks(status="waiting"))


async def keep(store: Store, metrics: Metrics, every: float = REFRESH_EVERY) -> None:
    """Refresh the gauge every ``every`` seconds until cancelled; a store that does not
    answer leaves the last value and is asked again next time."""
    while True:
        try:
            await refresh(store, metrics)
        except errors.TetherError as exc:
            _log.warning("metrics.waiting_not_refreshed", extra={"error": exc.message})
        await asyncio.sleep(every)
