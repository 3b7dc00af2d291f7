"""Fenced writes outside a step's commit, written once for every engine (programs,
``program``): events, a step's failed attempts, a session's vector memory."""

from __future__ import annotations

from collections.abc import Sequence

from tether import errors, types
from tether.store import rows, vectors
from tether.store.base import MemoryItem
from tether.store.program import Program, Query
from tether.store.transitions import fenced, insert_events, task_row


def events(task_id: str, new: Sequence[types.NewEvent], lease: types.Lease | None) -> Program[None]:
    """Append events to a task: fenced when a lease is given (a worker's), else by anyone."""
    if lease is not None:
        yield from fenced(lease, task_id)
    else:
        yield from task_row(task_id, lock=True)
    yield from insert_events(task_id, new)


def attempt(lease: types.Lease, attempt: types.StepAttempt) -> Program[None]:
    """Record (or replace) one failed attempt of a step, under the task's lease."""
    error = rows.dumps(attempt.error, f"error of attempt {attempt.attempt}")
    yield from fenced(lease, attempt.task_id)
    yield Query(
        "INSERT INTO step_attempts (task_id, idx, attempt, error, delay, worker, at)"
        " VALUES (:task_id, :idx, :attempt, :error, :delay, :worker, :at)"
        " ON CONFLICT (task_id, idx, attempt) DO UPDATE SET error = excluded.error,"
        " delay = excluded.delay, worker = excluded.worker, at = excluded.at",
        {"task_id": attempt.task_id, "idx": attempt.index, "attempt": attempt.attempt,
         "error": error, "delay": attempt.delay, "worker": attempt.worker, "at": attempt.at},
    )  # fmt: skip


def memory(lease: types.Lease, session_id: str, items: Sequence[MemoryItem]) -> Program[None]:
    """Store (or replace, by seq) memory items of the lease's own session; every vector
    of a session has the same dimensions."""
    blobs = [vectors.encode(i.vector, f"memory item {i.seq}") for i in items]
    task = yield from fenced(lease, lease.task_id)
    if task["session_id"] != session_id:
        raise errors.InvalidInput(
            f"task {lease.task_id} belongs to session {task['session_id']}, "
            f"not {session_id}; it may only write its own session's memory",
            session=session_id,
            task=lease.task_id,
        )
    found = yield Query(
        "SELECT dimensions FROM memory WHERE session_id = :id LIMIT 1", {"id": session_id}
    )
    stored = found[0]["dimensions"] if found else None
    for item in items:
        vectors.check_dimensions(session_id, stored, len(item.vector))
        stored = len(item.vector)
    now = types.now()
    yield Query(
        "INSERT INTO memory (session_id, seq, task_id, role, text, dimensions, vector,"
        " created_at) VALUES (:session_id, :seq, :task_id, :role, :text, :dimensions, :vector,"
        " :now) ON CONFLICT (session_id, seq) DO UPDATE SET task_id = excluded.task_id,"
        " role = excluded.role, text = excluded.text, dimensions = excluded.dimensions,"
        " vector = excluded.vector, created_at = excluded.created_at",
        many=[
            {"session_id": session_id, "seq": i.seq, "task_id": i.task_id or lease.task_id,
             "role": i.role, "text": i.text, "dimensions": len(i.vector), "vector": blob,
             "now": now}
            for i, blob in zip(items, blobs, strict=True)
        ],
    )  # fmt: skip
