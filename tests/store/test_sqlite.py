"""SQLite-only behaviour: WAL, several processes on one file, migrations on open."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from tether import errors, types
from tether.store import migrations, sqlite_schema
from tether.store import sqlite_connection as connection
from tether.store.sqlite import SQLiteStore

CLAIMER = """
import asyncio, json, sys, time
from pathlib import Path
from tether.store.sqlite import SQLiteStore

async def main(url, worker, go):
    store = SQLiteStore(url)
    await store.open()
    while not Path(go).exists():
        time.sleep(0.005)
    claimed = []
    # a fresh worker id per claim, so a claim never resumes this process's own lease
    while (got := await store.claim_task(f"{worker}-{len(claimed)}", lease_ttl=600)):
        claimed.append(got.task.id)
    await store.close()
    print(json.dumps(claimed))

asyncio.run(main(*sys.argv[1:4]))
"""

OPENER = """
import asyncio, sys, time
from pathlib import Path
from tether.store.sqlite import SQLiteStore

async def main(url, go):
    while not Path(go).exists():
        time.sleep(0.005)
    store = SQLiteStore(url)
    await store.open()
    print(await store.schema_version())
    await store.close()

asyncio.run(main(*sys.argv[1:3]))
"""


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _reap(procs: list[subprocess.Popen[str]]) -> list[tuple[str, str]]:
    """Every child's output, every child waited for (and killed past the timeout), so
    one failing child leaves no pipes open for a later test to trip over."""
    outputs: list[tuple[str, str]] = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=120))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    return outputs


def _run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def _table_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_opens_in_wal_mode_with_the_schema_applied(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "tether.db"

    async def body() -> None:
        store = SQLiteStore(_url(db))
        await store.open()
        assert await store.schema_version() == len(migrations.load("sqlite"))
        assert await store.migrate(dry_run=True) == []
        assert await store.migrate() == []
        await store.close()

    _run(body)
    assert _table_rows(db, "PRAGMA journal_mode") == [("wal",)]
    applied = _table_rows(db, "SELECT version, name, checksum FROM schema_migrations")
    assert applied == [(m.version, m.name, m.checksum) for m in migrations.load("sqlite")]


def test_a_claim_carries_the_task_start_read_in_its_own_transaction(tmp_path: Path) -> None:
    async def body() -> None:
        store = SQLiteStore(_url(tmp_path / "t.db"))
        await store.open()
        try:
            new = types.NewTask(tenant="acme", agent="a", input="hi")
            task = await store.submit_task(new)
            got = await store.claim_task("w1", lease_ttl=60)
            assert got is not None and got.start is not None
            assert [m.message.content for m in got.start.history] == ["hi"]
            assert got.start == await store.read_task_start(got.task)
            await store.commit_steps([step_commit(got.lease)])
            await store.expire_lease(task.id)
            again = await store.claim_task("w2", lease_ttl=60)  # a recovery: a journal
            assert again is not None and again.start is not None
            assert len(again.start.journal) == 1
            assert again.start == await store.read_task_start(again.task)
        finally:
            await store.close()

    _run(body)


def step_commit(lease: types.Lease) -> types.StepCommit:
    step = types.StepRecord(
        task_id=lease.task_id, index=0, kind="custom", name="s", fingerprint="f",
        status="completed", output=1, started_at=1.0, finished_at=2.0, worker="w1",
    )  # fmt: skip
    return types.StepCommit(lease=lease, step=step, messages=(), session_state=None, events=())


def test_relative_url_and_synchronous_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    async def body() -> None:
        store = SQLiteStore("sqlite:///rel.db?synchronous=normal")
        await store.open()
        await store.create_session("acme", "agent")
        await store.close()

    _run(body)
    assert (tmp_path / "rel.db").exists()


def test_two_processes_racing_never_double_claim(tmp_path: Path) -> None:
    db = tmp_path / "race.db"
    go = tmp_path / "go"

    async def seed() -> list[str]:
        store = SQLiteStore(_url(db))
        await store.open()
        ids = [
            (await store.submit_task(types.NewTask("acme", "agent", f"task {i}"))).id
            for i in range(40)
        ]
        await store.close()
        return ids

    ids = asyncio.run(seed())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, _url(db), f"proc{n}", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    go.touch()
    claimed: list[list[str]] = []
    for proc, (out, err) in zip(procs, _reap(procs), strict=True):
        assert proc.returncode == 0, err
        claimed.append(json.loads(out))
    assert not set(claimed[0]) & set(claimed[1])
    assert sorted(claimed[0] + claimed[1]) == sorted(ids)
    runs = _table_rows(db, "SELECT task_id, COUNT(*) FROM task_runs GROUP BY task_id")
    assert {count for _, count in runs} == {1} and len(runs) == 40


def test_concurrent_first_open_migrates_once(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, _url(db), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    go.touch()
    latest = len(migrations.load("sqlite"))
    for proc, (out, err) in zip(procs, _reap(procs), strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == str(latest)
    rows = _table_rows(db, "SELECT version FROM schema_migrations ORDER BY version")
    assert rows == [(v,) for v in range(1, latest + 1)]


def test_opening_waits_while_another_connection_holds_the_write_lock(tmp_path: Path) -> None:
    # A connection that holds the write lock on a file still in rollback mode makes
    # SQLite refuse the switch to WAL at once, without its busy handler: first opens
    # racing each other hit exactly this.
    db = tmp_path / "held.db"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE held (x INTEGER)")
    holder.execute("CREATE TABLE schema_migrations (version INTEGER)")  # a tether store's file
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO held VALUES (1)")
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        conn = connection.connect(str(db), "FULL", _url(db))
    finally:
        release.join()
        holder.close()
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert [tuple(r) for r in conn.execute("SELECT x FROM held")] == [(1,)]
    finally:
        conn.close()


def test_concurrent_first_open_from_threads(tmp_path: Path) -> None:
    db = tmp_path / "threads.db"
    failures: list[BaseException] = []

    def open_one() -> None:
        async def body() -> None:
            store = SQLiteStore(_url(db))
            await store.open()
            await store.close()

        try:
            asyncio.run(body())
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(_table_rows(db, "SELECT version FROM schema_migrations")) == len(
        migrations.load("sqlite")
    )


def _fresh(db: Path) -> None:
    async def body() -> None:
        store = SQLiteStore(_url(db))
        await store.open()
        await store.submit_task(types.NewTask("acme", "agent", "keep me"))
        await store.close()

    _run(body)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_newer_store_is_refused_without_writing(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    _fresh(db)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'from_the_future', 'abc', 1.0)")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = _digest(db)

    async def body() -> None:
        for migrate in (True, False):
            store = SQLiteStore(_url(db), migrate=migrate)
            with pytest.raises(errors.StoreVersionError) as info:
                await store.open()
            message = str(info.value)
            assert "99" in message and "upgrade tether" in message
            assert str(len(migrations.load("sqlite"))) in message

    _run(body)
    assert _digest(db) == before
    assert _table_rows(db, "SELECT COUNT(*) FROM tasks") == [(1,)]


def test_pending_migrations_without_migrate_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "pending.db"
    url = _url(db)

    async def body() -> None:
        store = SQLiteStore(url, migrate=False)
        with pytest.raises(errors.StoreVersionError, match="tether migrate --store"):
            await store.open()
        store = SQLiteStore(url)
        await store.open()
        assert await store.schema_version() == len(migrations.load("sqlite"))
        await store.close()
        store = SQLiteStore(url, migrate=False)  # up to date: opens
        await store.open()
        await store.close()

    _run(body)


def test_unrecorded_migration_is_refused_without_writing(tmp_path: Path) -> None:
    db = tmp_path / "dry.db"
    _fresh(db)
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM schema_migrations")  # pretend 0001 was never recorded
    conn.commit()
    conn.close()

    async def body() -> None:
        store = SQLiteStore(_url(db), migrate=False)
        with pytest.raises(errors.StoreVersionError):
            await store.open()

    _run(body)
    assert _table_rows(db, "SELECT COUNT(*) FROM schema_migrations") == [(0,)]


def test_an_edited_migration_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "edited.db"
    _fresh(db)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_migrations SET checksum = 'deadbeef' WHERE version = 1")
    conn.commit()
    conn.close()

    async def body() -> None:
        store = SQLiteStore(_url(db))
        with pytest.raises(errors.StoreVersionError, match="0001_initial"):
            await store.open()

    _run(body)


def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path) -> None:
    db = tmp_path / "garbage.db"
    db.write_bytes(b"this is not sqlite at all" * 200)

    async def body() -> None:
        store = SQLiteStore(_url(db))
        with pytest.raises(errors.StoreCorrupt) as info:
            await store.open()
        assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
        assert str(db) in str(info.value)

    _run(body)


def test_a_closed_store_says_to_open_it(tmp_path: Path) -> None:
    async def body() -> None:
        store = SQLiteStore(_url(tmp_path / "closed.db"))
        with pytest.raises(errors.InfraError, match="open"):
            await store.get_task("x")
        await store.open()
        await store.close()
        with pytest.raises(errors.InfraError, match="open"):
            await store.get_task("x")

    _run(body)


def test_works_from_an_event_loop_on_another_thread(tmp_path: Path) -> None:
    db = tmp_path / "loop.db"
    seen: list[str] = []

    def in_thread() -> None:
        async def body() -> None:
            store = SQLiteStore(_url(db))
            await store.open()
            tasks = await asyncio.gather(
                *(store.submit_task(types.NewTask("acme", "agent", str(i))) for i in range(20))
            )
            seen.extend(t.input for t in tasks)
            await store.close()

        asyncio.run(body())

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert sorted(seen, key=int) == [str(i) for i in range(20)]


def test_a_cancelled_await_does_not_break_the_store(tmp_path: Path) -> None:
    async def body() -> None:
        store = SQLiteStore(_url(tmp_path / "cancel.db"))
        await store.open()
        pending = asyncio.ensure_future(store.submit_task(types.NewTask("acme", "a", "x")))
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        task = await store.submit_task(types.NewTask("acme", "a", "y"))
        assert (await store.get_task(task.id)).input == "y"
        await store.close()

    _run(body)


def test_migration_files_are_well_named_and_contiguous() -> None:
    names = migrations.file_names("sqlite")
    assert names, "no SQLite migrations shipped"
    for number, name in enumerate(names, start=1):
        match = migrations.NAME_PATTERN.match(name)
        assert match is not None, f"{name} is not NNNN_lower_snake.sql"
        assert int(match["version"]) == number, f"{name} breaks the numbering"
    assert [m.label + ".sql" for m in migrations.load("sqlite")] == names


def test_every_migration_statement_runs_on_a_bare_connection() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        for migration in migrations.load("sqlite"):
            for statement in sqlite_schema.statements(migration.sql):
                conn.execute(statement)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    expected = {"schema_migrations", "sessions", "messages", "tasks", "steps", "step_attempts"}
    assert expected | {"task_runs", "events"} <= tables
