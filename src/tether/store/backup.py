"""Backups that hold every committed transaction, and the warning a file copy deserves.

A SQLite store in WAL mode keeps its latest commits in ``<file>-wal`` until a
checkpoint folds them into the main file, so a copy of the main file alone misses them
(a copy taken while a worker ran 300 tasks held 287 completed, 8 queued and 5 running).
``backup_sqlite`` uses SQLite's online backup API: a consistent snapshot of everything
committed, taken while workers keep running. For PostgreSQL, ``pg_dump`` is the tool;
``PG_DUMP_GUIDANCE`` says how.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from tether import errors, redact
from tether.store import sqlite_connection
from tether.store.base import Finding

WAL_HEADER_BYTES = 32

PG_DUMP_GUIDANCE = (
    "a PostgreSQL store is backed up with PostgreSQL's own tools: "
    "`pg_dump --format=custom --file DEST 'postgresql://USER@HOST:PORT/DATABASE'` (the password "
    "in $PGPASSWORD or ~/.pgpass, never on the command line), restored with `pg_restore "
    "--dbname ... DEST`; or use your provider's snapshots or point-in-time recovery"
)


@dataclass(frozen=True, slots=True)
class BackupReport:
    dest: Path
    bytes: int
    tasks: int
    schema_version: int


def backup_sqlite(url: str, dest: Path) -> BackupReport:
    """Copy the SQLite store at ``url`` to ``dest`` (a new file) with the online backup
    API, then check the copy: integrity, and that it is a tether store."""
    source = sqlite_connection.parse_url(url)[0]
    if not os.path.isfile(source):
        raise errors.NotFound(
            f"no SQLite store at {source} ({url}): check --store or $TETHER_STORE"
        )
    if dest.exists():
        raise errors.InvalidInput(
            f"{dest} exists already: give a new file name (a backup never overwrites)"
        )
    if not dest.parent.is_dir():
        raise errors.InvalidInput(f"folder {dest.parent} does not exist: create it first")
    if os.path.realpath(dest) == os.path.realpath(source):
        raise errors.InvalidInput("DEST is the store itself: give another file")
    partial = dest.with_name(dest.name + ".partial")
    try:
        with sqlite_connection.translated(url):
            src = sqlite3.connect(
                f"{Path(source).resolve().as_uri()}?mode=ro", uri=True, timeout=30
            )
            try:
                out = sqlite3.connect(partial)
                try:
                    src.backup(out)
                    ok = out.execute("PRAGMA integrity_check").fetchone()[0]
                    if ok != "ok":
                        raise errors.StoreCorrupt(
                            f"the backup of {source} fails its integrity check ({ok}): the "
                            "store itself may be damaged; run `tether doctor`"
                        )
                    version = _schema_version(out, source)
                    tasks = out.execute("SELECT count(*) FROM tasks").fetchone()[0]
                finally:
                    out.close()
            finally:
                src.close()
        os.replace(partial, dest)
    finally:
        for leftover in (partial, Path(f"{partial}-journal")):
            if leftover.exists():
                leftover.unlink()
    return BackupReport(dest, dest.stat().st_size, int(tasks), version)


def _schema_version(conn: sqlite3.Connection, source: str) -> int:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if row is None:
        raise errors.InvalidInput(f"{source} is not a tether store (no schema_migrations table)")
    return int(conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] or 0)


def wal_findings(url: str) -> list[Finding]:
    """A write-ahead log beside the file, holding commits the main file lacks: a worker
    runs, or one stopped without a checkpoint. A copy of the main file would lose them."""
    path = sqlite_connection.parse_url(url)[0]
    wal = Path(f"{path}-wal")
    try:
        size = wal.stat().st_size
    except FileNotFoundError:
        return []
    if size <= WAL_HEADER_BYTES:
        return []
    return [
        Finding(
            check="wal_pending",
            severity="warning",
            message=(
                f"{wal} holds {size} bytes of commits not yet in {path} (a worker is running, "
                "or one stopped without a checkpoint): a copy of the .db file alone loses "
                "them; back up with `tether backup DEST`, which copies everything committed"
            ),
        )
    ]


def guidance(url: str) -> str:
    return f"{PG_DUMP_GUIDANCE} (store {redact.url(url)})"
