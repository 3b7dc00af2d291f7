"""Bringing a PostgreSQL database's schema up to date with the migrations this code ships.

Each pending migration runs in its own transaction together with its
``schema_migrations`` row, after taking a transaction-scoped advisory lock
(``pg_advisory_xact_lock``) and re-reading what is applied under it, so any number
of workers starting at once against one fresh database apply each migration exactly
once. A store newer than the code is refused by a read-only check, before any lock.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg.errors

from tether import errors, types
from tether.store import dialect as dialects
from tether.store import migrations
from tether.store import postgres_queries as queries

ENGINE = dialects.POSTGRES.engine

MIGRATION_LOCK = 0x7E74_4E52  # "tether" migrations: one advisory lock key for every tether


async def applied(conn: queries.Connection) -> dict[int, migrations.Applied]:
    """The rows of ``schema_migrations``, by version (none on a fresh database)."""
    return await queries.run(conn, migrations.applied(dialects.POSTGRES.tables))


async def identity(conn: queries.Connection) -> str:
    """The server's system identifier (the cluster, whatever name reaches it) and the
    database; where ``pg_control_system()`` is not granted, the server's own address."""
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT system_identifier::text AS id, current_database() AS db "
                "FROM pg_control_system()"
            )
            row = await cur.fetchone()
    except psycopg.errors.InsufficientPrivilege:
        cur = await conn.execute(
            "SELECT coalesce(host(inet_server_addr()), 'socket') || ':' || "
            "coalesce(inet_server_port(), 0)::text AS id, current_database() AS db"
        )
        row = await cur.fetchone()
    assert row is not None
    return f"postgresql:{row['id']}/{row['db']}"


async def check(
    conn: queries.Connection, url: str, shipped: Sequence[migrations.Migration], *, auto: bool
) -> None:
    """On open: refuse a newer or edited store; migrate when ``auto``, else refuse pending work."""
    found = await applied(conn)
    todo = migrations.pending(url, found, shipped)
    if not todo:
        return
    if not auto:
        raise migrations.pending_error(url, max(found, default=0), todo)
    await apply(conn, url, shipped, dry_run=False)


async def apply(
    conn: queries.Connection,
    url: str,
    shipped: Sequence[migrations.Migration],
    *,
    dry_run: bool,
) -> list[str]:
    """Apply the pending migrations; return their labels (or those that would be applied)."""
    todo = migrations.pending(url, await applied(conn), shipped)
    if dry_run:
        return [m.label for m in todo]
    done: list[str] = []
    for migration in todo:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            # another process may have migrated between our read and this lock
            if migration not in migrations.pending(url, await applied(conn), shipped):
                continue
            if not migration.sql.strip():
                raise errors.StoreCorrupt(
                    f"migration postgres/{migration.label}.sql is empty; reinstall tether"
                )
            await conn.execute(migration.sql.encode("utf-8"))
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at)"
                " VALUES (%s, %s, %s, %s)",
                (migration.version, migration.name, migration.checksum, types.now()),
            )
        done.append(migration.label)
    return done
