"""A worker: claims tasks from the store and runs up to ``concurrency`` of them at once.

Workers hold no session state between tasks; everything a task needs is in the
store, so any worker can continue any task. ``Runtime.run`` uses the same machinery
for one task in-process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping

from tether import errors, types
from tether.execution.committer import Committer
from tether.execution.runner import TaskRunner, Workflow
from tether.execution.settings import ExecutionSettings
from tether.observe import events
from tether.store.base import Claim, Store

_log = logging.getLogger("tether.execution.worker")


class Worker:
    def __init__(
        self,
        store: Store,
        workflows: Mapping[str, Workflow],
        *,
        worker_id: str,
        concurrency: int = 8,
        settings: ExecutionSettings | None = None,
        observers: events.Observer | None = None,
        agents: Collection[str] | None = None,
        committer: Committer | None = None,
    ) -> None:
        if concurrency < 1:
            raise errors.InvalidInput("a worker's concurrency must be at least 1")
        self.store = store
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.settings = settings or ExecutionSettings()
        self.agents = list(agents) if agents is not None else list(workflows)
        self.runner = TaskRunner(
            store,
            workflows,
            worker=worker_id,
            settings=self.settings,
            observers=observers or events.Observers(),
            committer=committer or Committer(store),
        )
        self._running: dict[str, asyncio.Task[types.TaskRecord | None]] = {}
        self._draining = False
        self._wake = asyncio.Event()

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def in_flight(self) -> list[str]:
        return list(self._running)

    def wake(self) -> None:
        """Look for work now (a new task was submitted)."""
        self._wake.set()

    async def serve(self) -> None:
        """Claim and run tasks until ``drain`` is called, then wait for in-flight ones."""
        while not self._draining:
            claimed = False
            if len(self._running) < self.concurrency:
                claim = await self._claim()
                if claim is not None:
                    claimed = True
                    self._start(claim)
            if not claimed:
                self._wake.clear()
                await self._idle()

    async def _idle(self) -> None:
        """Wait up to ``poll_interval`` for work: a local wake-up (a task of this process
        ended, or ``wake``), or the store's notice that a task became claimable anywhere
        (``Store.wait_for_work``: PostgreSQL's LISTEN/NOTIFY; SQLite just sleeps)."""
        local = asyncio.ensure_future(self._wake.wait())
        remote = asyncio.ensure_future(self.store.wait_for_work(self.settings.poll_interval))
        try:
            await asyncio.wait(
                (local, remote),
                timeout=self.settings.poll_interval,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in (local, remote):
                waiter.cancel()
            await asyncio.gather(local, remote, return_exceptions=True)

    async def _claim(self, task_id: str | None = None) -> Claim | None:
        try:
            return await self.store.claim_task(
                self.worker_id,
                lease_ttl=self.settings.lease_ttl,
                agents=self.agents,
                task_id=task_id,
            )
        except errors.StoreUnavailable as exc:
            _log.warning("worker %s: claim failed, store unavailable: %s", self.worker_id, exc)
            await asyncio.sleep(self.settings.poll_interval)
            return None

    def _start(self, claim: Claim) -> asyncio.Task[types.TaskRecord | None]:
        job = asyncio.get_running_loop().create_task(self.runner.run(claim))
        task_id = claim.task.id
        self._running[task_id] = job

        def done(t: asyncio.Task[types.TaskRecord | None]) -> None:
            self._running.pop(task_id, None)
            self._wake.set()
            if not t.cancelled() and t.exception() is not None:
                _log.error("task %s: runner crashed: %r", task_id, t.exception())

        job.add_done_callback(done)
        return job

    def drain(self) -> None:
        """Stop claiming; ``shutdown`` then waits for in-flight steps."""
        self._draining = True
        self._wake.set()

    async def shutdown(self, grace: float | None = None) -> None:
        """Let in-flight tasks run up to ``grace`` seconds, then release the rest at once."""
        self.drain()
        grace = self.settings.drain_grace if grace is None else grace
        jobs = list(self._running.values())
        if jobs:
            _, pending = await asyncio.wait(jobs, timeout=grace)
            for job in pending:
                job.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def run_task(self, task_id: str) -> types.TaskRecord:
        """Run one task in this process until it ends, waiting while another worker
        holds it, and return its final record."""
        while True:
            task = await self.store.get_task(task_id)
            if task.status in types.FINAL_STATUSES:
                return task
            if task.agent not in self.agents:
                raise errors.UnknownAgent(
                    f"task {task_id} belongs to agent {task.agent!r}, which this process has "
                    f"not registered (it has {sorted(self.agents) or 'none'}); pass the spec "
                    "that defines it",
                    task=task_id,
                )
            claim = await self._claim(task_id)
            if claim is None:
                await asyncio.sleep(self.settings.poll_interval)
                continue
            job = self._start(claim)
            record = await job
            if record is not None and record.status in types.FINAL_STATUSES:
                return record
