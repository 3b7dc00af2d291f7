"""PostgresStore: the store for many workers on many machines, through psycopg's async pool.

Every method borrows a pooled connection and runs one transaction; the write path is
in ``postgres_queries``, the schema in ``postgres_schema``, the pool, clock and error
translation in ``postgres_connection``, and the ``LISTEN`` wake-ups in
``postgres_listener``. See ``tether.store.base`` for what each method promises: the
semantics are those of ``SQLiteStore``, and ``tests/contract/`` runs on both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

from tether import errors, types
from tether.store import (
    api_keys,
    appends,
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
from tether.store import postgres_commits as commit_path
from tether.store import postgres_connection as connection
from tether.store import postgres_queries as queries
from tether.store import postgres_schema as schema
from tether.store.base import ApiKey, Claim, Finding, MemoryHit, MemoryItem, Signal, TaskStart
from tether.store.checkpoints_postgres import PostgresCheckpoints
from tether.store.postgres_listener import Listener
from tether.store.program import Program

__all__ = ["PostgresStore"]

_NEWEST_SESSIONS = "created_at DESC, id DESC"
_TABLES = "SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()"

T = TypeVar("T")
Conn = queries.Connection

_CLAIM_TRIES = 4


class PostgresStore:
    """``PostgresStore("postgresql://user@host:5432/db?pool_max=10&pool_timeout=5")``."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self._target = connection.parse_url(url)
        self._auto_migrate = migrate
        self._migrations = migrations.load(schema.ENGINE)
        self._pool: connection.Pool | None = None
        self._listener = Listener(self._target.conninfo, url)

    # ---- lifecycle -------------------------------------------------------------

    async def open(self, *, check: bool = True) -> None:
        """Open the pool (waiting for its first connection) and check or apply migrations.

        ``check=False`` only connects: ``tether migrate`` opens a store that way."""
        if self._pool is not None:
            return
        await connection.probe(self._target, self.url)
        pool = connection.make_pool(self._target, self.url)
        self._pool = pool
        try:
            with connection.translated(self.url):
                await pool.open(wait=True, timeout=self._target.pool_timeout)
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
        await self._listener.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            with connection.translated(self.url):
                await pool.close()

    async def _run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` on a pooled connection in autocommit mode: DDL, and every read. Under
        READ COMMITTED each statement sees what was committed when it began, inside a
        transaction or not, so a read of several statements gains nothing from BEGIN and
        COMMIT but two round trips. (A journal's steps and the messages they refer to are
        committed together, so the later statement sees every message the earlier one's
        steps name.)"""
        pool = self._pool
        if pool is None:
            raise errors.InfraError(
                f"PostgreSQL store {migrations.redact(self.url)} is not open: await store.open()"
            )
        async with connection.borrowed(pool, self.url) as conn:
            return await fn(conn)

    async def _tx(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` in one transaction; anything raised (``LeaseLost`` too) rolls it back."""

        async def job(conn: Conn) -> T:
            async with conn.transaction():
                return await fn(conn)

        return await self._run(job)

    async def _apply(self, program: Program[T]) -> T:
        """Run a store program (``program``) in one write transaction (pipelined)."""
        return await self._run(lambda conn: queries.apply(conn, program))

    async def _query(self, program: Program[T]) -> T:
        """Run a read-only store program."""
        return await self._run(lambda conn: queries.run(conn, program))

    # ---- schema ----------------------------------------------------------------

    async def schema_version(self) -> int:
        return await self._run(schema.version)

    async def identity(self) -> str:
        return await self._run(schema.identity)

    async def migrate(self, *, dry_run: bool = False) -> list[str]:
        return await self._run(
            lambda conn: schema.apply(conn, self.url, self._migrations, dry_run=dry_run)
        )

    async def doctor(self) -> list[Finding]:
        async def read(conn: Conn) -> list[Finding]:
            found = checks.schema_findings(self.url, await schema.applied(conn), self._migrations)
            if found and found[0].check == "schema":
                return found
            return found + await queries.run(conn, checks.data_findings(_TABLES))

        return await self._run(read)

    # ---- LangGraph checkpoints -------------------------------------------------

    def checkpoints(self) -> PostgresCheckpoints:
        return PostgresCheckpoints(self._tx, self._run)

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
        return await self._query(reads.session(session_id, tenant))

    async def list_sessions(
        self, *, tenant: str | None = None, limit: int = 100
    ) -> list[types.SessionRecord]:
        return await self._query(reads.sessions(tenant, limit, _NEWEST_SESSIONS))

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
        return await self._query(reads.task(task_id, tenant))

    async def list_tasks(
        self,
        *,
        tenant: str | None = None,
        session_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[types.TaskRecord]:
        return await self._query(reads.tasks(tenant, session_id, status, limit))

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
        for _ in range(_CLAIM_TRIES):
            try:
                return await self._run(  # its own transaction, pipelined
                    lambda conn: queries.claim(conn, worker, lease_ttl, names, task_id)
                )
            except queries.SessionBusy:
                continue  # another claimer started that session's task first: look again
        return None

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
        async def read(conn: Conn) -> list[types.StepRecord]:
            task = await queries.task_row(conn, task_id)
            found = await queries.fetch_all(
                conn, "SELECT * FROM steps WHERE task_id = %s ORDER BY idx", (task_id,)
            )
            payloads = [rows.step_payload_of(r) for r in found]
            seqs = rows.referenced_seqs(found, payloads)
            messages = (
                await queries.fetch_all(
                    conn,
                    "SELECT * FROM messages WHERE session_id = %s AND seq = ANY(%s)",
                    (task["session_id"], seqs),
                )
                if seqs
                else []
            )
            return rows.journal(found, payloads, messages)

        return await self._run(read)

    async def read_task_start(self, task: types.TaskRecord) -> TaskStart:
        return await self._run(lambda conn: queries.read_task_start(conn, task))

    async def commit_steps(
        self, commits: Sequence[types.StepCommit]
    ) -> list[types.CommitResult | BaseException]:
        if not commits:
            return []
        # one round trip: the batch opens and commits its own transaction, pipelined
        return await self._run(lambda conn: commit_path.commit_steps(conn, commits))

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

    # ---- signals -----------------------------------------------------------------

    async def send_signal(
        self, task_id: str, name: str, data: Any, *, tenant: str | None = None
    ) -> Signal:
        waits.check_name(name, task=task_id)
        text = waits.encode_data(task_id, name, data)
        return await self._apply(waits.send(task_id, name, text, tenant))

    async def next_signal(self, task_id: str, name: str) -> Signal | None:
        return await self._query(waits.next_signal(task_id, name))

    async def list_signals(self, task_id: str, *, tenant: str | None = None) -> list[Signal]:
        return await self._query(reads.signals(task_id, tenant))

    async def count_tasks(self, *, status: str) -> dict[str, int]:
        return await self._query(reads.task_counts(status))

    # ---- waiting -----------------------------------------------------------------

    async def wait_for_work(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a ``NOTIFY`` that a task may be claimable;
        True when one came. Never raises for a lost connection: it then just waits."""
        return await self._listener.wait(timeout)

    # ---- measurement -----------------------------------------------------------

    async def step_storage_bytes(self, task_id: str, index: int) -> int:
        return await self._run(lambda conn: queries.step_storage_bytes(conn, task_id, index))

    # ---- API keys ----------------------------------------------------------------

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
        return await self._query(api_keys.find(key_hash))

    async def revoke_api_key(self, key_id: str, *, tenant: str | None = None) -> ApiKey:
        return await self._apply(api_keys.revoke(key_id, tenant))

    async def list_api_keys(self, *, tenant: str | None = None) -> list[ApiKey]:
        program = api_keys.listing(tenant, "created_at DESC, position DESC")
        return await self._query(program)

    # ---- vector memory -------------------------------------------------------------

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

    # ---- console views -------------------------------------------------------------

    async def page_tasks(
        self, query: views.TaskQuery, *, before: int | None = None, limit: int = 50
    ) -> views.TaskPage:
        return await self._run(lambda conn: queries.page_tasks(conn, query, before, limit))

    async def journal_page(
        self, task_id: str, *, tenant: str | None = None, after_index: int = -1, limit: int = 100
    ) -> views.JournalPage:
        return await self._run(
            lambda conn: queries.journal_page(conn, task_id, tenant, after_index, limit)
        )

    async def session_events(
        self, session_id: str, name: str, *, tenant: str | None = None, limit: int = 100
    ) -> list[types.EventRecord]:
        return await self._run(
            lambda conn: queries.session_events(conn, session_id, name, tenant, limit)
        )

    async def overview(self, *, tenant: str | None = None, since: float) -> views.Overview:
        return await self._run(lambda conn: queries.overview(conn, tenant, since))
