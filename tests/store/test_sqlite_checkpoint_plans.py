"""SQLite's query plan for a checkpoint's blobs: one primary-key seek per channel,
never a scan of the thread's blobs (which grow with every step of a long thread)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tether.store import checkpoint_rules, open_store
from tether.store.checkpoints import CheckpointRow


def test_a_checkpoints_blobs_are_found_by_their_whole_keys(tmp_path: Path) -> None:
    path = tmp_path / "plans.db"

    async def make() -> None:
        store = open_store(f"sqlite:///{path}")
        await store.open()
        await store.close()

    asyncio.run(make())
    row = CheckpointRow(
        "t", "", "c1", None, None, {"a": 1, "b": "2.x"}, "msgpack", b"", "json", b"{}"
    )
    query = checkpoint_rules.blobs_of(row)
    conn = sqlite3.connect(path)
    try:
        plan = conn.execute("EXPLAIN QUERY PLAN " + query.sql, dict(query.params)).fetchall()
    finally:
        conn.close()
    seeks = [r[3] for r in plan if str(r[3]).startswith("SEARCH langgraph_blobs")]
    assert len(seeks) == 2, plan
    assert all("channel=? AND version=?" in s for s in seeks), plan
