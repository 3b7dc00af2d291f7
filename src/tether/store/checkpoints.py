"""LangGraph checkpoints in tether's store: the rows, and what a store promises about them
(``Checkpoints``; written once for both engines in ``checkpoint_rules``).

The LangGraph saver (``tether.integrations.langgraph``) serialises checkpoints with
LangGraph's serializer and hands the store opaque bytes; the store keeps them in the
``langgraph_*`` tables (migration 0005) and never decodes them. A checkpoint row
holds the checkpoint without its channel values; each value is a ``Blob`` keyed by
(channel, version), written once when that channel changes, so a thread's storage
grows with what changed, not with its whole state at every step.

Fencing: ``put`` and ``put_writes`` given a ``Lease`` run in one transaction with the
lease check of ``Store`` (task still running, same epoch), and raise ``LeaseLost``
changing nothing otherwise: a worker whose lease was taken over cannot fork a thread.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tether import types


@dataclass(frozen=True, slots=True)
class Blob:
    """One channel's value at one version; ``type == "empty"`` marks a cleared channel."""

    channel: str
    version: str
    type: str
    data: bytes | None


@dataclass(frozen=True, slots=True)
class Write:
    """One pending write of a task in the superstep after a checkpoint.

    ``idx`` is the write's position, or a negative number for LangGraph's special
    channels (error, interrupt, …): those replace an earlier write with the same key,
    ordinary ones never do (a re-run task writes the same values again)."""

    task_id: str
    idx: int
    channel: str
    type: str
    data: bytes
    task_path: str = ""


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    run_id: str | None
    channel_versions: Mapping[str, str | int | float]
    """Channel -> version (as LangGraph made it): where the checkpoint's values are,
    stored once, here, not again inside ``checkpoint``. Blobs are keyed by
    ``version_text`` of each."""
    type: str
    checkpoint: bytes
    metadata_type: str
    metadata: bytes
    task_id: str | None = None
    """The tether task that wrote it (None outside a task)."""
    epoch: int | None = None
    """That task's lease epoch when it wrote it."""


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    row: CheckpointRow
    blobs: tuple[Blob, ...]
    """The values named by ``row.channel_versions`` (cleared channels left out)."""
    writes: tuple[Write, ...]
    """Its pending writes, in LangGraph's order: (task_path, task_id, idx)."""


def version_text(version: object) -> str:
    """A channel version as stored: strings as they are, numbers as JSON writes them."""
    return version if isinstance(version, str) else json.dumps(version)


def sort_writes(writes: Sequence[Write]) -> tuple[Write, ...]:
    """LangGraph's ``writes_sort_key`` order, computed here, not by a collation."""
    return tuple(sorted(writes, key=lambda w: (w.task_path, w.task_id, w.idx)))


class Checkpoints(Protocol):
    """A store's LangGraph checkpoint tables, reached through ``Store.checkpoints()``."""

    async def put(
        self, row: CheckpointRow, blobs: Sequence[Blob], *, lease: types.Lease | None
    ) -> None:
        """Store a checkpoint and its new blobs in one transaction (fenced when ``lease``);
        a blob already stored at that version is kept, a checkpoint id already stored
        is replaced."""

    async def put_writes(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        writes: Sequence[Write],
        *,
        lease: types.Lease | None,
    ) -> None:
        """Store pending writes in one transaction (fenced when ``lease``)."""

    async def list_rows(
        self,
        *,
        thread_id: str | None,
        checkpoint_ns: str | None,
        checkpoint_id: str | None,
        before: str | None,
        limit: int | None,
    ) -> list[CheckpointRow]:
        """Checkpoints newest first (by id), narrowed by each argument given."""

    async def load(self, rows: Sequence[CheckpointRow]) -> list[StoredCheckpoint]:
        """Each row with its values and pending writes."""

    async def delete_thread(self, thread_id: str) -> None: ...

    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints of these runs, with their writes and unused blobs."""

    async def copy_thread(self, source: str, target: str) -> None:
        """Copy every checkpoint, blob and write of ``source`` to ``target``."""

    async def prune(self, thread_ids: Sequence[str], *, keep_latest: bool) -> None:
        """Keep only the newest checkpoint of each namespace (``keep_latest``), or none;
        writes and blobs no kept checkpoint uses go with them."""

    async def thread_bytes(self, thread_id: str) -> int:
        """Bytes of the thread's stored payloads (checkpoints, blobs, writes): what the
        benchmark compares."""
