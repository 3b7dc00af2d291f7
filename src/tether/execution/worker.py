"""A worker: claims tasks from the store and runs up to ``concurrency`` of them at once.

Workers hold no session state between tasks; everything a task needs is in the
store, so any worker can continue any task. ``Runtime.run`` uses the same machinery
for one task in-process.

Leases. A worker has a stable id (``worker_id``, by default from the host and its
slot, see ``identity``) and an incarnation (one per ``Worker`` object). Each claim
is made under a lease owner of its own, ``"{worker_id}/{incarnation}.{n}"``: the store
hands a claimer every running task whose lease owner is the claimer itself (so that
a restarted worker takes its leases back), and a fresh owner per claim keeps a live
worker from claiming its own in-flight tasks again. A new incarnation takes back,
at once, every lease an earlier incarnation of the same worker id left behind
(``take_back``), by claiming it under that lease's owner, once that holder is known to
have stopped (``holder``: a live worker with the same id keeps its leases). A task
claimed again while a run of it in this process has not ended starts after that run.

Drain. ``drain()`` stops claiming. A task that is between steps, or waiting out a
retry's backoff, is released at its next step boundary (cancelled there; the runner
gives the lease back so another worker resumes it at once); a task in the middle of
a step finishes that step and commits it first. ``shutdown(grace)`` waits up to
``grace`` seconds for that, then cancels what is left, which releases it too.

Sync tools run on the worker's own bounded pool (``threads``). When every thread
of it is abandoned (timed-out sync tools that never returned) the worker claims
nothing more (``saturated``), logs ``worker.threads_exhausted`` once, and says so
in ``/readyz`` and the metrics; ``tether worker``'s guard then drains it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Collection, Mapping

from tether import errors, types
from tether.execution import holder
from tether.execution.committer import Committer
from tether.execution.context import Phase
from tether.execution.runner import TaskRunner, Workflow
from tether.execution.settings import ExecutionSettings
from tether.execution.threads import SyncThreads
from tether.observe import events
from tether.store.base import Claim, Store

_log = logging.getLogger("tether.execution.worker")

MAX_CLAIMS_AT_ONCE = 8
"""Claims a worker makes side by side when it finds many claimable tasks at once."""

INCARNATION_SEPARATOR = "/"


def worker_id_of(name: str) -> str:
    """The stable worker id in a worker instance's name (``"{worker_id}/{incarnation}"``,
    what steps, runs and events record as ``worker``) or in a lease owner (the instance's
    name plus ``.n``); ``name`` itself when it has no incarnation."""
    return name.partition(INCARNATION_SEPARATOR)[0]


class _Boundaries:
    """Each running task's step boundaries, told directly by its context (``on_phase``),
    so a draining worker can release a task between two steps instead of in one."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self.phase: dict[str, Phase] = {}

    def at(self, task_id: str, phase: Phase) -> None:
        self.phase[task_id] = phase
        if phase != "between" and self._worker.draining:
            # A step that has not run yet (stop before its first side effect), or a
            # backoff: nothing is lost by releasing the task here.
            self._worker.release_now(task_id)

    def forget(self, task_id: str) -> None:
        self.phase.pop(task_id, None)


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
        incarnation: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise errors.InvalidInput("a worker's concurrency must be at least 1")
        if not worker_id or INCARNATION_SEPARATOR in worker_id:
            raise errors.InvalidInput(
                f"worker id {worker_id!r} must be non-empty and may not contain "
                f"{INCARNATION_SEPARATOR!r}; pick another --worker-id"
            )
        self.store = store
        self.worker_id = worker_id
        self.incarnation = incarnation or holder.new_incarnation()
        self.instance_id = f"{worker_id}{INCARNATION_SEPARATOR}{self.incarnation}"
        """This running worker's name, ``"{worker_id}/{incarnation}"``: it signs its steps,
        runs and events with it (their ``worker`` field), and each claim's lease owner is
        it plus ``.n``."""
        self._claims = itertools.count(1)
        self.concurrency = concurrency
        self.settings = settings or ExecutionSettings()
        self.agents = list(agents) if agents is not None else list(workflows)
        self._boundaries = _Boundaries(self)
        self.threads = SyncThreads(self.settings.sync_tool_threads, name=f"tether-tool-{worker_id}")
        """Where this worker's sync tools run."""
        self.runner = TaskRunner(
            store,
            workflows,
            instance_id=self.instance_id,
            settings=self.settings,
            observers=observers or events.Observers(),
            committer=committer or Committer(store),
            threads=self.threads,
            on_phase=self._boundaries.at,
        )
        self._running: dict[str, asyncio.Task[types.TaskRecord | None]] = {}
        self._releasing: set[str] = set()
        self._draining = False
        self.drain_reason: str | None = None
        """Why the worker drains (``signal``, ``memory_limit``, ``threads_exhausted``)."""
        self._saturated = False
        self._took_back = False
        self._wake = asyncio.Event()

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def in_flight(self) -> list[str]:
        return list(self._running)

    @property
    def abandoned_threads(self) -> int:
        return self.threads.abandoned

    @property
    def saturated(self) -> bool:
        """Every sync tool thread is abandoned: this worker claims nothing new."""
        exhausted = self.threads.exhausted
        if exhausted and not self._saturated:
            _log.error(
                "worker.threads_exhausted",
                extra={
                    "worker": self.instance_id,
                    "abandoned": self.threads.abandoned,
                    "size": self.threads.size,
                    "detail": "every sync tool thread runs a call that was given up; this "
                    "worker claims no more tasks: restart it (SIGTERM drains it), raise "
                    "sync_tool_threads, or make the tools return on their timeout",
                },
            )
        self._saturated = exhausted
        return exhausted

    def wake(self) -> None:
        """Look for work now (a new task was submitted)."""
        self._wake.set()

    # ---- claiming ------------------------------------------------------------------

    async def serve(self) -> None:
        """Claim and run tasks until ``drain`` is called; ``shutdown`` then waits for
        in-flight steps and releases the rest."""
        await self.take_back()
        burst = 1
        while not self._draining:
            claimed = 0
            free = 0 if self.saturated else self.concurrency - len(self._running)
            if free > 0:
                asked = min(free, burst)
                for claim in await self._claim_free(asked):
                    claimed += 1
                    self._start(claim)
                # While every claim finds work, claim more at once (a drained peer's
                # tasks, a burst of submissions); one empty claim goes back to one at a
                # time, so an idle worker asks the store once per poll.
                burst = min(burst * 2, MAX_CLAIMS_AT_ONCE) if claimed == asked else 1
            if not claimed:
                self._wake.clear()
                if self._draining:
                    break
                await self._idle()

    async def _idle(self) -> None:
        """Wait up to ``poll_interval`` for work: a local wake-up (a task of this process
        ended, ``wake``, ``drain``) or the store's notice that a task became claimable on
        any machine (``Store.wait_for_work``: PostgreSQL's LISTEN/NOTIFY; SQLite sleeps)."""
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

    async def take_back(self) -> list[str]:
        """Resume at once every task an earlier incarnation of this worker id still holds
        (it was killed or restarted), without waiting for those leases to expire."""
        if self._took_back:
            return []
        self._took_back = True
        try:
            running = await self.store.list_tasks(status="running", limit=1_000_000)
        except errors.StoreUnavailable as exc:
            _log.warning(
                "worker.take_back_failed", extra={"worker": self.instance_id, "error": str(exc)}
            )
            return []
        mine = [
            t
            for t in sorted(running, key=lambda t: t.created_at)
            if self._is_earlier_self(t) and t.agent in self.agents
        ]
        # only leases whose holder stopped: a live worker with the same id keeps its own
        stopped = await asyncio.gather(
            *(holder.holder_stopped(self.store, t, self.settings) for t in mine)
        )
        for task, gone in zip(mine, stopped, strict=True):
            if not gone:
                _log.warning(
                    "worker.id_in_use",
                    extra={"worker": self.instance_id, "task": task.id, "holder": task.lease_owner},
                )
        resumed: list[str] = []
        for task in (t for t, gone in zip(mine, stopped, strict=True) if gone):
            if len(self._running) >= self.concurrency or self._draining:
                break
            claim = await self._claim_as(task.lease_owner or "", task.id)
            if claim is not None:
                self._start(claim)
                resumed.append(task.id)
        return resumed

    def _is_earlier_self(self, task: types.TaskRecord) -> bool:
        lease_owner = task.lease_owner
        return (
            lease_owner is not None
            and task.id not in self._running
            and worker_id_of(lease_owner) == self.worker_id
        )

    async def _claim(self, task_id: str | None = None) -> Claim | None:
        if task_id is not None:
            try:
                task = await self.store.get_task(task_id)
            except errors.StoreUnavailable as exc:
                await self._claim_failed(exc)
                return None
            if (
                task.status == "running"
                and self._is_earlier_self(task)
                and await holder.holder_stopped(self.store, task, self.settings)
            ):
                return await self._claim_as(task.lease_owner or "", task_id)
        return await self._claim_as(f"{self.instance_id}.{next(self._claims)}", task_id)

    async def _claim_free(self, n: int) -> list[Claim]:
        """Up to ``n`` tasks for free slots, each under a fresh lease owner, in one call
        (on SQLite one transaction)."""
        owners = [f"{self.instance_id}.{next(self._claims)}" for _ in range(n)]
        try:
            return await self.store.claim_tasks(
                owners, lease_ttl=self.settings.lease_ttl, agents=self.agents
            )
        except errors.StoreUnavailable as exc:
            await self._claim_failed(exc)
            return []

    async def _claim_as(self, lease_owner: str, task_id: str | None) -> Claim | None:
        """Claim as ``lease_owner``: a fresh one of this worker's, or an earlier
        incarnation's (whose running task the store then hands back as a ``resume``)."""
        try:
            return await self.store.claim_task(
                lease_owner,
                lease_ttl=self.settings.lease_ttl,
                agents=self.agents,
                task_id=task_id,
            )
        except errors.StoreUnavailable as exc:
            await self._claim_failed(exc)
            return None

    async def _claim_failed(self, exc: errors.StoreUnavailable) -> None:
        _log.warning("worker.claim_failed", extra={"worker": self.instance_id, "error": str(exc)})
        await asyncio.sleep(self.settings.poll_interval)
        return None

    # ---- running -------------------------------------------------------------------

    def _start(self, claim: Claim) -> asyncio.Task[types.TaskRecord | None]:
        task_id = claim.task.id
        self._boundaries.phase[task_id] = "between"
        loop = asyncio.get_running_loop()
        earlier = holder.running_here.get(task_id)
        if earlier is not None and (earlier.done() or earlier.get_loop() is not loop):
            earlier = None  # ended, or another thread's loop: fencing keeps that one apart
        if earlier is not None:
            # Claimed again while a run of it in this process has not ended (its lease
            # lapsed): that run is fenced off now. Stop it; the new run starts after it
            # ends, never beside it, so no step of it runs twice at once.
            _log.warning("task.claimed_while_running", extra={"task": task_id})
            earlier.cancel()
        job = loop.create_task(self._run_after(earlier, claim))
        self._running[task_id] = job
        holder.running_here[task_id] = job

        def done(t: asyncio.Task[types.TaskRecord | None]) -> None:
            if self._running.get(task_id) is t:
                del self._running[task_id]
                self._boundaries.forget(task_id)
                self._releasing.discard(task_id)
            if holder.running_here.get(task_id) is t:
                del holder.running_here[task_id]
            self._wake.set()
            if not t.cancelled() and t.exception() is not None:
                _log.error(
                    "task.runner_crashed", extra={"task": task_id, "error": repr(t.exception())}
                )

        job.add_done_callback(done)
        return job

    async def _run_after(
        self, earlier: asyncio.Future[object] | None, claim: Claim
    ) -> types.TaskRecord | None:
        if earlier is not None:
            await asyncio.gather(earlier, return_exceptions=True)
        return await self.runner.run(claim)

    def release_now(self, task_id: str) -> None:
        """Stop running ``task_id`` here; its runner gives the lease back at once."""
        job = self._running.get(task_id)
        if job is not None and task_id not in self._releasing:
            self._releasing.add(task_id)
            job.cancel()

    # ---- draining ------------------------------------------------------------------

    def drain(self, reason: str = "signal") -> None:
        """Stop claiming; tasks between steps or in backoff are released at once, tasks
        in a step at the end of that step. ``reason`` goes on their ``task.released``."""
        if self.drain_reason is None:
            self.drain_reason = reason
            self.runner.release_reason = "drain" if reason == "signal" else reason
        self._draining = True
        self._wake.set()
        for task_id in list(self._running):
            if self._boundaries.phase.get(task_id) == "backoff":
                self.release_now(task_id)

    async def shutdown(self, grace: float | None = None) -> None:
        """Let in-flight steps finish up to ``grace`` seconds (default the settings'
        ``drain_grace``), then release the tasks still running; return when every task
        has left this worker."""
        self.drain()
        grace = self.settings.drain_grace if grace is None else grace
        jobs = list(self._running.values())
        if not jobs:
            return
        _, pending = await asyncio.wait(jobs, timeout=grace)
        for task_id, job in list(self._running.items()):
            if job in pending:
                _log.warning(
                    "task.released_mid_step",
                    extra={
                        "worker": self.instance_id,
                        "task": task_id,
                        "grace": grace,
                        "detail": "no step boundary within the grace; the step runs again "
                        "elsewhere",
                    },
                )
                self.release_now(task_id)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # ---- one task in-process --------------------------------------------------------

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
            if task.status == "waiting" and not (task.wake_at and task.wake_at <= types.now()):
                await asyncio.sleep(self.settings.poll_interval)  # parked: nothing to claim
                continue
            claim = await self._claim(task_id)
            if claim is None:
                await asyncio.sleep(self.settings.poll_interval)
                continue
            job = self._start(claim)
            record = await job
            if record is not None and record.status in types.FINAL_STATUSES:
                return record
