"""SQLiteStore: the embedded store. One file in WAL mode, shared safely by several processes.

The async face of the store: every method queues one job on the connection thread
(``sqlite_connection``); writes run in one ``BEGIN IMMEDIATE`` transaction each, with
the write path in ``sqlite_queries`` and the schema in ``sqlite_schema``. See
``tether.store.base`` for what each method promises.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from tether import errors, types
from tether.store import (
    api_keys,
    appends,
    base,
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
from tether.store import sqlite_connection as connection
from tether.store import sqlite_queries as queries
from tether.store import sqlite_schema as schema
from tether.store.base import ApiKey, Claim, Finding, MemoryItem, Signal, TaskStart
from tether.store.checkpoints_sqlite import SQLiteCheckpoints
from tether.store.program import Program

__all__ = ["SQLiteStore"]

_NEWEST_SESSIONS = "created_at DESC, rowid DESC"

T = TypeVar("T")


class SQLiteStore:
    """``SQLiteStore("sqlite:///tether.db")``; ``?synchronous=normal`` trades the last
    commits before a power loss for speed (the default, ``full``, keeps them)."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.path, self._synchronous = connection.parse_url(url)
        self._auto_migrate = migrate
        self._migrations = migrations.load(schema.ENGINE)
        self._thread: connection.ConnectionThread | None = None
        self._conn: sqlite3.Connection | None = None

    # ---- lifecycle -------------------------------------------------------------

    async def open(self, *, check: bool = True) -> None:
        """Start the connection thread, connect, and check (or apply) migrations.

        ``check=False`` only connects: ``tether migrate`` opens a store that way."""
        if self._thread is not None:
            return
        self._thread = connection.ConnectionThread(f"tether-sqlite:{self.path}")
        try:
            await self._thread.call(self._connect)
            if check:
                await self._run(
                    lambda conn: schema.check(
                        conn, self.url, self._migrations, auto=self._auto_migrate
                    )
                )
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        await thread.call(self._disconnect)
        await thread.stop()

    def _connect(self) -> None:
        with connection.translated(self.url):
            self._conn = connection.connect(self.path, self._synchronous, self.url)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):  # closing: nothing is left to lose
                conn.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        thread = self._thread
        if thread is None:
            raise errors.InfraError(f"SQLite store {self.url} is not open: await store.open()")

        def job() -> T:
            if self._conn is None:
                raise errors.InfraError(f"SQLite store {self.url} is not connected")
            with connection.translated(self.url):
                return fn(self._conn)

        return await thread.call(job)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def job(conn: sqlite3.Connection) -> T:
            with connection.write(conn):
                return fn(conn)

        return await self._run(job)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def job(conn: sqlite3.Connection) -> T:
            with connection.read(conn):
                return fn(conn)

        return await self._run(job)

    async def _apply(self, program: Program[T]) -> T:
        """Run a store program (``program``) in one write transaction."""
        return await self._write(lambda conn: queries.run(conn, program))

    async def _query(self, program: Program[T], *, snapshot: bool = True) -> T:
        """Run a read-only store program: in one read transaction (one snapshot for its
        statements), or with ``snapshot=False`` (one statement) without BEGIN/COMMIT."""
        if snapshot:
            return await self._read(lambda conn: queries.run(conn, program))
        return await self._run(lambda conn: queries.run(conn, program))

    # ---- schema ----------------------------------------------------------------

    async def schema_version(self) -> int:
        return await self._run(schema.version)

    async def identity(self) -> str:
        stat = os.stat(os.path.realpath(self.path))
        return f"sqlite:{stat.st_dev}:{stat.st_ino}"

    async def migrate(self, *, dry_run: bool = False) -> list[str]:
        return await self._run(
            lambda conn: schema.apply(conn, self.url, self._migrations, dry_run=dry_run)
        )

    async def doctor(self) -> list[Finding]:
        return await self._read(lambda conn: _doctor(conn, self.url, self._migrations))

    # ---- LangGraph checkpoints -------------------------------------------------

    def checkpoints(self) -> SQLiteCheckpoints:
        return SQLiteCheckpoints(self._write, self._read)

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
        return await self._query(reads.sessions(tenant, limit, _NEWEST_SESSIONS), snapshot=False)

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

    async def claim_task(
        self,
        worker: str,
        *,
        lease_ttl: float,
        agents: Collection[str] | None = None,
        task_id: str | None = None,
    ) -> Claim | None:
        leases.check_ttl(lease_ttl)
        names = None if agents is None else sorted(set(agents))
        return await self._write(
            lambda conn: queries.claim(conn, worker, lease_ttl, names, task_id)
        )

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
        def read(conn: sqlite3.Connection) -> list[types.StepRecord]:
            task = queries.task_row(conn, task_id)
            sql = "SELECT * FROM steps WHERE task_id = ? ORDER BY idx"
            found = conn.execute(sql, (task_id,)).fetchall()
            payloads = [rows.step_payload_of(r) for r in found]
            seqs = rows.referenced_seqs(found, payloads)
            messages = (
                conn.execute(
                    queries.MESSAGES_BY_SEQS,
                    (rows.dumps(seqs, "message seqs"), task["session_id"]),
                ).fetchall()
                if seqs
                else []
            )
            return rows.journal(found, payloads, messages)

        return await self._read(read)

    async def read_task_start(self, task: types.TaskRecord) -> TaskStart:
        return TaskStart(
            journal=await self.load_journal(task.id),
            attempts=await self.list_attempts(task.id) if task.runs > 1 else [],
            session=await self.get_session(task.session_id),
            history=await self.list_messages(task.session_id, upto_seq=task.input_seq),
        )

    async def commit_steps(
        self, commits: Sequence[types.StepCommit]
    ) -> list[types.CommitResult | BaseException]:
        if not commits:
            return []
        return await self._write(lambda conn: queries.commit_batch(conn, commits))

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
        program = transitions.finish(lease, status, output, error, events)
        return await self._apply(program)

    async def fail_task(self, task_id: str, *, error: dict[str, Any]) -> types.TaskRecord:
        program = transitions.fail(task_id, error)
        return await self._apply(program)

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
    ) -> base.Signal:
        waits.check_name(name, task=task_id)
        text = waits.encode_data(task_id, name, data)
        return await self._apply(waits.send(task_id, name, text, tenant))

    async def next_signal(self, task_id: str, name: str) -> base.Signal | None:
        return await self._query(waits.next_signal(task_id, name), snapshot=False)

    async def list_signals(self, task_id: str, *, tenant: str | None = None) -> list[Signal]:
        return await self._query(reads.signals(task_id, tenant))

    async def count_tasks(self, *, status: str) -> dict[str, int]:
        return await self._query(reads.task_counts(status), snapshot=False)

    # ---- waiting ---------------------------------------------------------------

    async def wait_for_work(self, timeout: float) -> bool:
        """SQLite sends no notifications: sleep ``timeout`` (workers poll)."""
        await asyncio.sleep(timeout)
        return False

    # ---- measurement -----------------------------------------------------------

    async def step_storage_bytes(self, task_id: str, index: int) -> int:
        return await self._read(lambda conn: queries.step_storage_bytes(conn, task_id, index))

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
        program = api_keys.listing(tenant, "created_at DESC, rowid DESC")
        return await self._query(program, snapshot=False)

    # ---- vector memory ---------------------------------------------------------

    async def add_memory(
        self, lease: types.Lease, session_id: str, items: Sequence[MemoryItem]
    ) -> None:
        await self._apply(appends.memory(lease, session_id, items))

    async def search_memory(
        self, session_id: str, vector: Sequence[float], k: int
    ) -> list[base.MemoryHit]:
        items = await self.list_memory(session_id)
        return vectors.top_k(session_id, items, vector, k)

    async def list_memory(self, session_id: str) -> list[MemoryItem]:
        return await self._query(reads.memory(session_id))

    # ---- console views ---------------------------------------------------------

    async def page_tasks(
        self, query: views.TaskQuery, *, before: int | None = None, limit: int = 50
    ) -> views.TaskPage:
        return await self._read(lambda conn: queries.page_tasks(conn, query, before, limit))

    async def journal_page(
        self, task_id: str, *, tenant: str | None = None, after_index: int = -1, limit: int = 100
    ) -> views.JournalPage:
        return await self._read(
            lambda conn: queries.journal_page(conn, task_id, tenant, after_index, limit)
        )

    async def session_events(
        self, session_id: str, name: str, *, tenant: str | None = None, limit: int = 100
    ) -> list[types.EventRecord]:
        return await self._read(
            lambda conn: queries.session_events(conn, session_id, name, tenant, limit)
        )

    async def overview(self, *, tenant: str | None = None, since: float) -> views.Overview:
        return await self._read(lambda conn: queries.overview(conn, tenant, since))


def _doctor(
    conn: sqlite3.Connection, url: str, shipped: Sequence[migrations.Migration]
) -> list[Finding]:
    found = checks.schema_findings(url, schema.applied(conn), shipped)
    if found and found[0].check == "schema":
        return found
    return found + queries.run(
        conn, checks.data_findings("SELECT name FROM sqlite_master WHERE type = 'table'")
    )
