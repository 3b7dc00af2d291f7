"""StoreCore: the ``Store`` protocol written once, over a thin engine driver.

Every rule of the store is a program (``program``) in a module named for what it
decides (``submissions``, ``transitions``, ``leases``, ``waits``, ``reads``,
``appends``, ``api_keys``, ``console_sql``, ``checkpoint_rules``, ``doctor``); this
class turns each ``Store`` method into one such program and hands it to its driver.
A driver (``SQLiteStore``, ``PostgresStore``) supplies only what is genuinely its
engine's:

- ``_apply(program)``: run a program in one write transaction; ``_query(program)``:
  run a read-only one (its connection handling: SQLite's thread, PostgreSQL's pool);
- ``dialect``: what its SQL says differently (``dialect``);
- ``open``/``close``, ``migrate`` and ``identity`` (how a schema is applied and a
  database told apart differ per engine);
- the hot path, tuned per engine: ``claim_task`` (the claim pick: ``BEGIN IMMEDIATE``
  on SQLite, ``FOR NO KEY UPDATE SKIP LOCKED`` on PostgreSQL) and ``commit_steps``
  (group commit); the rules both share are in ``leases`` and ``commits``;
- ``wait_for_work`` (PostgreSQL's ``LISTEN``; SQLite polls).

See ``tether.store.base`` for what each method promises; ``tests/contract/`` runs
every promise on both drivers.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Collection, Sequence
from typing import Any, ClassVar

from tether import types
from tether.store import (
    api_keys,
    appends,
    base,
    checkpoint_rules,
    console_sql,
    ids,
    leases,
    migrations,
    reads,
    rows,
    submissions,
    transitions,
    vectors,
    views,
    waits,
)
from tether.store import doctor as checks
from tether.store.base import ApiKey, Claim, Finding, MemoryHit, MemoryItem, Signal, TaskStart
from tether.store.dialect import Dialect
from tether.store.program import Program, T, in_turn


class StoreCore(base.Store):
    """The store's rules over a driver. A driver implements ``_apply`` and ``_query``,
    and the ``Store`` methods this class leaves to it (``open``, ``close``,
    ``identity``, ``migrate``, ``claim_task``, ``commit_steps``, ``wait_for_work``):
    as explicit members of the ``Store`` protocol, mypy holds them abstract here and
    checks every signature of this class and its drivers against ``Store``."""

    dialect: ClassVar[Dialect]

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self._auto_migrate = migrate
        self._migrations = migrations.load(self.dialect.engine)

    # ---- the driver ------------------------------------------------------------

    @abc.abstractmethod
    async def _apply(self, program: Program[T]) -> T:
        """Run ``program`` in one write transaction (anything raised rolls it back)."""

    @abc.abstractmethod
    async def _query(self, program: Program[T], *, snapshot: bool = True) -> T:
        """Run a read-only ``program``; ``snapshot=False`` says it is one statement, so
        needs no transaction of its own for a consistent view (SQLite skips BEGIN)."""

    async def _query_together(self, programs: Sequence[Program[Any]]) -> list[Any]:
        """Run read-only ``programs`` and return their answers in order: by default one
        after the other in one read (PostgreSQL sends them side by side, pipelined)."""
        return await self._query(in_turn(programs))

    # ---- schema ----------------------------------------------------------------

    async def schema_version(self) -> int:
        return max(await self._query(migrations.applied(self.dialect.tables)), default=0)

    async def doctor(self) -> list[Finding]:
        return await self._query(checks.report(self.url, self._migrations, self.dialect.tables))

    # ---- LangGraph checkpoints -------------------------------------------------

    def checkpoints(self) -> checkpoint_rules.StoreCheckpoints:
        return checkpoint_rules.StoreCheckpoints(self._apply, self._query, self.dialect)

    # ---- sessions --------------------------------------------------------------

    async def create_session(
        self, tenant: str, agent: str, *, session_id: str | None = None
    ) -> types.SessionRecord:
        return await self._apply(
            submissions.create_session(tenant, agent, session_id or ids.new_id())
        )

    async def get_session(
        self, session_id: str, *, tenant: str | None = None
    ) -> types.SessionRecord:
        return await self._query(reads.session(session_id, tenant), snapshot=False)

    async def list_sessions(
        self, *, tenant: str | None = None, limit: int = 100
    ) -> list[types.SessionRecord]:
        program = reads.sessions(tenant, limit, self.dialect.newest_sessions)
        return await self._query(program, snapshot=False)

    async def list_messages(
        self,
        session_id: str,
        *,
        tenant: str | None = None,
        after_seq: int = 0,
        upto_seq: int | None = None,
        limit: int | None = None,
    ) -> list[types.StoredMessage]:
        return await self._query(reads.messages(session_id, tenant, after_seq, upto_seq, limit))

    # ---- tasks -----------------------------------------------------------------

    async def submit_task(self, new: types.NewTask) -> types.TaskRecord:
        return await self._apply(submissions.submit(new))

    async def get_task(self, task_id: str, *, tenant: str | None = None) -> types.TaskRecord:
        return await self._query(reads.task(task_id, tenant), snapshot=False)

    async def list_tasks(
        self,
        *,
        tenant: str | None = None,
        session_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[types.TaskRecord]:
        return await self._query(reads.tasks(tenant, session_id, status, limit), snapshot=False)

    async def request_cancel(self, task_id: str, *, tenant: str | None = None) -> types.TaskRecord:
        return await self._apply(transitions.cancel(task_id, tenant))

    # ---- leases ----------------------------------------------------------------

    async def renew_lease(self, lease: types.Lease, *, lease_ttl: float) -> types.Lease:
        leases.check_ttl(lease_ttl)
        return await self._apply(transitions.renew(lease, lease_ttl))

    async def release_lease(
        self, lease: types.Lease, *, events: Sequence[types.NewEvent] = ()
    ) -> None:
        await self._apply(transitions.release(lease, events))

    async def wait_task(
        self,
        lease: types.Lease,
        *,
        wait: dict[str, Any],
        wake_at: float | None,
        events: Sequence[types.NewEvent] = (),
    ) -> types.TaskRecord:
        return await self._apply(waits.park(lease, wait, wake_at, events))

    async def expire_lease(self, task_id: str) -> None:
        await self._apply(transitions.expire(task_id))

    # ---- journal ---------------------------------------------------------------

    async def load_journal(self, task_id: str) -> list[types.StepRecord]:
        return await self._query(reads.journal(self.dialect, task_id))

    async def claim_tasks(
        self,
        workers: Sequence[str],
        *,
        lease_ttl: float,
        agents: Collection[str] | None = None,
    ) -> list[Claim]:
        return await self._claim_each(workers, lease_ttl, agents)

    async def _claim_each(
        self, workers: Sequence[str], lease_ttl: float, agents: Collection[str] | None
    ) -> list[Claim]:
        """``claim_tasks`` as side-by-side ``claim_task`` calls (PostgreSQL pipelines
        them over its pool); a driver that can make them in one transaction (SQLite)
        overrides this. A failed claim is dropped when others were made (the next
        claim tries again), raised when none was."""
        found = await asyncio.gather(
            *(self.claim_task(w, lease_ttl=lease_ttl, agents=agents) for w in workers),
            return_exceptions=True,
        )
        claims = [c for c in found if isinstance(c, Claim)]
        failed = [e for e in found if isinstance(e, BaseException)]
        if failed and (not claims or not all(isinstance(e, Exception) for e in failed)):
            raise failed[0]
        return claims

    async def read_task_start(self, task: types.TaskRecord) -> TaskStart:
        return reads.task_start(
            await self._query_together(reads.task_start_parts(self.dialect, task))
        )

    async def record_attempt(self, lease: types.Lease, attempt: types.StepAttempt) -> None:
        await self._apply(appends.attempt(lease, attempt))

    async def list_attempts(self, task_id: str) -> list[types.StepAttempt]:
        return await self._query(reads.attempts(task_id))

    async def list_runs(self, task_id: str) -> list[types.TaskRun]:
        return await self._query(reads.runs(task_id))

    async def finish_task(
        self,
        lease: types.Lease,
        *,
        status: types.TaskStatus,
        output: Any = None,
        error: dict[str, Any] | None = None,
        events: Sequence[types.NewEvent] = (),
    ) -> types.TaskRecord:
        rows.final_values(lease.task_id, status, output, error)  # bad input: no transaction
        return await self._apply(transitions.finish(lease, status, output, error, events))

    async def commit_batch(
        self, commits: Sequence[types.StepCommit], finishes: Sequence[base.Finish]
    ) -> base.BatchResults:
        return await self._commit_together(commits, finishes)

    async def _commit_together(
        self, commits: Sequence[types.StepCommit], finishes: Sequence[base.Finish]
    ) -> base.BatchResults:
        """``commit_batch`` in two transactions side by side, the steps' and the ends'
        (independent: a task's end is queued only once its steps are committed); a
        driver that can put both in one (SQLite's write job) overrides this. When one
        fails, the other is awaited too before the failure is raised."""

        async def steps() -> list[types.CommitResult | BaseException]:
            return await self.commit_steps(commits) if commits else []

        async def ends() -> list[types.TaskRecord | BaseException]:
            return await self._apply(transitions.finish_each(finishes)) if finishes else []

        got_steps, got_ends = await asyncio.gather(steps(), ends(), return_exceptions=True)
        if isinstance(got_steps, BaseException):
            raise got_steps
        if isinstance(got_ends, BaseException):
            raise got_ends
        return got_steps, got_ends

    async def fail_task(self, task_id: str, *, error: dict[str, Any]) -> types.TaskRecord:
        return await self._apply(transitions.fail(task_id, error))

    # ---- events ----------------------------------------------------------------

    async def append_events(
        self, task_id: str, events: Sequence[types.NewEvent], *, lease: types.Lease | None = None
    ) -> None:
        await self._apply(appends.events(task_id, events, lease))

    async def list_events(
        self, task_id: str, *, tenant: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[types.EventRecord]:
        return await self._query(reads.events(task_id, tenant, after_seq, limit))

    # ---- signals ---------------------------------------------------------------

    async def send_signal(
        self, task_id: str, name: str, data: Any, *, tenant: str | None = None
    ) -> Signal:
        waits.check_name(name, task=task_id)
        text = waits.encode_data(task_id, name, data)
        return await self._apply(waits.send(task_id, name, text, tenant))

    async def next_signal(self, task_id: str, name: str) -> Signal | None:
        return await self._query(waits.next_signal(task_id, name), snapshot=False)

    async def list_signals(self, task_id: str, *, tenant: str | None = None) -> list[Signal]:
        return await self._query(reads.signals(task_id, tenant))

    async def count_tasks(self, *, status: str) -> dict[str, int]:
        return await self._query(reads.task_counts(status), snapshot=False)

    # ---- measurement -----------------------------------------------------------

    async def step_storage_bytes(self, task_id: str, index: int) -> int:
        return await self._query(reads.step_bytes(self.dialect, task_id, index))

    # ---- API keys --------------------------------------------------------------

    async def create_api_key(
        self,
        tenant: str,
        key_hash: str,
        *,
        prefix: str,
        name: str | None = None,
        operator: bool = False,
    ) -> ApiKey:
        program = api_keys.create(tenant, key_hash, prefix=prefix, name=name, operator=operator)
        return await self._apply(program)

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        return await self._query(api_keys.find(key_hash), snapshot=False)

    async def revoke_api_key(self, key_id: str, *, tenant: str | None = None) -> ApiKey:
        return await self._apply(api_keys.revoke(key_id, tenant))

    async def list_api_keys(self, *, tenant: str | None = None) -> list[ApiKey]:
        program = api_keys.listing(tenant, self.dialect.newest_keys)
        return await self._query(program, snapshot=False)

    # ---- vector memory ---------------------------------------------------------

    async def add_memory(
        self, lease: types.Lease, session_id: str, items: Sequence[MemoryItem]
    ) -> None:
        await self._apply(appends.memory(lease, session_id, items))

    async def search_memory(
        self, session_id: str, vector: Sequence[float], k: int
    ) -> list[MemoryHit]:
        items = await self.list_memory(session_id)
        return vectors.top_k(session_id, items, vector, k)

    async def list_memory(self, session_id: str) -> list[MemoryItem]:
        return await self._query(reads.memory(session_id))

    # ---- console views ---------------------------------------------------------

    async def page_tasks(
        self, query: views.TaskQuery, *, before: int | None = None, limit: int = 50
    ) -> views.TaskPage:
        return await self._query(console_sql.page_tasks(query, before, limit), snapshot=False)

    async def journal_page(
        self, task_id: str, *, tenant: str | None = None, after_index: int = -1, limit: int = 100
    ) -> views.JournalPage:
        program = console_sql.journal_page(self.dialect, task_id, tenant, after_index, limit)
        return await self._query(program)

    async def session_events(
        self, session_id: str, name: str, *, tenant: str | None = None, limit: int = 100
    ) -> list[types.EventRecord]:
        return await self._query(console_sql.session_events(session_id, name, tenant, limit))

    async def overview(self, *, tenant: str | None = None, since: float) -> views.Overview:
        return await self._query(console_sql.overview(tenant, since))
