"""Migrations that fail, and stores newer than the code: the store is left exactly as it was."""

from __future__ import annotations

import asyncio
import shutil
from importlib import resources
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row
from upgrade_support import raw, tables, with_store

from tether import errors
from tether.store import Store, migrations, postgres_schema, sqlite_schema
from tether.store import postgres_connection as pg_connection
from tether.store import sqlite_connection as sqlite_connection

BROKEN = """
-- a migration that creates a table, changes another, then fails
CREATE TABLE half_done (id INTEGER PRIMARY KEY);
ALTER TABLE sessions ADD COLUMN note TEXT;
INSERT INTO no_such_table VALUES (1);
"""


def _folder_with_broken(engine: str, root: Path) -> list[migrations.Migration]:
    """The shipped migrations of ``engine`` plus a broken next one, read from ``root``."""
    target = root / engine
    target.mkdir(parents=True)
    shipped = resources.files(migrations.__name__).joinpath(engine)
    for name in migrations.file_names(engine):
        (target / name).write_text(shipped.joinpath(name).read_text(encoding="utf-8"))
    after = len(migrations.file_names(engine)) + 1
    (target / f"{after:04d}_broken.sql").write_text(BROKEN)
    loaded = migrations.load(engine, root)
    assert [m.label for m in loaded[:-1]] == [m.label for m in migrations.load(engine)]
    return loaded


def _schema(url: str) -> tuple[list[str], list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Tables, the columns of ``sessions``, and ``schema_migrations``: what a migration changes."""
    if url.startswith("sqlite://"):
        columns = raw(url, "SELECT name FROM pragma_table_info('sessions') ORDER BY name")
    else:
        columns = raw(
            url,
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'sessions' ORDER BY column_name",
        )
    recorded = raw(url, "SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    return tables(url), columns, recorded


def _apply(url: str, shipped: list[migrations.Migration]) -> list[str]:
    """Apply ``shipped`` through the engine's migration runner, errors translated as the
    store translates them."""
    if url.startswith("sqlite://"):
        path, synchronous = sqlite_connection.parse_url(url)
        conn = sqlite_connection.connect(path, synchronous, url)
        try:
            with sqlite_connection.translated(url):
                return sqlite_schema.apply(conn, url, shipped, dry_run=False)
        finally:
            conn.close()

    async def go() -> list[str]:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=dict_row
        ) as conn:
            with pg_connection.translated(url):
                return await postgres_schema.apply(conn, url, shipped, dry_run=False)

    return asyncio.run(go())


async def _version(store: Store) -> int:
    return await store.schema_version()


def test_a_failed_migration_leaves_the_store_as_it_was(
    engine: str, empty_store_url: str, tmp_path: Path
) -> None:
    url = empty_store_url
    current = len(migrations.load(engine))
    assert with_store(url, _version) == current
    before = _schema(url)

    shipped = _folder_with_broken(engine, tmp_path / "migrations")
    with pytest.raises(errors.TetherError) as info:
        _apply(url, shipped)
    if engine == "sqlite":  # the SQLite runner names the file and the version kept
        message = str(info.value)
        assert f"{current + 1:04d}_broken.sql failed at statement 3" in message
        assert f"still at schema version {current}" in message and "no_such_table" in message

    assert _schema(url) == before
    assert "half_done" not in tables(url)
    assert with_store(url, _version, migrate=False) == current


def test_a_failed_migration_from_version_zero_leaves_an_empty_store_usable(
    engine: str, empty_store_url: str, tmp_path: Path
) -> None:
    """The earlier migrations commit one by one; the broken one alone is rolled back, and
    the real code then opens the store as usual."""
    url = empty_store_url
    shipped = _folder_with_broken(engine, tmp_path / "migrations")
    with pytest.raises(errors.TetherError):
        _apply(url, shipped)
    current = len(shipped) - 1
    recorded = raw(url, "SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in recorded] == list(range(1, current + 1))
    assert "half_done" not in tables(url)
    assert with_store(url, _version, migrate=False) == current


def test_a_store_newer_than_the_code_is_refused_and_never_written(
    engine: str, empty_store_url: str, tmp_path: Path
) -> None:
    url = empty_store_url
    with_store(url, _version)
    newer = len(migrations.load(engine)) + 1
    raw(
        url,
        "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
        (newer, "from_the_future", "0" * 64, 1.0),
    )
    before = _schema(url)
    for migrate in (True, False):
        with pytest.raises(errors.StoreVersionError) as info:
            with_store(url, _version, migrate=migrate)
        message = str(info.value)
        assert f"schema version {newer}" in message and "upgrade tether" in message
    with pytest.raises(errors.StoreVersionError, match="upgrade tether"):
        with_store(url, lambda s: s.migrate(), check=False)
    assert _schema(url) == before


def test_an_alternate_folder_must_be_well_formed(tmp_path: Path) -> None:
    target = tmp_path / "sqlite"
    target.mkdir()
    (target / "0001_first.sql").write_text("CREATE TABLE a (x INTEGER);")
    (target / "0003_gap.sql").write_text("CREATE TABLE b (x INTEGER);")
    with pytest.raises(errors.StoreCorrupt, match="expected 2"):
        migrations.load("sqlite", tmp_path)
    shutil.rmtree(target)
    assert migrations.load("sqlite", tmp_path) == []
