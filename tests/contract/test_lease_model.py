"""The lease state machine, as a property: hypothesis drives the real store, on each engine, through
random sequences of submit, claim, renew, release, expire, commit and finish, with
current and stale leases of several workers, and checks every answer against a model.

What must hold after every step: each claim takes exactly the task the rules name
(the claimer's own lease first, then an expired one, then the oldest queued task of a
session with nothing running and nothing older queued) and bumps its epoch; a write
under any lease but the task's current one raises ``LeaseLost`` and changes nothing;
at most one task per session runs; epochs never go back.

Each example opens a fresh store: a SQLite file, or a copy of the migrated PostgreSQL
template (``pg.fresh_url``). PostgreSQL runs fewer examples to keep its time small.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import pg
from tether import errors, types
from tether.store import Store, open_store

WORKERS = ("a", "b", "c")
SESSIONS = 3
TTL = 600.0


@dataclass
class TaskModel:
    id: str
    session: int
    status: str = "queued"
    owner: str | None = None
    epoch: int = 0
    expired: bool = False
    runs: int = 0
    steps: int = 0
    reasons: list[str] = field(default_factory=list)


class LeaseMachine(RuleBasedStateMachine):
    leases = Bundle("leases")

    engine = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="tether-lease-"))
        self.loop = asyncio.new_event_loop()
        if self.engine == "sqlite":
            self.url = f"sqlite:///{self.folder / 'leases.db'}?synchronous=normal"
        else:
            self.url = pg.fresh_url()
        self.store: Store = open_store(self.url)
        self.tasks: list[TaskModel] = []  # in submission order
        self.sessions: list[str] = []

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.store.close())
        finally:
            self.loop.close()
            shutil.rmtree(self.folder, ignore_errors=True)
            if self.engine == "postgres":
                pg.drop_url(self.url)

    @initialize()
    def open(self) -> None:
        self.run(self.store.open())
        for i in range(SESSIONS):
            tenant = f"tenant-{i % 2}"
            self.sessions.append(self.run(self.store.create_session(tenant, "agent")).id)

    # ---- the model's rules -------------------------------------------------------------

    def _current(self, lease: types.Lease) -> TaskModel | None:
        task = self._task(lease.task_id)
        if task.status == "running" and task.epoch == lease.epoch:
            return task
        return None

    def _task(self, task_id: str) -> TaskModel:
        return next(t for t in self.tasks if t.id == task_id)

    def _expected_claim(self, worker: str, only: str | None) -> tuple[TaskModel, str] | None:
        pool = [t for t in self.tasks if only is None or t.id == only]
        for t in pool:
            if t.status == "running" and t.owner == worker:
                return t, "resume"
        for t in pool:
            if t.status == "running" and t.expired:
                return t, "recovery"
        for t in pool:
            if t.status != "queued":
                continue
            same = [o for o in self.tasks if o.session == t.session]
            busy = any(o.status == "running" for o in same)
            older = any(o.status == "queued" for o in same[: same.index(t)])
            if not busy and not older:
                return t, "handover" if t.runs else "start"
        return None

    # ---- rules --------------------------------------------------------------------------

    @rule(session=st.integers(0, SESSIONS - 1))
    def submit(self, session: int) -> None:
        sid = self.sessions[session]
        tenant = f"tenant-{session % 2}"
        task = self.run(
            self.store.submit_task(
                types.NewTask(tenant=tenant, agent="agent", input="go", session_id=sid)
            )
        )
        assert task.status == "queued"
        self.tasks.append(TaskModel(task.id, session))

    def _claim(self, worker: str, only: str | None) -> types.Lease | None:
        expected = self._expected_claim(worker, only)
        got = self.run(self.store.claim_task(worker, lease_ttl=TTL, task_id=only))
        if expected is None:
            assert got is None, f"{worker} claimed {got} where the rules allow nothing"
            return None
        task, reason = expected
        assert got is not None, f"{worker} claimed nothing; expected {task.id} ({reason})"
        assert (got.task.id, got.reason) == (task.id, reason)
        assert got.lease.epoch == task.epoch + 1 and got.lease.owner == worker
        task.status, task.owner, task.epoch, task.expired = "running", worker, task.epoch + 1, False
        task.runs += 1
        task.reasons.append(reason)
        return got.lease

    @rule(target=leases, worker=st.sampled_from(WORKERS))
    def claim(self, worker: str) -> types.Lease | None:
        return self._claim(worker, None)

    @rule(target=leases, worker=st.sampled_from(WORKERS), pick=st.integers(0, 1000))
    def claim_one(self, worker: str, pick: int) -> types.Lease | None:
        if not self.tasks:
            return None
        return self._claim(worker, self.tasks[pick % len(self.tasks)].id)

    def _fenced_write(self, lease: types.Lease | None, write: Any) -> TaskModel | None:
        """Run ``write(lease)``: it must succeed under the current lease and raise
        ``LeaseLost``, changing nothing, under any other."""
        if lease is None:
            return None
        task = self._current(lease)
        if task is not None:
            self.run(write(lease))
            return task
        before = self.run(self._snapshot(lease.task_id))
        try:
            self.run(write(lease))
        except errors.LeaseLost as exc:
            assert exc.task == lease.task_id
        else:
            raise AssertionError(f"a write under stale lease {lease} was accepted")
        assert self.run(self._snapshot(lease.task_id)) == before
        return None

    @rule(lease=leases)
    def renew(self, lease: types.Lease | None) -> None:
        task = self._fenced_write(lease, lambda ls: self.store.renew_lease(ls, lease_ttl=TTL))
        if task is not None:
            task.expired = False

    @rule(lease=consumes(leases))
    def release(self, lease: types.Lease | None) -> None:
        task = self._fenced_write(lease, self.store.release_lease)
        if task is not None:
            task.status, task.owner = "queued", None

    @rule(lease=leases)
    def commit(self, lease: types.Lease | None) -> None:
        async def write(ls: types.Lease) -> None:
            index = len(await self.store.load_journal(ls.task_id))
            (result,) = await self.store.commit_steps([_commit(ls, index)])
            if isinstance(result, BaseException):
                raise result

        task = self._fenced_write(lease, write)
        if task is not None:
            task.steps += 1

    @rule(lease=consumes(leases), status=st.sampled_from(["completed", "failed", "cancelled"]))
    def finish(self, lease: types.Lease | None, status: types.TaskStatus) -> None:
        task = self._fenced_write(
            lease, lambda ls: self.store.finish_task(ls, status=status, output="x")
        )
        if task is not None:
            task.status, task.owner = status, None

    @rule(pick=st.integers(0, 1000))
    def expire(self, pick: int) -> None:
        if not self.tasks:
            return
        task = self.tasks[pick % len(self.tasks)]
        self.run(self.store.expire_lease(task.id))
        if task.status == "running":
            task.expired = True

    # ---- invariants ----------------------------------------------------------------------

    async def _snapshot(self, task_id: str) -> tuple[object, ...]:
        task = await self.store.get_task(task_id)
        return (
            task,
            await self.store.load_journal(task_id),
            await self.store.list_messages(task.session_id),
            await self.store.list_events(task_id),
            await self.store.list_runs(task_id),
        )

    @invariant()
    def store_matches_model(self) -> None:
        if not self.sessions:
            return

        async def read() -> list[tuple[types.TaskRecord, int, list[types.TaskRun]]]:
            out = []
            for t in self.tasks:
                rec = await self.store.get_task(t.id)
                out.append(
                    (
                        rec,
                        len(await self.store.load_journal(t.id)),
                        await self.store.list_runs(t.id),
                    )
                )
            return out

        running_sessions: list[str] = []
        for model, (record, steps, runs) in zip(self.tasks, self.run(read()), strict=True):
            assert (record.status, record.lease_owner, record.lease_epoch, record.runs) == (
                model.status,
                model.owner,
                model.epoch,
                model.runs,
            ), model
            assert steps == model.steps
            assert [r.reason for r in runs] == model.reasons
            assert [r.epoch for r in runs] == list(range(1, model.epoch + 1))
            if record.status == "running":
                running_sessions.append(record.session_id)
        assert len(running_sessions) == len(set(running_sessions)), "two tasks of a session ran"


def _commit(lease: types.Lease, index: int) -> types.StepCommit:
    step = types.StepRecord(
        task_id=lease.task_id,
        index=index,
        kind="custom",
        name="s",
        fingerprint=f"fp-{index}",
        status="completed",
        output={"i": index},
        started_at=1.0,
        finished_at=2.0,
        worker=lease.owner,
    )
    return types.StepCommit(
        lease=lease,
        step=step,
        messages=(types.Message(role="assistant", content=f"{lease.task_id}:{index}"),),
        events=(types.NewEvent(name="step.completed", data={}, step=index),),
    )


class PostgresLeaseMachine(LeaseMachine):
    engine = "postgres"


_SETTINGS = {
    "sqlite": settings(max_examples=30, stateful_step_count=40, deadline=None, print_blob=True),
    "postgres": settings(max_examples=12, stateful_step_count=30, deadline=None, print_blob=True),
}
_MACHINES: dict[str, type[LeaseMachine]] = {
    "sqlite": LeaseMachine,
    "postgres": PostgresLeaseMachine,
}


@pytest.mark.parametrize("engine", sorted(_MACHINES))
def test_lease_state_machine(engine: str) -> None:
    run_state_machine_as_test(_MACHINES[engine], settings=_SETTINGS[engine])
