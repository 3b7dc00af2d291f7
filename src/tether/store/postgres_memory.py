"""A session's vector memory on PostgreSQL: rows of float32 blobs, searched in the process.

The same layout and rules as the SQLite store (``vectors`` encodes, decodes and ranks);
writes are fenced by the lease of a running task of that session.
"""

from __future__ import annotations

from collections.abc import Sequence

from tether import errors, types
from tether.store import postgres_queries as queries
from tether.store import vectors
from tether.store.base import MemoryItem


async def add(
    conn: queries.Connection, lease: types.Lease, session_id: str, items: Sequence[MemoryItem]
) -> None:
    """Store (or replace, by seq) the items, in the caller's transaction."""
    blobs = [vectors.encode(i.vector, f"memory item {i.seq}") for i in items]
    task = await queries.fence(conn, lease, lease.task_id)
    if task["session_id"] != session_id:
        raise errors.InvalidInput(
            f"task {lease.task_id} belongs to session {task['session_id']}, "
            f"not {session_id}; it may only write its own session's memory",
            session=session_id,
            task=lease.task_id,
        )
    row = await queries.fetch_one(
        conn, "SELECT dimensions FROM memory WHERE session_id = %s LIMIT 1", (session_id,)
    )
    stored = row["dimensions"] if row is not None else None
    for item in items:
        vectors.check_dimensions(session_id, stored, len(item.vector))
        stored = len(item.vector)
    now = types.now()
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO memory (session_id, seq, task_id, role, text, dimensions, vector,"
            " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (session_id, seq)"
            " DO UPDATE SET task_id = excluded.task_id, role = excluded.role,"
            " text = excluded.text, dimensions = excluded.dimensions,"
            " vector = excluded.vector, created_at = excluded.created_at",
            [(session_id, i.seq, i.task_id or lease.task_id, i.role, i.text, len(i.vector),
              blob, now) for i, blob in zip(items, blobs, strict=True)],
        )  # fmt: skip


async def items(conn: queries.Connection, session_id: str) -> list[MemoryItem]:
    """Every item of the session's memory, by seq (``NotFound`` for an unknown session)."""
    await queries.session_row(conn, session_id, None)
    found = await queries.fetch_all(
        conn, "SELECT * FROM memory WHERE session_id = %s ORDER BY seq", (session_id,)
    )
    return [
        MemoryItem(
            seq=r["seq"],
            role=r["role"],
            text=r["text"],
            vector=vectors.decode(bytes(r["vector"])),
            task_id=r["task_id"],
            created_at=r["created_at"],
        )
        for r in found
    ]
