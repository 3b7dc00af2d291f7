"""LangGraph checkpoints' rules, written once for every engine (programs, ``program``),
and ``StoreCheckpoints``, the ``checkpoints.Checkpoints`` every store gives out.

Each method is one program run by the store's driver: writes in one write transaction
(fenced first when given a lease: ``transitions.fenced`` locks the task row, so a claim
cannot bump the epoch between the check and the write), reads as the store's other
reads. What the engines say differently (reading a JSON object's entries, a value's
length in bytes) comes from the store's ``Dialect``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tether import types
from tether.store import rows
from tether.store.checkpoints import (
    Blob,
    CheckpointRow,
    StoredCheckpoint,
    Write,
    sort_writes,
    version_text,
)
from tether.store.dialect import Dialect
from tether.store.program import Program, Query, Runner
from tether.store.transitions import fenced

_FIELDS = (
    "thread_id", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id", "run_id",
    "channel_versions", "type", "checkpoint", "metadata_type", "metadata", "task_id", "epoch",
)  # fmt: skip
_COLUMNS = ", ".join(_FIELDS)
_REPLACED = ", ".join(f"{c} = excluded.{c}" for c in _FIELDS[3:])
"""A checkpoint stored again under its id replaces the first (its ``created_at`` stays)."""
_WRITE_FIELDS = (
    "thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx", "channel", "type", "blob",
    "task_path",
)  # fmt: skip
_INSERT_WRITE = (
    f"INSERT INTO langgraph_writes ({', '.join(_WRITE_FIELDS)})"
    f" VALUES ({', '.join(':' + c for c in _WRITE_FIELDS)})"
    " ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO "
)
_UNUSED_WRITES = (
    "DELETE FROM langgraph_writes WHERE thread_id = :thread AND NOT EXISTS ("
    " SELECT 1 FROM langgraph_checkpoints c WHERE c.thread_id = langgraph_writes.thread_id"
    " AND c.checkpoint_ns = langgraph_writes.checkpoint_ns"
    " AND c.checkpoint_id = langgraph_writes.checkpoint_id)"
)
"""Writes of a thread whose checkpoint is gone."""


def _unused_blobs(dialect: Dialect) -> str:
    """Blobs of a thread that no checkpoint of it names any more."""
    entries = dialect.json_entries.format("c.channel_versions")
    return (
        "DELETE FROM langgraph_blobs WHERE thread_id = :thread AND NOT EXISTS ("
        f" SELECT 1 FROM langgraph_checkpoints c, {entries} v"
        " WHERE c.thread_id = langgraph_blobs.thread_id"
        " AND c.checkpoint_ns = langgraph_blobs.checkpoint_ns"
        f" AND v.key = langgraph_blobs.channel AND {dialect.entry_text.format('v')}"
        " = langgraph_blobs.version)"
    )


def _gone(dialect: Dialect, thread: str) -> Program[None]:
    """Delete what no checkpoint of ``thread`` uses any more: its writes, its blobs."""
    yield Query(_UNUSED_WRITES, {"thread": thread})
    yield Query(_unused_blobs(dialect), {"thread": thread})


def put(row: CheckpointRow, blobs: Sequence[Blob], lease: types.Lease | None) -> Program[None]:
    if lease is not None:
        yield from fenced(lease, lease.task_id)
    if blobs:
        yield Query(
            "INSERT INTO langgraph_blobs (thread_id, checkpoint_ns, channel, version, type, blob)"
            " VALUES (:thread_id, :checkpoint_ns, :channel, :version, :type, :blob)"
            " ON CONFLICT DO NOTHING",
            many=[
                {"thread_id": row.thread_id, "checkpoint_ns": row.checkpoint_ns,
                 "channel": b.channel, "version": b.version, "type": b.type, "blob": b.data}
                for b in blobs
            ],
        )  # fmt: skip
    yield Query(
        f"INSERT INTO langgraph_checkpoints ({_COLUMNS}, created_at)"
        f" VALUES ({', '.join(':' + c for c in _FIELDS)}, :created_at)"
        f" ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET {_REPLACED}",
        {**_values(row), "created_at": types.now()},
    )


def put_writes(
    thread_id: str,
    checkpoint_ns: str,
    checkpoint_id: str,
    writes: Sequence[Write],
    lease: types.Lease | None,
) -> Program[None]:
    """Ordinary writes are kept as first stored (a re-run task writes the same again);
    a special channel's (negative ``idx``) replaces the one stored at its key."""
    if lease is not None:
        yield from fenced(lease, lease.task_id)
    values = [
        {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint_id,
         "task_id": w.task_id, "idx": w.idx, "channel": w.channel, "type": w.type,
         "blob": w.data, "task_path": w.task_path}
        for w in writes
    ]  # fmt: skip
    ordinary = [v for v, w in zip(values, writes, strict=True) if w.idx >= 0]
    special = [v for v, w in zip(values, writes, strict=True) if w.idx < 0]
    if ordinary:
        yield Query(_INSERT_WRITE + "NOTHING", many=ordinary)
    if special:
        yield Query(
            _INSERT_WRITE + "UPDATE SET channel = excluded.channel, type = excluded.type,"
            " blob = excluded.blob, task_path = excluded.task_path",
            many=special,
        )


def list_rows(
    thread_id: str | None,
    checkpoint_ns: str | None,
    checkpoint_id: str | None,
    before: str | None,
    limit: int | None,
) -> Program[list[CheckpointRow]]:
    """Checkpoints newest first (by id), narrowed by each argument given."""
    where: list[str] = []
    params: dict[str, Any] = {}
    for name, column, value, op in (
        ("thread", "thread_id", thread_id, "="),
        ("ns", "checkpoint_ns", checkpoint_ns, "="),
        ("id", "checkpoint_id", checkpoint_id, "="),
        ("before", "checkpoint_id", before, "<"),
    ):
        if value is not None:
            where.append(f"{column} {op} :{name}")
            params[name] = value
    sql = f"SELECT {_COLUMNS} FROM langgraph_checkpoints"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY checkpoint_id DESC"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return [_row(r) for r in (yield Query(sql, params))]


def blobs_of(row: CheckpointRow) -> Query:
    """The blobs at the checkpoint's channel versions. An OR of whole keys: one
    primary-key seek per channel on both engines (SQLite answers ``(channel, version)
    IN (…)`` by scanning every blob of the thread)."""
    pairs = [(c, version_text(v)) for c, v in row.channel_versions.items()]
    keys = " OR ".join(f"(channel = :c{i} AND version = :v{i})" for i in range(len(pairs)))
    return Query(
        "SELECT channel, version, type, blob FROM langgraph_blobs"
        f" WHERE thread_id = :thread AND checkpoint_ns = :ns AND ({keys})",
        {
            "thread": row.thread_id,
            "ns": row.checkpoint_ns,
            **{f"c{i}": c for i, (c, _) in enumerate(pairs)},
            **{f"v{i}": v for i, (_, v) in enumerate(pairs)},
        },
    )


def load(checkpoints: Sequence[CheckpointRow]) -> Program[list[StoredCheckpoint]]:
    """Each checkpoint with the blobs of its channel versions and its pending writes."""
    loaded: list[StoredCheckpoint] = []
    for row in checkpoints:
        found = (yield blobs_of(row)) if row.channel_versions else []
        blobs = [
            Blob(b["channel"], b["version"], b["type"], _blob(b["blob"]))
            for b in found
            if b["type"] != "empty"
        ]
        writes = yield Query(
            "SELECT task_id, idx, channel, type, blob, task_path FROM langgraph_writes"
            " WHERE thread_id = :thread AND checkpoint_ns = :ns AND checkpoint_id = :id",
            {"thread": row.thread_id, "ns": row.checkpoint_ns, "id": row.checkpoint_id},
        )
        pending = [
            Write(w["task_id"], w["idx"], w["channel"], w["type"], bytes(w["blob"]), w["task_path"])
            for w in writes
        ]
        loaded.append(StoredCheckpoint(row, tuple(blobs), sort_writes(pending)))
    return loaded


def delete_thread(thread_id: str) -> Program[None]:
    for table in ("langgraph_checkpoints", "langgraph_blobs", "langgraph_writes"):
        yield Query(f"DELETE FROM {table} WHERE thread_id = :thread", {"thread": thread_id})


def delete_for_runs(dialect: Dialect, run_ids: Sequence[str]) -> Program[None]:
    if not run_ids:
        return
    marks = ", ".join(f":r{i}" for i in range(len(run_ids)))
    found = yield Query(
        f"DELETE FROM langgraph_checkpoints WHERE run_id IN ({marks}) RETURNING thread_id",
        {f"r{i}": r for i, r in enumerate(run_ids)},
    )
    for thread in sorted({r["thread_id"] for r in found}):
        yield from _gone(dialect, thread)


def copy_thread(source: str, target: str) -> Program[None]:
    """Every checkpoint, blob and write of ``source`` again under ``target`` (what
    ``target`` holds already is kept)."""
    params = {"source": source, "target": target}
    yield Query(
        f"INSERT INTO langgraph_checkpoints ({_COLUMNS}, created_at)"
        " SELECT :target, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id,"
        " channel_versions, type, checkpoint, metadata_type, metadata, task_id, epoch,"
        " created_at FROM langgraph_checkpoints WHERE thread_id = :source"
        " ON CONFLICT DO NOTHING",
        params,
    )
    yield Query(
        "INSERT INTO langgraph_blobs SELECT :target, checkpoint_ns, channel, version, type, blob"
        " FROM langgraph_blobs WHERE thread_id = :source ON CONFLICT DO NOTHING",
        params,
    )
    yield Query(
        "INSERT INTO langgraph_writes SELECT :target, checkpoint_ns, checkpoint_id, task_id, idx,"
        " channel, type, blob, task_path FROM langgraph_writes WHERE thread_id = :source"
        " ON CONFLICT DO NOTHING",
        params,
    )


def prune(dialect: Dialect, thread_ids: Sequence[str], keep_latest: bool) -> Program[None]:
    for thread in thread_ids:
        if keep_latest:
            yield Query(
                "DELETE FROM langgraph_checkpoints WHERE thread_id = :thread AND checkpoint_id"
                " < (SELECT MAX(k.checkpoint_id) FROM langgraph_checkpoints k"
                " WHERE k.thread_id = langgraph_checkpoints.thread_id"
                " AND k.checkpoint_ns = langgraph_checkpoints.checkpoint_ns)",
                {"thread": thread},
            )
        else:
            yield Query(
                "DELETE FROM langgraph_checkpoints WHERE thread_id = :thread", {"thread": thread}
            )
        yield from _gone(dialect, thread)


def thread_bytes(dialect: Dialect, thread_id: str) -> Program[int]:
    """Bytes of the thread's stored payloads: checkpoints (with their metadata and
    channel versions), blobs, writes."""
    octets = dialect.octets.format
    found = yield Query(
        "SELECT (SELECT COALESCE(SUM("
        f"{octets('checkpoint')} + {octets('metadata')} + {octets('channel_versions')}), 0)"
        " FROM langgraph_checkpoints WHERE thread_id = :thread)"
        f" + (SELECT COALESCE(SUM(COALESCE({octets('blob')}, 0)), 0)"
        " FROM langgraph_blobs WHERE thread_id = :thread)"
        f" + (SELECT COALESCE(SUM({octets('blob')}), 0)"
        " FROM langgraph_writes WHERE thread_id = :thread) AS n",
        {"thread": thread_id},
    )
    return int(found[0]["n"])


def _blob(data: bytes | None) -> bytes | None:
    return None if data is None else bytes(data)


def _values(row: CheckpointRow) -> dict[str, Any]:
    return {
        "thread_id": row.thread_id,
        "checkpoint_ns": row.checkpoint_ns,
        "checkpoint_id": row.checkpoint_id,
        "parent_checkpoint_id": row.parent_checkpoint_id,
        "run_id": row.run_id,
        "channel_versions": json.dumps(dict(row.channel_versions), separators=(",", ":")),
        "type": row.type,
        "checkpoint": row.checkpoint,
        "metadata_type": row.metadata_type,
        "metadata": row.metadata,
        "task_id": row.task_id,
        "epoch": row.epoch,
    }


def _row(r: rows.Row) -> CheckpointRow:
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


class StoreCheckpoints:
    """``checkpoints.Checkpoints`` over a store's driver: ``apply`` runs a program in one
    write transaction, ``query`` runs a read (``StoreCore._apply``, ``_query``)."""

    def __init__(self, apply: Runner, query: Runner, dialect: Dialect) -> None:
        self._apply = apply
        self._query = query
        self._dialect = dialect

    async def put(
        self, row: CheckpointRow, blobs: Sequence[Blob], *, lease: types.Lease | None
    ) -> None:
        await self._apply(put(row, blobs, lease))

    async def put_writes(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        writes: Sequence[Write],
        *,
        lease: types.Lease | None,
    ) -> None:
        await self._apply(put_writes(thread_id, checkpoint_ns, checkpoint_id, writes, lease))

    async def list_rows(
        self,
        *,
        thread_id: str | None,
        checkpoint_ns: str | None,
        checkpoint_id: str | None,
        before: str | None,
        limit: int | None,
    ) -> list[CheckpointRow]:
        return await self._query(list_rows(thread_id, checkpoint_ns, checkpoint_id, before, limit))

    async def load(self, rows: Sequence[CheckpointRow]) -> list[StoredCheckpoint]:
        return await self._query(load(rows))

    async def delete_thread(self, thread_id: str) -> None:
        await self._apply(delete_thread(thread_id))

    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        if run_ids:
            await self._apply(delete_for_runs(self._dialect, run_ids))

    async def copy_thread(self, source: str, target: str) -> None:
        await self._apply(copy_thread(source, target))

    async def prune(self, thread_ids: Sequence[str], *, keep_latest: bool) -> None:
        await self._apply(prune(self._dialect, thread_ids, keep_latest))

    async def thread_bytes(self, thread_id: str) -> int:
        return await self._query(thread_bytes(self._dialect, thread_id))
