"""PostgresStore: the store for many workers on many machines, through psycopg's async pool.

A thin driver under ``StoreCore`` (``core``, where the store's rules are): every
program borrows a pooled connection, writes in one transaction each. What stays here
is PostgreSQL's own: the pool, clock and error translation (``postgres_connection``),
the schema (``postgres_schema``), the claim and group commit tuned for PostgreSQL
(``postgres_queries``), and the ``LISTEN`` wake-ups (``postgres_listener``). See
``tether.store.base`` for what each method promises: ``tests/contract/`` runs every
promise on both engines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

from tether import errors, types
from tether.store import dialect as dialects
from tether.store import leases, migrations
from tether.store import postgres_commits as commit_path
from tether.store import postgres_connection as connection
from tether.store import postgres_queries as queries
from tether.store import postgres_schema as schema
from tether.store.base import Claim
from tether.store.core import StoreCore
from tether.store.postgres_listener import Listener
from tether.store.program import Program

__all__ = ["PostgresStore"]

T = TypeVar("T")
Conn = queries.Connection

_CLAIM_TRIES = 4


class PostgresStore(StoreCore):
    """``PostgresStore("postgresql://user@host:5432/db?pool_max=10&pool_timeout=5")``."""

    dialect = dialects.POSTGRES

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self._target = connection.parse_url(url)
        super().__init__(url, migrate=migrate)
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

    async def _query(self, program: Program[T], *, snapshot: bool = True) -> T:
        """Run a read-only store program in autocommit (``_run``: under READ COMMITTED a
        transaction would give its statements no common snapshot, so ``snapshot`` changes
        nothing here)."""
        return await self._run(lambda conn: queries.run(conn, program))

    async def _query_together(self, programs: Sequence[Program[Any]]) -> list[Any]:
        """Side by side in autocommit: one round trip for every program's next statement."""
        return await self._run(lambda conn: queries.run_together(conn, programs))

    # ---- schema ----------------------------------------------------------------

    async def identity(self) -> str:
        return await self._run(schema.identity)

    async def migrate(self, *, dry_run: bool = False) -> list[str]:
        return await self._run(
            lambda conn: schema.apply(conn, self.url, self._migrations, dry_run=dry_run)
        )

    # ---- the hot path (PostgreSQL's own: postgres_queries) ----------------------

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

    async def commit_steps(
        self, commits: Sequence[types.StepCommit]
    ) -> list[types.CommitResult | BaseException]:
        if not commits:
            return []
        # one round trip: the batch opens and commits its own transaction, pipelined
        return await self._run(lambda conn: commit_path.commit_steps(conn, commits))

    # ---- waiting -----------------------------------------------------------------

    async def wait_for_work(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a ``NOTIFY`` that a task may be claimable;
        True when one came. Never raises for a lost connection: it then just waits."""
        return await self._listener.wait(timeout)
