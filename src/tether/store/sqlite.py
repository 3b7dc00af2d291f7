"""SQLiteStore: the embedded store. One file in WAL mode, shared safely by several processes.

A thin driver under ``StoreCore`` (``core``, where the store's rules are): every
program runs as one job on the connection thread (``sqlite_connection``), writes in one
``BEGIN IMMEDIATE`` transaction each. What stays here is SQLite's own: the connection,
its schema (``sqlite_schema``), its claim and its group commit (``sqlite_queries``,
tuned for SQLite), and polling for work. See ``tether.store.base`` for what each
method promises.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Collection, Sequence

from tether import errors, types
from tether.store import dialect as dialects
from tether.store import leases, transitions
from tether.store import sqlite_connection as connection
from tether.store import sqlite_queries as queries
from tether.store import sqlite_schema as schema
from tether.store.base import BatchResults, Claim, Finish
from tether.store.core import StoreCore
from tether.store.program import Program, T

__all__ = ["SQLiteStore"]


class SQLiteStore(StoreCore):
    """``SQLiteStore("sqlite:///tether.db")``; ``?synchronous=normal`` trades the last
    commits before a power loss for speed (the default, ``full``, keeps them)."""

    dialect = dialects.SQLITE

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.path, self._synchronous = connection.parse_url(url)
        super().__init__(url, migrate=migrate)
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

    async def identity(self) -> str:
        stat = os.stat(os.path.realpath(self.path))
        return f"sqlite:{stat.st_dev}:{stat.st_ino}"

    async def migrate(self, *, dry_run: bool = False) -> list[str]:
        return await self._run(
            lambda conn: schema.apply(conn, self.url, self._migrations, dry_run=dry_run)
        )

    # ---- the hot path (SQLite's own: sqlite_queries) ------------------------------

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

    async def _claim_each(
        self, workers: Sequence[str], lease_ttl: float, agents: Collection[str] | None
    ) -> list[Claim]:
        """``claim_tasks`` in one ``BEGIN IMMEDIATE`` transaction: one job and one sync
        for a worker's free slots, each claim seeing the ones before it."""
        leases.check_ttl(lease_ttl)
        names = None if agents is None else sorted(set(agents))
        return await self._write(lambda conn: queries.claim_many(conn, workers, lease_ttl, names))

    async def commit_steps(
        self, commits: Sequence[types.StepCommit]
    ) -> list[types.CommitResult | BaseException]:
        if not commits:
            return []
        return await self._write(lambda conn: queries.commit_batch(conn, commits))

    async def _commit_together(
        self, commits: Sequence[types.StepCommit], finishes: Sequence[Finish]
    ) -> BatchResults:
        """Steps and task ends in one ``BEGIN IMMEDIATE`` transaction: one job on the
        connection thread and one sync to disk for the whole batch."""

        def job(conn: sqlite3.Connection) -> BatchResults:
            steps = queries.commit_batch(conn, commits) if commits else []
            ends = queries.run(conn, transitions.finish_each(finishes)) if finishes else []
            return steps, ends

        return await self._write(job)

    # ---- waiting ---------------------------------------------------------------

    async def wait_for_work(self, timeout: float) -> bool:
        """SQLite sends no notifications: sleep ``timeout`` (workers poll)."""
        await asyncio.sleep(timeout)
        return False
