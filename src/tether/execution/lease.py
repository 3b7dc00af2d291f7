"""The lease keeper: renews a running task's lease and notices when it is lost.

It also carries the task's queued events to the store between commits and picks
up a cancellation request, so a long step costs no extra writes of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tether import errors, types
from tether.execution.context import LeaseView
from tether.execution.emitter import Emitter
from tether.execution.settings import ExecutionSettings
from tether.observe import events
from tether.store.base import Store

_log = logging.getLogger("tether.execution.lease")


class LeaseKeeper(LeaseView):
    def __init__(
        self,
        store: Store,
        lease: types.Lease,
        settings: ExecutionSettings,
        emitter: Emitter,
        *,
        cancel_requested: bool = False,
    ) -> None:
        self.lease = lease
        self.lost = False
        self.cancel_requested = cancel_requested
        self._store = store
        self._settings = settings
        self._emitter = emitter
        self._loop_task: asyncio.Task[None] | None = None
        self._victim: asyncio.Task[object] | None = None
        self._stopping = False

    def start(self, victim: asyncio.Task[object] | None) -> None:
        """Begin renewing; ``victim`` is cancelled at once if the lease is lost."""
        self._victim = victim
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop renewing. A cancellation can be swallowed by a driver awaiting under
        ``asyncio.wait_for`` (Python 3.11 loses a cancel that races the inner result),
        so the loop also checks a flag, and the cancel is repeated until it ends."""
        self._stopping = True
        task, self._loop_task = self._loop_task, None
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.05)
        with contextlib.suppress(asyncio.CancelledError):
            task.result()

    def mark_lost(self) -> None:
        if not self.lost:
            self.lost = True
            self._emitter.emit(events.LEASE_LOST, epoch=self.lease.epoch)

    async def _run(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._settings.renew_every)
            if self._stopping:
                return
            try:
                self.lease = await self._store.renew_lease(
                    self.lease, lease_ttl=self._settings.lease_ttl
                )
                taken = self._emitter.take()
                if taken:
                    try:
                        await self._store.append_events(self.lease.task_id, taken, lease=self.lease)
                    except BaseException:
                        self._emitter.give_back(taken)
                        raise
                task = await self._store.get_task(self.lease.task_id)
                self.cancel_requested = task.cancel_requested
            except errors.LeaseLost:
                self._lose()
                return
            except errors.TetherError as exc:
                # The next tick tries again; fencing keeps the store safe meanwhile. Once
                # the lease has run out without a renewal, another worker may be running
                # the task: stop here rather than keep causing side effects.
                _log.warning(
                    "lease.renewal_failed",
                    extra={"task": self.lease.task_id, "error": exc.message},
                )
                if types.now() > self.lease.expires_at:
                    _log.warning(
                        "lease.expired_unrenewed",
                        extra={
                            "task": self.lease.task_id,
                            "expired_at": self.lease.expires_at,
                            "detail": "abandoning this run",
                        },
                    )
                    self._lose()
                    return

    def _lose(self) -> None:
        self.mark_lost()
        if self._victim is not None:
            self._victim.cancel()
