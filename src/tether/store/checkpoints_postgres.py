"""LangGraph checkpoints on PostgreSQL: ``Checkpoints`` over ``PostgresStore``'s pool.

Writes run in one transaction each; a fenced one locks its task row first
(``postgres_queries.fence``), so a claim cannot bump the epoch between the check and
the write. Reads run in autocommit, as the store's other reads do.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from tether import types
from tether.store import postgres_queries as queries
from tether.store.checkpoints import (
    Blob,
    CheckpointRow,
    StoredCheckpoint,
    Write,
    sort_writes,
    version_text,
)

T = TypeVar("T")
Conn = queries.Connection
Job = Callable[[Callable[[Conn], Awaitable[T]]], Awaitable[T]]

_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, channel_versions,"
    " type, checkpoint, metadata_type, metadata, task_id, epoch"
)
_UNUSED_BLOBS = (
    "DELETE FROM langgraph_blobs b WHERE b.thread_id = %s AND NOT EXISTS ("
    " SELECT 1 FROM langgraph_checkpoints c, jsonb_each_text(c.channel_versions::jsonb) v"
    " WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns"
    " AND v.key = b.channel AND v.value = b.version)"
)
_UNUSED_WRITES = (
    "DELETE FROM langgraph_writes w WHERE w.thread_id = %s AND NOT EXISTS ("
    " SELECT 1 FROM langgraph_checkpoints c WHERE c.thread_id = w.thread_id"
    " AND c.checkpoint_ns = w.checkpoint_ns AND c.checkpoint_id = w.checkpoint_id)"
)


class PostgresCheckpoints:
    def __init__(self, tx: Job[Any], run: Job[Any]) -> None:
        self._tx = tx
        self._run = run

    async def put(
        self, row: CheckpointRow, blobs: Sequence[Blob], *, lease: types.Lease | None
    ) -> None:
        async def write(conn: Conn) -> None:
            if lease is not None:
                await queries.fence(conn, lease, lease.task_id)
            async with conn.cursor() as cur:
                if blobs:
                    await cur.executemany(
                        "INSERT INTO langgraph_blobs"
                        " (thread_id, checkpoint_ns, channel, version, type, blob)"
                        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        [
                            (row.thread_id, row.checkpoint_ns, b.channel, b.version, b.type, b.data)
                            for b in blobs
                        ],
                    )
                await cur.execute(
                    f"INSERT INTO langgraph_checkpoints ({_COLUMNS}, created_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET"
                    " parent_checkpoint_id = EXCLUDED.parent_checkpoint_id,"
                    " run_id = EXCLUDED.run_id, channel_versions = EXCLUDED.channel_versions,"
                    " type = EXCLUDED.type, checkpoint = EXCLUDED.checkpoint,"
                    " metadata_type = EXCLUDED.metadata_type, metadata = EXCLUDED.metadata,"
                    " task_id = EXCLUDED.task_id, epoch = EXCLUDED.epoch",
                    (*_values(row), types.now()),
                )

        await self._tx(write)

    async def put_writes(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        writes: Sequence[Write],
        *,
        lease: types.Lease | None,
    ) -> None:
        async def write(conn: Conn) -> None:
            if lease is not None:
                await queries.fence(conn, lease, lease.task_id)
            async with conn.cursor() as cur:
                for w in writes:
                    conflict = (
                        "DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type,"
                        " blob = EXCLUDED.blob, task_path = EXCLUDED.task_path"
                        if w.idx < 0
                        else "DO NOTHING"
                    )
                    await cur.execute(
                        "INSERT INTO langgraph_writes (thread_id, checkpoint_ns, checkpoint_id,"
                        " task_id, idx, channel, type, blob, task_path)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) "
                        + conflict,
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

        await self._tx(write)

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
                where.append(f"{column} {op} %s")
                params.append(value)
        sql = f"SELECT {_COLUMNS} FROM langgraph_checkpoints"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY checkpoint_id DESC"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(limit)

        async def read(conn: Conn) -> list[CheckpointRow]:
            return [_row(r) for r in await queries.fetch_all(conn, sql, params)]

        result: list[CheckpointRow] = await self._run(read)
        return result

    async def load(self, rows: Sequence[CheckpointRow]) -> list[StoredCheckpoint]:
        async def read(conn: Conn) -> list[StoredCheckpoint]:
            return [await _load_one(conn, row) for row in rows]

        result: list[StoredCheckpoint] = await self._run(read)
        return result

    async def delete_thread(self, thread_id: str) -> None:
        async def write(conn: Conn) -> None:
            for table in ("langgraph_checkpoints", "langgraph_blobs", "langgraph_writes"):
                await conn.execute(f"DELETE FROM {table} WHERE thread_id = %s", (thread_id,))

        await self._tx(write)

    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        if not run_ids:
            return

        async def write(conn: Conn) -> None:
            found = await queries.fetch_all(
                conn,
                "DELETE FROM langgraph_checkpoints WHERE run_id = ANY(%s) RETURNING thread_id",
                (list(run_ids),),
            )
            for thread in sorted({r["thread_id"] for r in found}):
                await conn.execute(_UNUSED_WRITES, (thread,))
                await conn.execute(_UNUSED_BLOBS, (thread,))

        await self._tx(write)

    async def copy_thread(self, source: str, target: str) -> None:
        async def write(conn: Conn) -> None:
            await conn.execute(
                f"INSERT INTO langgraph_checkpoints ({_COLUMNS}, created_at)"
                " SELECT %s, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id,"
                " channel_versions, type, checkpoint, metadata_type, metadata, task_id, epoch,"
                " created_at FROM langgraph_checkpoints WHERE thread_id = %s"
                " ON CONFLICT DO NOTHING",
                (target, source),
            )
            await conn.execute(
                "INSERT INTO langgraph_blobs"
                " SELECT %s, checkpoint_ns, channel, version, type, blob"
                " FROM langgraph_blobs WHERE thread_id = %s ON CONFLICT DO NOTHING",
                (target, source),
            )
            await conn.execute(
                "INSERT INTO langgraph_writes"
                " SELECT %s, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob,"
                " task_path FROM langgraph_writes WHERE thread_id = %s ON CONFLICT DO NOTHING",
                (target, source),
            )

        await self._tx(write)

    async def prune(self, thread_ids: Sequence[str], *, keep_latest: bool) -> None:
        async def write(conn: Conn) -> None:
            for thread in thread_ids:
                if keep_latest:
                    await conn.execute(
                        "DELETE FROM langgraph_checkpoints c WHERE c.thread_id = %s"
                        " AND c.checkpoint_id < (SELECT MAX(k.checkpoint_id)"
                        " FROM langgraph_checkpoints k WHERE k.thread_id = c.thread_id"
                        " AND k.checkpoint_ns = c.checkpoint_ns)",
                        (thread,),
                    )
                else:
                    await conn.execute(
                        "DELETE FROM langgraph_checkpoints WHERE thread_id = %s", (thread,)
                    )
                await conn.execute(_UNUSED_WRITES, (thread,))
                await conn.execute(_UNUSED_BLOBS, (thread,))

        await self._tx(write)

    async def thread_bytes(self, thread_id: str) -> int:
        async def read(conn: Conn) -> int:
            total = 0
            for sql in (
                "SELECT SUM(octet_length(checkpoint) + octet_length(metadata)"
                " + octet_length(channel_versions)) AS n"
                " FROM langgraph_checkpoints WHERE thread_id = %s",
                "SELECT SUM(COALESCE(octet_length(blob), 0)) AS n FROM langgraph_blobs"
                " WHERE thread_id = %s",
                "SELECT SUM(octet_length(blob)) AS n FROM langgraph_writes WHERE thread_id = %s",
            ):
                found = await queries.fetch_one(conn, sql, (thread_id,))
                total += int(found["n"] or 0) if found else 0
            return total

        result: int = await self._run(read)
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


def _row(r: dict[str, Any]) -> CheckpointRow:
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


async def _load_one(conn: Conn, row: CheckpointRow) -> StoredCheckpoint:
    blobs: list[Blob] = []
    if row.channel_versions:
        channels = list(row.channel_versions)
        versions = [version_text(row.channel_versions[c]) for c in channels]
        found = await queries.fetch_all(
            conn,
            "SELECT b.channel, b.version, b.type, b.blob FROM langgraph_blobs b"
            " JOIN unnest(%s::text[], %s::text[]) AS v (channel, version)"
            " ON b.channel = v.channel AND b.version = v.version"
            " WHERE b.thread_id = %s AND b.checkpoint_ns = %s",
            (channels, versions, row.thread_id, row.checkpoint_ns),
        )
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
        for w in await queries.fetch_all(
            conn,
            "SELECT task_id, idx, channel, type, blob, task_path FROM langgraph_writes"
            " WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s",
            (row.thread_id, row.checkpoint_ns, row.checkpoint_id),
        )
    ]
    return StoredCheckpoint(row, tuple(blobs), sort_writes(writes))
