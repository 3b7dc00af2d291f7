"""A 500-step task: the bytes stored per step do not grow with the session's length."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tether import Agent, Runtime, ScriptedModel, tool


@tool
def note(text: str) -> str:
    """Keep a note."""
    return "ok: " + text


PAYLOAD = "x" * 500


def _agent(turns: int) -> Agent:
    # 500 steps of 500 characters take ~75k tokens: a window that holds them all
    model = ScriptedModel(
        [ScriptedModel.call("note", text=PAYLOAD)] * turns + ["done"], context_window=200_000
    )
    return Agent("writer", model, tools=[note], max_steps=turns + 50)


def _database_bytes(path: Path) -> int:
    """What the SQLite file holds, in use (free pages left out), read by SQLite itself."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    return int((pages - free) * size)


def _run(path: Path, turns: int) -> int:
    with Runtime(f"sqlite:///{path}", worker_id="t:run") as rt:
        rt.register(_agent(turns))
        assert rt.run(rt.submit("writer", "go").id).status == "completed"
    return _database_bytes(path)


def test_the_database_grows_linearly_with_the_steps(tmp_path: Path) -> None:
    """Measured on the database file, not by the store's own count: a task five times as
    long takes about five times the bytes (a step that stored the history would make it
    about twenty-five times)."""
    empty = _run(tmp_path / "empty.db", 0)
    short = _run(tmp_path / "short.db", 20) - empty
    long = _run(tmp_path / "long.db", 100) - empty
    assert short > 20 * 2 * len(PAYLOAD)  # the payloads are in there
    assert 4.0 * short <= long <= 6.5 * short, (short, long)


def test_step_500_stores_as_much_as_step_5(tmp_path: Path) -> None:
    agent = _agent(250)
    with Runtime(f"sqlite:///{tmp_path / 't.db'}", worker_id="t:run") as rt:
        rt.register(agent)
        task = rt.submit("writer", "go")
        result = rt.run(task.id)
        assert result.status == "completed"
        sizes = {
            i: rt.run_on_store(lambda s, i=i: s.step_storage_bytes(task.id, i))  # type: ignore[misc]
            for i in (4, 5, 498, 499)
        }
        journal = rt.run_on_store(lambda s: s.load_journal(task.id))
    assert len(journal) == 501
    for early, late in ((4, 498), (5, 499)):
        assert sizes[early] > 500
        assert abs(sizes[late] - sizes[early]) <= 0.10 * sizes[early], sizes
