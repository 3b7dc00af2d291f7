"""Durable waits, the store's rules for both engines: signal names and sizes, which
signal wakes which waiting task, what a signal to a finished task is told.

A task parks itself with ``Store.wait_task`` (status ``waiting``, no lease, a ``wait``
record and a ``wake_at``); ``Store.send_signal`` stores a signal and, when the task
waits for that name, sets ``wake_at`` to now; ``Store.claim_task`` takes a waiting
task whose ``wake_at`` has come (reason ``wake``). The step that consumes a signal
commits ``signals.consumed_step`` with its journal row (``StepCommit.signal_seq``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from typing import Any

from tether import errors, types
from tether.observe import events
from tether.store import rows, transitions
from tether.store.base import Signal
from tether.store.program import DB_NOW, Notify, Program, Query, one

MAX_SIGNAL_BYTES = 64 * 1024
"""Largest signal data accepted, as compact JSON text."""

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}$")
"""A signal name: letters, digits, ``_ . : -``, at most 200 characters."""


def check_name(name: str, *, task: str | None = None) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise errors.InvalidInput(
            f"signal name {name!r} is not valid: use 1-200 letters, digits, '_', '.', ':' or "
            "'-', starting with a letter or digit",
            task=task,
        )
    return name


def encode_data(task_id: str, name: str, data: Any) -> str:
    """The signal's data as stored (compact JSON); ``InvalidInput`` when it is not JSON
    or is larger than ``MAX_SIGNAL_BYTES``."""
    text = rows.dumps(data, f"data of signal {name!r} to task {task_id}")
    size = len(text.encode("utf-8"))
    if size > MAX_SIGNAL_BYTES:
        raise errors.InvalidInput(
            f"data of signal {name!r} is {size} bytes of JSON, more than the "
            f"{MAX_SIGNAL_BYTES} a signal may carry; send a reference (an id, a URL) instead",
            task=task_id,
        )
    return text


def refuse_if_final(task_id: str, status: str, name: str) -> None:
    if status in types.FINAL_STATUSES:
        raise errors.Conflict(
            f"task {task_id} is {status}: signal {name!r} can no longer reach it, and was "
            "not stored",
            task=task_id,
        )


def waits_for(status: str, wait: dict[str, Any] | None, name: str) -> bool:
    """True when a task in ``status`` with ``wait`` is waiting for signal ``name``."""
    return (
        status == "waiting"
        and wait is not None
        and wait.get("kind") == "signal"
        and wait.get("name") == name
    )


def due_at_once(cancel_requested: Any, wait: dict[str, Any], unconsumed: Any) -> bool:
    """Whether a task parking with ``wait`` must be due at once: its signal arrived after
    it looked (``unconsumed`` is that signal's row), or a cancel came while it ran (it
    then stops at the wait's step boundary instead of waiting for nothing)."""
    return bool(cancel_requested) or (wait.get("kind") == "signal" and unconsumed is not None)


def load_wait(text: str | None) -> dict[str, Any] | None:
    value = None if text is None else json.loads(text)
    return value if isinstance(value, dict) else None


def signal(row: rows.Row) -> Signal:
    """A ``signals`` row as a ``base.Signal``."""
    return Signal(
        task_id=row["task_id"],
        seq=int(row["seq"]),
        name=row["name"],
        data=json.loads(row["data"]),
        sent_at=row["sent_at"],
        consumed_step=row["consumed_step"],
        consumed_at=row["consumed_at"],
    )


def already_consumed(task_id: str, step: int, seq: int) -> errors.Conflict:
    return errors.Conflict(
        f"signal {seq} of task {task_id} was consumed already; each signal is consumed once",
        task=task_id,
        step=step,
    )


def consume(task_id: str, step: int, seq: int, now: float) -> Program[None]:
    """Mark signal ``seq`` consumed by ``step`` (in that step's commit); a signal is
    consumed once, so a second consumer's commit fails with ``already_consumed``."""
    found = yield Query(
        "UPDATE signals SET consumed_step = :step, consumed_at = :now"
        " WHERE task_id = :id AND seq = :seq AND consumed_step IS NULL RETURNING seq",
        {"step": step, "now": now, "id": task_id, "seq": seq},
    )
    if len(found) != 1:
        raise already_consumed(task_id, step, seq)


def received_event(name: str, seq: int, woke: bool) -> types.NewEvent:
    """The task's ``signal.received`` event, written with the signal."""
    return types.NewEvent(events.SIGNAL_RECEIVED, {"name": name, "seq": seq, "woke": woke})


# ---- the rules as programs (``program``), run by both engines -------------------------


def unconsumed(task_id: str, wait: dict[str, Any]) -> Program[rows.Row | None]:
    """The oldest signal not yet consumed that ``wait`` waits for (None for a sleep)."""
    name = wait.get("name")
    if wait.get("kind") != "signal" or not isinstance(name, str):
        return None
    found = yield Query(
        "SELECT * FROM signals WHERE task_id = :id AND name = :name AND consumed_step IS NULL"
        " ORDER BY seq LIMIT 1",
        {"id": task_id, "name": name},
    )
    return one(found)


def next_signal(task_id: str, name: str) -> Program[Signal | None]:
    row = yield from unconsumed(task_id, {"kind": "signal", "name": name})
    return None if row is None else signal(row)


def park(
    lease: types.Lease,
    wait: dict[str, Any],
    wake_at: float | None,
    new_events: Sequence[types.NewEvent],
) -> Program[types.TaskRecord]:
    """Park the task (its row locked by the fence, so a concurrent ``send`` either
    committed before, and is seen here, or waits and sees the task waiting)."""
    row = yield from transitions.fenced(lease, lease.task_id)
    found = yield from unconsumed(lease.task_id, wait)
    due_now = due_at_once(row["cancel_requested"], wait, found)
    yield from transitions.insert_events(lease.task_id, new_events)
    updated = yield Query(
        "UPDATE tasks SET status = 'waiting', lease_owner = NULL, lease_expires_at = NULL,"
        f" wait = :wait, wake_at = CASE WHEN :due THEN {DB_NOW} ELSE :wake_at END,"
        " updated_at = :now WHERE id = :id RETURNING *",
        {"wait": rows.dumps(wait, f"wait of task {lease.task_id}"), "due": due_now,
         "wake_at": wake_at, "now": types.now(), "id": lease.task_id},
    )  # fmt: skip
    if due_now:
        yield Notify(row["agent"])
    return rows.task(updated[0])


def send(task_id: str, name: str, data: str, tenant: str | None) -> Program[Signal]:
    """Store a signal (its data already ``encode_data``'d); wake the task if it waits for it."""
    row = yield from transitions.task_row(task_id, tenant, lock=True)
    refuse_if_final(task_id, row["status"], name)
    now = types.now()
    stored = yield Query(
        "INSERT INTO signals (task_id, seq, name, data, sent_at)"
        " SELECT :id, COALESCE(MAX(seq), 0) + 1, :name, :data, :now FROM signals"
        " WHERE task_id = :id RETURNING *",
        {"id": task_id, "name": name, "data": data, "now": now},
    )
    sent = signal(stored[0])
    woke = waits_for(row["status"], load_wait(row["wait"]), name)
    if woke:
        yield Query(
            f"UPDATE tasks SET wake_at = {DB_NOW}, updated_at = :now WHERE id = :id",
            {"now": now, "id": task_id},
        )
        yield Notify(row["agent"])
    yield from transitions.insert_events(task_id, [received_event(name, sent.seq, woke)])
    return dataclasses.replace(sent, woke=woke)
