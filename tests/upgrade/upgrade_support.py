"""Helpers of the upgrade tests: raw SQL on either engine, running a coroutine on a store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg

from tether.store import Store, open_store

T = TypeVar("T")


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def raw(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement outside tether (``?`` placeholders on both engines); commit it."""
    if url.startswith("sqlite://"):
        conn = sqlite3.connect(sqlite_path(url))
        try:
            cur = conn.execute(sql, tuple(params))
            found = cur.fetchall()
            conn.commit()
            return found
        finally:
            conn.close()
    with psycopg.connect(url, autocommit=True) as pconn:
        cur = pconn.execute(sql.replace("?", "%s").encode(), tuple(params))
        return list(cur.fetchall()) if cur.description is not None else []


def tables(url: str) -> list[str]:
    """The store's table names, sorted."""
    if url.startswith("sqlite://"):
        found = raw(url, "SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        found = raw(url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return sorted(str(r[0]) for r in found if not str(r[0]).startswith("sqlite_"))


def with_store(
    url: str, body: Callable[[Store], Awaitable[T]], *, migrate: bool = True, check: bool = True
) -> T:
    """Open the store at ``url``, await ``body(store)``, close it; in a fresh event loop."""

    async def main() -> T:
        store = open_store(url, migrate=migrate)
        await store.open(check=check)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def raw_unchecked(url: str, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """Run statements with foreign keys unenforced, to make the damage a hand-edit would."""
    if url.startswith("sqlite://"):
        conn = sqlite3.connect(sqlite_path(url))  # foreign keys are off by default
        try:
            for sql, params in statements:
                conn.execute(sql, tuple(params))
            conn.commit()
        finally:
            conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pconn:
        pconn.execute("SET session_replication_role = replica")
        for sql, params in statements:
            pconn.execute(sql.replace("?", "%s").encode(), tuple(params))
