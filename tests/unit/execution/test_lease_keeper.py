"""The lease keeper stops even when a store call swallows its cancellation (as
``asyncio.wait_for`` in Python 3.11 can, inside a driver's connection pool)."""

from __future__ import annotations

import asyncio
import contextlib

from tether import types
from tether.execution.emitter import Emitter
from tether.execution.lease import LeaseKeeper
from tether.execution.settings import ExecutionSettings
from tether.observe import events


class SwallowingStore:
    """Just the three calls the keeper makes; the first renewal swallows a cancel."""

    def __init__(self) -> None:
        self.renewals = 0
        self.entered = asyncio.Event()

    async def renew_lease(self, lease: types.Lease, *, lease_ttl: float) -> types.Lease:
        self.renewals += 1
        self.entered.set()
        if self.renewals == 1:
            with contextlib.suppress(asyncio.CancelledError):  # lost, as a racing wait_for loses it
                await asyncio.sleep(10)
        return types.Lease(lease.task_id, lease.owner, lease.epoch, types.now() + lease_ttl)

    async def append_events(self, task_id: str, evs: object, *, lease: object = None) -> None:
        return None

    async def get_task(self, task_id: str) -> types.TaskRecord:
        now = types.now()
        return types.TaskRecord(task_id, "t", "s", "a", "running", "in", now, now)


def test_stop_returns_when_a_renewal_swallows_the_cancel() -> None:
    async def main() -> int:
        store = SwallowingStore()
        now = types.now()
        task = types.TaskRecord("task", "t", "s", "a", "running", "in", now, now)
        keeper = LeaseKeeper(
            store,  # type: ignore[arg-type]
            types.Lease("task", "w", 1, now + 10),
            ExecutionSettings(lease_ttl=3.0, heartbeat_interval=0.01),
            Emitter(task, events.Observers(), "w"),
        )
        keeper.start(None)
        await store.entered.wait()
        await asyncio.wait_for(keeper.stop(), timeout=30)  # a hang guard, not a timing
        renewals = store.renewals
        await asyncio.sleep(0.1)
        assert store.renewals == renewals, "the keeper kept renewing after stop()"
        return renewals

    assert asyncio.run(main()) == 1
