"""TetherSaver: LangGraph's checkpointer on tether's store (SQLite or PostgreSQL).

``TetherSaver("sqlite:///app.db")`` or ``TetherSaver("postgresql://…")`` is a
``BaseCheckpointSaver`` with every method sync and async, the extended ones too
(``delete_for_runs``, ``copy_thread``, ``prune``). Its tables come with tether's
migrations (0005), applied on first use or by ``setup()`` / ``tether migrate``.

Storage stays linear: a checkpoint row holds no channel values; each value is stored
once per version (``new_versions``), so an unchanged channel costs nothing at the next
checkpoint.

Inside a tether task the graph gets a fenced saver (``TetherSaver.for_task``): every
write carries the task's lease and is refused (``LeaseLost``, and a
``checkpoint.refused`` event) once another worker has taken the task over.
"""

from __future__ import annotations

import builtins
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from tether import errors, types
from tether.integrations.langgraph.portal import Portal
from tether.store import open_store
from tether.store.base import Store
from tether.store.checkpoints import (
    Blob,
    CheckpointRow,
    Checkpoints,
    StoredCheckpoint,
    Write,
    version_text,
)

T = TypeVar("T")

# checkpoint metadata keys LangGraph writes for a graph with a DeltaChannel
_DELTA_KEYS = frozenset({"counters_since_delta_snapshot", "delta_writes_versioned"})


@dataclass(frozen=True, slots=True)
class Fence:
    """What makes a task's saver fenced: its current lease, and who hears a refusal."""

    lease: Callable[[], types.Lease]
    refused: Callable[[errors.LeaseLost, str], Awaitable[None]]
    """Called with the error and what was refused: ``checkpoint``, ``writes`` (or, from
    the graph runner, a node's ``step`` row)."""


class TetherSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer on tether's store. ``with``/``async with`` close it."""

    def __init__(self, url: str, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self.url = url
        self._portal: Portal | None = None
        self._store: Store | None = None
        self._tables: Checkpoints | None = None
        self._fence: Fence | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_task(
        cls,
        url: str,
        tables: Checkpoints,
        portal: Portal,
        fence: Fence,
        *,
        serde: SerializerProtocol | None = None,
    ) -> TetherSaver:
        """A saver on a running task's store (its ``url`` and checkpoint ``tables``) and
        loop, every write fenced by its lease."""
        saver = cls(url, serde=serde)
        saver._portal = portal
        saver._tables = tables
        saver._fence = fence
        return saver

    @classmethod
    def from_conn_string(cls, url: str, *, serde: SerializerProtocol | None = None) -> Opened:
        """``with TetherSaver.from_conn_string(url) as saver`` (or ``async with``), as
        LangGraph's own savers offer; the store is set up on entry and closed on exit."""
        return Opened(cls(url, serde=serde))

    # ---- lifecycle -------------------------------------------------------------

    def setup(self) -> None:
        """Open the store and apply pending migrations (the checkpoint tables among
        them). Idempotent; every other method calls it first."""
        self._ready()

    async def asetup(self) -> None:
        portal = self._ready_portal()
        await portal.acall(self._open())

    def _ready_portal(self) -> Portal:
        with self._lock:
            if self._portal is None:
                self._portal = Portal()
            return self._portal

    def _ready(self) -> tuple[Portal, Checkpoints]:
        portal = self._ready_portal()
        if self._tables is None:
            portal.call(self._open())
        assert self._tables is not None
        return portal, self._tables

    async def _aready(self) -> tuple[Portal, Checkpoints]:
        portal = self._ready_portal()
        if self._tables is None:
            await portal.acall(self._open())
        assert self._tables is not None
        return portal, self._tables

    async def _open(self) -> None:
        # runs on the portal's loop, one coroutine at a time there
        if self._tables is not None:
            return
        store = open_store(self.url)
        await store.open()
        if self._tables is not None:  # another call opened it meanwhile
            await store.close()
            return
        self._store = store
        self._tables = store.checkpoints()

    def close(self) -> None:
        """Close the store and stop the saver's own loop (a task's saver owns neither)."""
        if self._fence is not None:
            return
        portal, self._portal = self._portal, None
        if portal is None:
            return
        try:
            portal.call(self._close_store())
        finally:
            portal.stop()

    async def aclose(self) -> None:
        if self._fence is not None:
            return
        portal, self._portal = self._portal, None
        if portal is None:
            return
        try:
            await portal.acall(self._close_store())
        finally:
            portal.stop()

    async def _close_store(self) -> None:
        store, self._store, self._tables = self._store, None, None
        if store is not None:
            await store.close()

    def __enter__(self) -> TetherSaver:
        self.setup()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> TetherSaver:
        await self.asetup()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- running against the store ---------------------------------------------

    def _sync(self, fn: Callable[[Checkpoints], Awaitable[T]]) -> T:
        portal, tables = self._ready()
        return portal.call(_awaited(fn(tables)))

    async def _async(self, fn: Callable[[Checkpoints], Awaitable[T]]) -> T:
        portal, tables = await self._aready()
        return await portal.acall(_awaited(fn(tables)))

    # ---- reads -----------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        found = self._sync(lambda t: _get(t, config))
        return self._tuple(found) if found is not None else None

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        found = await self._async(lambda t: _get(t, config))
        return self._tuple(found) if found is not None else None

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from self._sync(lambda t: self._list(t, config, filter, before, limit))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in await self._async(lambda t: self._list(t, config, filter, before, limit)):
            yield item

    async def _list(
        self,
        tables: Checkpoints,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> builtins.list[CheckpointTuple]:
        conf = config["configurable"] if config else {}
        rows = await tables.list_rows(
            thread_id=conf.get("thread_id"),
            checkpoint_ns=conf.get("checkpoint_ns"),
            checkpoint_id=conf.get("checkpoint_id"),
            before=get_checkpoint_id(before) if before else None,
            limit=None if filter else limit,
        )
        if filter:
            kept = []
            for row in rows:
                metadata = self.serde.loads_typed((row.metadata_type, row.metadata))
                if all(metadata.get(k) == v for k, v in filter.items()):
                    kept.append(row)
            rows = kept if limit is None else kept[:limit]
        return [self._tuple(s) for s in await tables.load(rows)]

    def _tuple(self, stored: StoredCheckpoint) -> CheckpointTuple:
        row = stored.row
        checkpoint: Checkpoint = self.serde.loads_typed((row.type, row.checkpoint))
        checkpoint["channel_versions"] = dict(row.channel_versions)
        checkpoint["channel_values"] = {
            b.channel: self.serde.loads_typed((b.type, b.data or b"")) for b in stored.blobs
        }
        ids = {"thread_id": row.thread_id, "checkpoint_ns": row.checkpoint_ns}
        return CheckpointTuple(
            config={"configurable": {**ids, "checkpoint_id": row.checkpoint_id}},
            checkpoint=checkpoint,
            metadata=self.serde.loads_typed((row.metadata_type, row.metadata)),
            parent_config=(
                {"configurable": {**ids, "checkpoint_id": row.parent_checkpoint_id}}
                if row.parent_checkpoint_id
                else None
            ),
            pending_writes=[
                (w.task_id, w.channel, self.serde.loads_typed((w.type, w.data)))
                for w in stored.writes
            ],
        )

    # ---- writes ----------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        row, blobs = self._checkpoint_row(config, checkpoint, metadata, new_versions)
        self._sync(lambda t: self._put(t, row, blobs))
        return _config_of(row)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        row, blobs = self._checkpoint_row(config, checkpoint, metadata, new_versions)
        await self._async(lambda t: self._put(t, row, blobs))
        return _config_of(row)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        where, rows = self._write_rows(config, writes, task_id, task_path)
        self._sync(lambda t: self._put_writes(t, where, rows))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        where, rows = self._write_rows(config, writes, task_id, task_path)
        await self._async(lambda t: self._put_writes(t, where, rows))

    def _checkpoint_row(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[CheckpointRow, builtins.list[Blob]]:
        conf = config["configurable"]
        body: dict[str, Any] = dict(checkpoint)
        values: dict[str, Any] = body.pop("channel_values", {})
        # kept in the row's own column (the store finds the blobs by them), not twice
        versions: dict[str, Any] = dict(body.pop("channel_versions", {}))
        blobs = []
        for channel, version in new_versions.items():
            kind, data = (
                self.serde.dumps_typed(values[channel]) if channel in values else ("empty", None)
            )
            blobs.append(Blob(channel, version_text(version), kind, data))
        kind, data = self.serde.dumps_typed(body)
        meta = dict(get_checkpoint_metadata(config, metadata))
        meta_kind, meta_data = self.serde.dumps_typed(meta)
        lease = self._fence.lease() if self._fence is not None else None
        run_id = meta.get("run_id")
        row = CheckpointRow(
            thread_id=str(conf["thread_id"]),
            checkpoint_ns=str(conf.get("checkpoint_ns", "")),
            checkpoint_id=checkpoint["id"],
            parent_checkpoint_id=conf.get("checkpoint_id"),
            run_id=str(run_id) if run_id is not None else None,
            channel_versions=versions,
            type=kind,
            checkpoint=data,
            metadata_type=meta_kind,
            metadata=meta_data,
            task_id=lease.task_id if lease is not None else None,
            epoch=lease.epoch if lease is not None else None,
        )
        return row, blobs

    def _write_rows(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> tuple[tuple[str, str, str], builtins.list[Write]]:
        conf = config["configurable"]
        where = (
            str(conf["thread_id"]),
            str(conf.get("checkpoint_ns", "")),
            str(conf["checkpoint_id"]),
        )
        rows = []
        for idx, (channel, value) in enumerate(writes):
            kind, data = self.serde.dumps_typed(value)
            rows.append(
                Write(task_id, WRITES_IDX_MAP.get(channel, idx), channel, kind, data, task_path)
            )
        return where, rows

    async def _put(
        self, tables: Checkpoints, row: CheckpointRow, blobs: builtins.list[Blob]
    ) -> None:
        lease = self._fence.lease() if self._fence is not None else None
        try:
            await tables.put(row, blobs, lease=lease)
        except errors.LeaseLost as exc:
            await self._refused(exc, "checkpoint")
            raise

    async def _put_writes(
        self, tables: Checkpoints, where: tuple[str, str, str], rows: builtins.list[Write]
    ) -> None:
        lease = self._fence.lease() if self._fence is not None else None
        try:
            await tables.put_writes(*where, rows, lease=lease)
        except errors.LeaseLost as exc:
            await self._refused(exc, "writes")
            raise

    async def _refused(self, exc: errors.LeaseLost, what: str) -> None:
        if self._fence is not None:
            await self._fence.refused(exc, what)

    # ---- deleting and copying ----------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        self._sync(lambda t: t.delete_thread(str(thread_id)))

    async def adelete_thread(self, thread_id: str) -> None:
        await self._async(lambda t: t.delete_thread(str(thread_id)))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._sync(lambda t: t.delete_for_runs([str(r) for r in run_ids]))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._async(lambda t: t.delete_for_runs([str(r) for r in run_ids]))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._sync(lambda t: t.copy_thread(str(source_thread_id), str(target_thread_id)))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._async(lambda t: t.copy_thread(str(source_thread_id), str(target_thread_id)))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._sync(lambda t: self._prune(t, [str(x) for x in thread_ids], strategy))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._async(lambda t: self._prune(t, [str(x) for x in thread_ids], strategy))

    async def _prune(
        self, tables: Checkpoints, thread_ids: builtins.list[str], strategy: str
    ) -> None:
        keep = _keep_latest(strategy)
        if keep:
            # a DeltaChannel's value is rebuilt from its ancestors' writes: keeping only
            # the newest checkpoint would silently empty it (LangGraph's warning on prune)
            for thread in thread_ids:
                for row in await tables.list_rows(
                    thread_id=thread, checkpoint_ns=None, checkpoint_id=None, before=None,
                    limit=None,
                ):  # fmt: skip
                    meta = self.serde.loads_typed((row.metadata_type, row.metadata))
                    if _DELTA_KEYS & set(meta):
                        raise errors.InvalidInput(
                            f"prune(strategy='keep_latest') cannot prune thread {thread!r}: it "
                            "uses a DeltaChannel, whose value is rebuilt from earlier "
                            "checkpoints' writes; use strategy='delete', or leave it unpruned"
                        )
        await tables.prune(thread_ids, keep_latest=keep)

    # ---- measuring ---------------------------------------------------------------

    async def athread_bytes(self, thread_id: str) -> int:
        """Bytes stored for a thread (checkpoints, values, writes): the benchmark's measure."""
        return await self._async(lambda t: t.thread_bytes(thread_id))

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Increasing versions with a random tail, so two branches of a thread that both
        change a channel never name different values by one version (as LangGraph's
        own savers do): ``000000000042.9f3a01c2de``, zero-padded so that text order is
        number order, and shorter than theirs, since every checkpoint names them."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:012}.{random.getrandbits(40):010x}"


class Opened:
    """What ``from_conn_string`` returns: usable with ``with`` and with ``async with``."""

    def __init__(self, saver: TetherSaver) -> None:
        self.saver = saver

    def __enter__(self) -> TetherSaver:
        return self.saver.__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.saver.close()

    async def __aenter__(self) -> TetherSaver:
        return await self.saver.__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.saver.aclose()


async def _get(tables: Checkpoints, config: RunnableConfig) -> StoredCheckpoint | None:
    conf = config["configurable"]
    rows = await tables.list_rows(
        thread_id=str(conf["thread_id"]),
        checkpoint_ns=str(conf.get("checkpoint_ns", "")),
        checkpoint_id=get_checkpoint_id(config),
        before=None,
        limit=1,
    )
    if not rows:
        return None
    return (await tables.load(rows))[0]


async def _awaited(value: Awaitable[T]) -> T:
    return await value


def _config_of(row: CheckpointRow) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": row.thread_id,
            "checkpoint_ns": row.checkpoint_ns,
            "checkpoint_id": row.checkpoint_id,
        }
    }


def _keep_latest(strategy: str) -> bool:
    if strategy not in ("keep_latest", "delete"):
        raise errors.InvalidInput(
            f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'"
        )
    return strategy == "keep_latest"
