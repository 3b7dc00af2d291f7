"""Bringing a SQLite file's schema up to date with the migrations this code ships.

Each pending migration runs in its own ``BEGIN IMMEDIATE`` transaction together with
its ``schema_migrations`` row, after re-reading what is applied inside that lock, so
several processes opening one fresh file at once apply each migration exactly once.
A store newer than the code is refused by a read-only check, before any lock or write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from tether import errors, types
from tether.store import dialect as dialects
from tether.store import migrations
from tether.store import sqlite_connection as connection
from tether.store import sqlite_queries as queries

ENGINE = dialects.SQLITE.engine


def applied(conn: sqlite3.Connection) -> dict[int, migrations.Applied]:
    """The rows of ``schema_migrations``, by version (none on a fresh file)."""
    return queries.run(conn, migrations.applied(dialects.SQLITE.tables))


def statements(script: str) -> list[str]:
    """Split a migration file into statements (SQLite executes one at a time)."""
    out: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    rest = [ln for ln in buffer.splitlines() if ln.strip() and not ln.strip().startswith("--")]
    if rest:
        raise errors.StoreCorrupt(
            f"a migration ends with an incomplete statement: {rest[0]!r}; reinstall tether"
        )
    return out


def check(
    conn: sqlite3.Connection, url: str, shipped: Sequence[migrations.Migration], *, auto: bool
) -> None:
    """On open: refuse a newer or edited store; migrate when ``auto``, else refuse pending work."""
    with connection.read(conn):
        rows = applied(conn)
    todo = migrations.pending(url, rows, shipped)
    if not todo:
        return
    if not auto:
        raise migrations.pending_error(url, max(rows, default=0), todo)
    apply(conn, url, shipped, dry_run=False)


def apply(
    conn: sqlite3.Connection,
    url: str,
    shipped: Sequence[migrations.Migration],
    *,
    dry_run: bool,
) -> list[str]:
    """Apply the pending migrations; return their labels (or those that would be applied)."""
    with connection.read(conn):
        todo = migrations.pending(url, applied(conn), shipped)
    if dry_run:
        return [m.label for m in todo]
    done: list[str] = []
    for migration in todo:
        with connection.write(conn):
            # another process may have migrated between our read and this lock
            recorded = applied(conn)
            if migration not in migrations.pending(url, recorded, shipped):
                continue
            for number, statement in enumerate(statements(migration.sql), start=1):
                try:
                    conn.execute(statement)
                except sqlite3.Error as exc:  # rolled back by connection.write
                    raise failed(url, migration, number, max(recorded, default=0), exc) from exc
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at)"
                " VALUES (?, ?, ?, ?)",
                (migration.version, migration.name, migration.checksum, types.now()),
            )
        done.append(migration.label)
    return done


def failed(
    url: str, migration: migrations.Migration, statement: int, version: int, exc: Exception
) -> errors.StoreVersionError:
    """A migration that raised: its transaction is rolled back, the store is as it was."""
    return errors.StoreVersionError(
        f"migration {ENGINE}/{migration.label}.sql failed at statement {statement} on store "
        f"{migrations.redact(url)}: {exc}; it was rolled back and the store is still at "
        f"schema version {version}, unchanged: fix the cause (or reinstall tether) and run "
        f"`tether migrate --store {migrations.redact(url)}` again"
    )
