"""SQLite's query plans for the console's reads: each is a bounded index range, never a
scan of a task's journal or a session's messages (SQLite keeps no statistics, so a plan
is fixed by the query's shape; these tests pin the shapes)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tether import types
from tether.store import console_sql, dialect, open_store, views


def _plan(conn: sqlite3.Connection, sql: str, params: object) -> str:
    rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()  # type: ignore[arg-type]
    return " | ".join(str(r[3]) for r in rows)


def _store(tmp_path: Path) -> Path:
    path = tmp_path / "plans.db"

    async def make() -> None:
        store = open_store(f"sqlite:///{path}")
        await store.open()
        await store.submit_task(types.NewTask("acme", "a", "x"))
        await store.close()

    asyncio.run(make())
    return path


def test_a_page_of_steps_and_its_messages_are_seeks(tmp_path: Path) -> None:
    conn = sqlite3.connect(_store(tmp_path))
    try:
        page, count = console_sql.journal_queries("t", 99, 100)
        assert "SEARCH steps USING PRIMARY KEY (task_id=? AND idx>?)" in _plan(
            conn, page.sql, page.params
        )
        assert "SEARCH steps USING PRIMARY KEY (task_id=?)" in _plan(conn, count.sql, count.params)
        at = dialect.SQLITE.messages("s", [1, 2])
        messages = _plan(conn, at.sql, at.params)
        assert "SEARCH m USING PRIMARY KEY (session_id=? AND seq=?)" in messages
        assert messages.index("SCAN j") < messages.index("SEARCH m")  # json_each outside
    finally:
        conn.close()


def test_filtered_task_pages_and_the_time_window_use_indexes(tmp_path: Path) -> None:
    conn = sqlite3.connect(_store(tmp_path))
    try:
        for query, index in [
            (views.TaskQuery(agent="a"), "tasks_by_agent"),
            (views.TaskQuery(tenant="acme"), "tasks_by_tenant"),
            (views.TaskQuery(status="failed"), "tasks_by_status"),
            (views.TaskQuery(since=1.0), "tasks_by_created"),
            (views.TaskQuery(until=1.0), "tasks_by_created"),
        ]:
            q = console_sql.task_page(query, 1000, 50)
            assert index in _plan(conn, q.sql, q.params), query
        start = console_sql.window_start(1.0)
        assert "SEARCH tasks USING COVERING INDEX tasks_by_created (created_at>?)" in _plan(
            conn, start.sql, start.params
        )
    finally:
        conn.close()
