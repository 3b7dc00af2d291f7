"""LangGraph checkpoints on SQLite: ``Checkpoints`` over ``SQLiteStore``'s connection thread.

Every method is one job on the store's connection: writes in one ``BEGIN IMMEDIATE``
transaction (with the lease check first when fenced), reads in one read transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from tether import types
from tether.store import sqlite_queries as queries
from tether.store.checkpoints import (
    Blob,
    CheckpointRow,
    StoredCheckpoint,
    Write,
    sort_writes,
    version_text,
)

T = TypeVar("T")
Job = Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]

_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, channel_versions,"
    " type, checkpoint, metadata_type, metadata, task_id, epoch"
)
# blobs of a thread that no checkpoint of it names any more
_UNUSED_BLOBS = (
    "DELETE FROM langgraph_blobs WHERE thread_id = ? AND NOT EXISTS ("
    " SELECT 1 FROM langgraph_checkpoints c, json_each(c.channel_versions) v"
    " WHERE c.thread_id = langgraph_blobs.thread_id"
    " AND c.checkpoint_ns = langgraph_blobs.checkpoint_ns"
    " AND v.key = langgraph_blobs.channel AND CAST(v.value AS TEXT) = langgraph_blobs.version)"
)
# writes of a thread whose checkpoint is gone
_UNUSED_WRITES = (
    "DELETE FROM langgraph_writes WHERE thread_id = ? AND NOT EXISTS ("
    " SELECT 1 FROM langgraph_checkpoints c WHERE c.thread_id = langgraph_writes.thread_id"
    " AND c.checkpoint_ns = langgraph_writes.checkpoint_ns"
    " AND c.checkpoint_id = langgraph_writes.checkpoint_id)"
)


class SQLiteCheckpoints:
    def __init__(self, write: Job[Any], read: Job[Any]) -> None:
        self._write = write
        self._read = read

    async def put(
        self, row: CheckpointRow, blobs: Sequence[Blob], *, lease: types.Lease | None
    ) -> None:
        def write(conn: sqlite3.Connection) -> None:
            if lease is not None:
                queries.fence(conn, lease, lease.task_id)
            conn.executemany(
                "INSERT OR IGNORE INTO langgraph_blobs"
                " (thread_id, checkpoint_ns, channel, version, type, blob)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (row.thread_id, row.checkpoint_ns, b.channel, b.version, b.type, b.data)
                    for b in blobs
                ],
            )
            conn.execute(
                f"INSERT OR REPLACE INTO langgraph_checkpoints ({_COLUMNS}, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*_values(row), types.now()),
            )

        await self._write(write)

    async def put_writes(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        writes: Sequence[Write],
        *,
        lease: types.Lease | None,
    ) -> None:
        def write(conn: sqlite3.Connection) -> None:
            if lease is not None:
                queries.fence(conn, lease, lease.task_id)
            for w in writes:
                verb = "INSERT OR REPLACE" if w.idx < 0 else "INSERT OR IGNORE"
                conn.execute(
                    f"{verb} INTO langgraph_writes (thread_id, checkpoint_ns, checkpoint_id,"
                    " task_id, idx, channel, type, blob, task_path)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        thread_id,
                        checkpoint_ns,
                        checkpoint_id,
                        w.task_id,
                        w.idx,
                        w.channel,
                        w.type,
                        w.data,
                        w.task_path,
                    ),
                )

        await self._write(write)

    async def list_rows(
        self,
        *,
        thread_id: str | None,
        checkpoint_ns: str | None,
        checkpoint_id: str | None,
        before: str | None,
        limit: int | None,
    ) -> list[CheckpointRow]:
        where: list[str] = []
        params: list[Any] = []
        for column, value, op in (
            ("thread_id", thread_id, "="),
            ("checkpoint_ns", checkpoint_ns, "="),
            ("checkpoint_id", checkpoint_id, "="),
            ("checkpoint_id", before, "<"),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        sql = f"SELECT {_COLUMNS} FROM langgraph_checkpoints"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY checkpoint_id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)

        def read(conn: sqlite3.Connection) -> list[CheckpointRow]:
            return [_row(r) for r in conn.execute(sql, params).fetchall()]

        result: list[CheckpointRow] = await self._read(read)
        return result

    async def load(self, rows: Sequence[CheckpointRow]) -> list[StoredCheckpoint]:
        def read(conn: sqlite3.Connection) -> list[StoredCheckpoint]:
            return [_load_one(conn, row) for row in rows]

        result: list[StoredCheckpoint] = await self._read(read)
        return result

    async def delete_thread(self, thread_id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            for table in ("langgraph_checkpoints", "langgraph_blobs", "langgraph_writes"):
                conn.execute(f"DELETE FROM {table} WHERE thread_id = ?", (thread_id,))

        await self._write(write)

    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        if not run_ids:
            return
        marks = ", ".join("?" for _ in run_ids)

        def write(conn: sqlite3.Connection) -> None:
            threads = [
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT thread_id FROM langgraph_checkpoints"
                    f" WHERE run_id IN ({marks})",
                    list(run_ids),
                )
            ]
            conn.execute(
                f"DELETE FROM langgraph_checkpoints WHERE run_id IN ({marks})", list(run_ids)
            )
            for thread in threads:
                conn.execute(_UNUSED_WRITES, (thread,))
                conn.execute(_UNUSED_BLOBS, (thread,))

        await self._write(write)

    async def copy_thread(self, source: str, target: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT OR IGNORE INTO langgraph_checkpoints ({_COLUMNS}, created_at)"
                " SELECT ?, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id,"
                " channel_versions, type, checkpoint, metadata_type, metadata, task_id, epoch,"
                " created_at FROM langgraph_checkpoints WHERE thread_id = ?",
                (target, source),
            )
            conn.execute(
                "INSERT OR IGNORE INTO langgraph_blobs"
                " SELECT ?, checkpoint_ns, channel, version, type, blob"
                " FROM langgraph_blobs WHERE thread_id = ?",
                (target, source),
            )
            conn.execute(
                "INSERT OR IGNORE INTO langgraph_writes"
                " SELECT ?, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob,"
                " task_path FROM langgraph_writes WHERE thread_id = ?",
                (target, source),
            )

        await self._write(write)

    async def prune(self, thread_ids: Sequence[str], *, keep_latest: bool) -> None:
        def write(conn: sqlite3.Connection) -> None:
            for thread in thread_ids:
                if keep_latest:
                    conn.execute(
                        "DELETE FROM langgraph_checkpoints WHERE thread_id = ? AND checkpoint_id"
                        " < (SELECT MAX(k.checkpoint_id) FROM langgraph_checkpoints k"
                        " WHERE k.thread_id = langgraph_checkpoints.thread_id"
                        " AND k.checkpoint_ns = langgraph_checkpoints.checkpoint_ns)",
                        (thread,),
                    )
                else:
                    conn.execute("DELETE FROM langgraph_checkpoints WHERE thread_id = ?", (thread,))
                conn.execute(_UNUSED_WRITES, (thread,))
                conn.execute(_UNUSED_BLOBS, (thread,))

        await self._write(write)

    async def thread_bytes(self, thread_id: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            total = 0
            for sql in (
                "SELECT SUM(LENGTH(checkpoint) + LENGTH(metadata) + LENGTH(channel_versions))"
                " FROM langgraph_checkpoints WHERE thread_id = ?",
                "SELECT SUM(COALESCE(LENGTH(blob), 0)) FROM langgraph_blobs WHERE thread_id = ?",
                "SELECT SUM(LENGTH(blob)) FROM langgraph_writes WHERE thread_id = ?",
            ):
                total += int(conn.execute(sql, (thread_id,)).fetchone()[0] or 0)
            return total

        result: int = await self._read(read)
        return result


def _values(row: CheckpointRow) -> tuple[Any, ...]:
    return (
        row.thread_id,
        row.checkpoint_ns,
        row.checkpoint_id,
        row.parent_checkpoint_id,
        row.run_id,
        json.dumps(dict(row.channel_versions), separators=(",", ":")),
        row.type,
        row.checkpoint,
        row.metadata_type,
        row.metadata,
        row.task_id,
        row.epoch,
    )


def _row(r: sqlite3.Row) -> CheckpointRow:
    return CheckpointRow(
        thread_id=r["thread_id"],
        checkpoint_ns=r["checkpoint_ns"],
        checkpoint_id=r["checkpoint_id"],
        parent_checkpoint_id=r["parent_checkpoint_id"],
        run_id=r["run_id"],
        channel_versions=json.loads(r["channel_versions"]),
        type=r["type"],
        checkpoint=bytes(r["checkpoint"]),
        metadata_type=r["metadata_type"],
        metadata=bytes(r["metadata"]),
        task_id=r["task_id"],
        epoch=r["epoch"],
    )


def _load_one(conn: sqlite3.Connection, row: CheckpointRow) -> StoredCheckpoint:
    blobs: list[Blob] = []
    if row.channel_versions:
        pairs = [(c, version_text(v)) for c, v in row.channel_versions.items()]
        marks = ", ".join("(?, ?)" for _ in pairs)
        found = conn.execute(
            "SELECT channel, version, type, blob FROM langgraph_blobs"
            f" WHERE thread_id = ? AND checkpoint_ns = ? AND (channel, version) IN ({marks})",
            [row.thread_id, row.checkpoint_ns, *(x for pair in pairs for x in pair)],
        ).fetchall()
        blobs = [
            Blob(
                b["channel"],
                b["version"],
                b["type"],
                None if b["blob"] is None else bytes(b["blob"]),
            )
            for b in found
            if b["type"] != "empty"
        ]
    writes = [
        Write(w["task_id"], w["idx"], w["channel"], w["type"], bytes(w["blob"]), w["task_path"])
        for w in conn.execute(
            "SELECT task_id, idx, channel, type, blob, task_path FROM langgraph_writes"
            " WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
            (row.thread_id, row.checkpoint_ns, row.checkpoint_id),
        ).fetchall()
    ]
    return StoredCheckpoint(row, tuple(blobs), sort_writes(writes))
