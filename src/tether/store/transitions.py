"""Task status changes outside steps, the store's rules for every engine (run as
programs, ``program``): renewing, releasing, expiring and finishing a lease, parking
nothing else; cancelling and failing a task from outside.

Every write under a lease is fenced first (``fenced``: the task row, locked, must still
be held by that lease). A change that may let the session's next task start, or makes a
task claimable, wakes idle workers (``Notify``) when it commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tether import errors, types
from tether.store import base, leases, rows
from tether.store.program import DB_NOW, Notify, Program, Query, one

_TASK = "SELECT * FROM tasks WHERE id = :id"


def task_row(task_id: str, tenant: str | None = None, *, lock: bool = False) -> Program[rows.Row]:
    """The task's row (locked with ``lock``); ``NotFound`` when absent or another tenant's."""
    row = one((yield Query(_TASK, {"id": task_id}, lock=lock)))
    if row is None or (tenant is not None and row["tenant"] != tenant):
        raise errors.NotFound("no such task", tenant=tenant, task=task_id)
    return row


def fenced(lease: types.Lease, task_id: str) -> Program[rows.Row]:
    """The task's row, locked, if ``lease`` still holds the task; else ``LeaseLost``."""
    leases.same_task(lease, task_id)
    row = yield from task_row(task_id, lock=True)
    leases.check(lease, row)
    return row


def insert_events(task_id: str, events: Sequence[types.NewEvent]) -> Program[None]:
    """Append events at the task's next event seqs (its row is locked by the caller)."""
    if not events:
        return
    found = yield Query(
        "SELECT COALESCE(MAX(seq), 0) AS last FROM events WHERE task_id = :id", {"id": task_id}
    )
    last = int(found[0]["last"])
    yield Query(
        "INSERT INTO events (task_id, seq, name, at, step, data, payload_version)"
        " VALUES (:task_id, :seq, :name, :at, :step, :data, :version)",
        many=[
            {"task_id": task_id, "seq": last + i, "name": e.name, "at": e.at, "step": e.step,
             "data": rows.dumps(e.data, f"data of event {e.name}"),
             "version": types.PAYLOAD_VERSION}
            for i, e in enumerate(events, start=1)
        ],
    )  # fmt: skip


def renew(lease: types.Lease, lease_ttl: float) -> Program[types.Lease]:
    leases.check_ttl(lease_ttl)
    yield from fenced(lease, lease.task_id)
    found = yield Query(
        f"UPDATE tasks SET lease_expires_at = {DB_NOW} + :ttl, updated_at = :now"
        " WHERE id = :id RETURNING lease_expires_at",
        {"ttl": lease_ttl, "now": types.now(), "id": lease.task_id},
    )
    expires = float(found[0]["lease_expires_at"])
    return types.Lease(lease.task_id, lease.owner, lease.epoch, expires)


def release(lease: types.Lease, events: Sequence[types.NewEvent]) -> Program[None]:
    """Give the task back to the queue (its journal kept): any worker may claim it."""
    row = yield from fenced(lease, lease.task_id)
    yield from insert_events(lease.task_id, events)
    yield Query(
        "UPDATE tasks SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,"
        " updated_at = :now WHERE id = :id",
        {"now": types.now(), "id": lease.task_id},
    )
    yield Notify(row["agent"])


def expire(task_id: str) -> Program[None]:
    """Let a running task's lease lapse now (tests, operators): it is claimable at once."""
    row = yield from task_row(task_id, lock=True)
    yield Query(
        f"UPDATE tasks SET lease_expires_at = {DB_NOW} WHERE id = :id AND status = 'running'",
        {"id": task_id},
    )
    yield Notify(row["agent"])


def finish(
    lease: types.Lease,
    status: types.TaskStatus,
    output: Any,
    error: dict[str, Any] | None,
    events: Sequence[types.NewEvent],
) -> Program[types.TaskRecord]:
    """End the task with a final status; the session's next task may start."""
    values = rows.final_values(lease.task_id, status, output, error)
    row = yield from fenced(lease, lease.task_id)
    return (yield from _finish_fenced(lease, status, values, events, row))


def finish_each(
    finishes: Sequence[base.Finish],
) -> Program[list[types.TaskRecord | BaseException]]:
    """``finish`` for each task end of a batch (``Store.commit_batch``), in one
    transaction: an end fenced off (or with bad input) is answered with its error in
    its place, before it writes anything, and the others go on."""
    results: list[types.TaskRecord | BaseException] = []
    for f in finishes:
        try:
            values = rows.final_values(f.lease.task_id, f.status, f.output, f.error)
            row = yield from fenced(f.lease, f.lease.task_id)
        except (errors.TetherError, errors.LeaseLost) as exc:
            results.append(exc)
            continue
        results.append((yield from _finish_fenced(f.lease, f.status, values, f.events, row)))
    return results


def _finish_fenced(
    lease: types.Lease,
    status: types.TaskStatus,
    values: tuple[str | None, str | None],
    events: Sequence[types.NewEvent],
    row: rows.Row,
) -> Program[types.TaskRecord]:
    """The writes of ``finish`` once its lease is checked (``row``: the task's, locked)."""
    output_json, error_json = values
    found = yield Query(
        "UPDATE tasks SET status = :status, output = :output, error = :error,"
        " lease_owner = NULL, lease_expires_at = NULL, updated_at = :now WHERE id = :id"
        " RETURNING *",
        {"status": status, "output": output_json, "error": error_json, "now": types.now(),
         "id": lease.task_id},
    )  # fmt: skip
    yield from insert_events(lease.task_id, events)
    yield Notify(row["agent"])
    return rows.task(found[0])


def cancel(task_id: str, tenant: str | None) -> Program[types.TaskRecord]:
    """A queued or waiting task is cancelled now (nothing runs it); a running one is
    flagged, and its worker stops at the next step boundary; a final one is left as is."""
    row = yield from task_row(task_id, tenant, lock=True)
    if row["status"] in ("queued", "waiting"):
        change = "status = 'cancelled', cancel_requested = TRUE, wake_at = NULL"
    elif row["status"] == "running":
        change = "cancel_requested = TRUE"
    else:
        return rows.task(row)
    found = yield Query(
        f"UPDATE tasks SET {change}, updated_at = :now WHERE id = :id RETURNING *",
        {"now": types.now(), "id": task_id},
    )
    if row["status"] != "running":  # the session's next task may start now
        yield Notify(row["agent"])
    return rows.task(found[0])


def fail(task_id: str, error: dict[str, Any]) -> Program[types.TaskRecord]:
    """Fail a task from outside (a poison task, an operator); a final task is left as is."""
    error_json = rows.dumps(error, f"error of task {task_id}")
    row = yield from task_row(task_id, lock=True)
    if row["status"] in types.FINAL_STATUSES:
        return rows.task(row)
    found = yield Query(
        "UPDATE tasks SET status = 'failed', error = :error, lease_owner = NULL,"
        " lease_expires_at = NULL, updated_at = :now WHERE id = :id RETURNING *",
        {"error": error_json, "now": types.now(), "id": task_id},
    )
    yield Notify(row["agent"])
    return rows.task(found[0])
