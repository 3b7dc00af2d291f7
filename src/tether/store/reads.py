"""What the store reads back, written once for every engine (programs, ``program``):
records by id, listings, counts. Each read names the tenant it may see (None: any),
and an unknown id, or another tenant's, is ``NotFound`` alike."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tether import errors, types
from tether.store import rows, vectors, waits
from tether.store.base import MemoryItem, Signal, TaskStart
from tether.store.dialect import Dialect
from tether.store.program import Program, Query, nothing, one
from tether.store.transitions import task_row


def session_row(session_id: str, tenant: str | None) -> Program[rows.Row]:
    row = one((yield Query("SELECT * FROM sessions WHERE id = :id", {"id": session_id})))
    if row is None or (tenant is not None and row["tenant"] != tenant):
        raise errors.NotFound("no such session", tenant=tenant, session=session_id)
    return row


def session(session_id: str, tenant: str | None) -> Program[types.SessionRecord]:
    return rows.session((yield from session_row(session_id, tenant)))


def sessions(
    tenant: str | None, limit: int, newest_first: str
) -> Program[list[types.SessionRecord]]:
    """The newest sessions (of ``tenant``); ``newest_first`` is the engine's ORDER BY."""
    where = "WHERE tenant = :tenant" if tenant is not None else ""
    found = yield Query(
        f"SELECT * FROM sessions {where} ORDER BY {newest_first} LIMIT :limit",
        {"tenant": tenant, "limit": limit},
    )
    return [rows.session(r) for r in found]


def messages(
    session_id: str, tenant: str | None, after_seq: int, upto_seq: int | None, limit: int | None
) -> Program[list[types.StoredMessage]]:
    yield from session_row(session_id, tenant)
    found = yield Query(
        "SELECT * FROM messages WHERE session_id = :id AND seq > :after AND seq <= :upto"
        " ORDER BY seq" + ("" if limit is None else " LIMIT :limit"),
        {"id": session_id, "after": after_seq,
         "upto": upto_seq if upto_seq is not None else 2**62, "limit": limit},
    )  # fmt: skip
    return [rows.message(r) for r in found]


def task(task_id: str, tenant: str | None) -> Program[types.TaskRecord]:
    return rows.task((yield from task_row(task_id, tenant)))


def tasks(
    tenant: str | None, session_id: str | None, status: str | None, limit: int
) -> Program[list[types.TaskRecord]]:
    """The newest tasks matching every filter given, newest first."""
    filters = {"tenant": tenant, "session_id": session_id, "status": status}
    given = {k: v for k, v in filters.items() if v is not None}
    where = " AND ".join(f"{k} = :{k}" for k in given) or "TRUE"
    found = yield Query(
        f"SELECT * FROM tasks WHERE {where} ORDER BY position DESC LIMIT :limit",
        {**given, "limit": limit},
    )
    return [rows.task(r) for r in found]


def journal(dialect: Dialect, task_id: str) -> Program[list[types.StepRecord]]:
    """The task's whole journal, each step's output as recorded (``NotFound`` for an
    unknown task)."""
    task = yield from task_row(task_id)
    return (yield from session_journal(dialect, task_id, task["session_id"]))


def session_journal(
    dialect: Dialect, task_id: str, session_id: str
) -> Program[list[types.StepRecord]]:
    """``journal`` of a task whose session is known (a claimed task's start)."""
    found = yield Query("SELECT * FROM steps WHERE task_id = :id ORDER BY idx", {"id": task_id})
    return (yield from steps_with_messages(dialect, session_id, found))


def steps_with_messages(
    dialect: Dialect, session_id: str, found: Sequence[rows.Row]
) -> Program[list[types.StepRecord]]:
    """Step records of these ``steps`` rows, with the session's messages their outputs
    refer to read in one statement (a step stores references, not copies)."""
    payloads = [rows.step_payload_of(r) for r in found]
    seqs = rows.referenced_seqs(found, payloads)
    messages = (yield dialect.messages(session_id, seqs)) if seqs else []
    return rows.journal(found, payloads, messages)


def step_bytes(dialect: Dialect, task_id: str, index: int) -> Program[int]:
    """Bytes of one step's stored values: every column of its row plus its messages'
    payloads, each value counted as its text (numbers as Python writes them), so that
    both engines report the same figure for the same step."""
    task = yield from task_row(task_id)
    row = one(
        (
            yield Query(
                "SELECT * FROM steps WHERE task_id = :id AND idx = :idx",
                {"id": task_id, "idx": index},
            )
        )
    )
    if row is None:
        raise errors.NotFound("no such step in the journal", task=task_id, step=index)
    seqs = [int(s) for s in json.loads(row["message_seqs"])]
    messages = (yield dialect.messages(task["session_id"], seqs)) if seqs else []
    return sum(_text_bytes(row[c]) for c in rows.STEP_COLUMNS) + sum(
        _text_bytes(m["payload"]) for m in messages
    )


def _text_bytes(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    return len(str(value).encode("utf-8"))


def attempts(task_id: str) -> Program[list[types.StepAttempt]]:
    yield from task_row(task_id)
    found = yield Query(
        "SELECT * FROM step_attempts WHERE task_id = :id ORDER BY idx, attempt", {"id": task_id}
    )
    return [rows.attempt(r) for r in found]


def runs(task_id: str) -> Program[list[types.TaskRun]]:
    yield from task_row(task_id)
    found = yield Query("SELECT * FROM task_runs WHERE task_id = :id ORDER BY run", {"id": task_id})
    return [rows.run(r) for r in found]


def events(
    task_id: str, tenant: str | None, after_seq: int, limit: int
) -> Program[list[types.EventRecord]]:
    yield from task_row(task_id, tenant)
    found = yield Query(
        "SELECT * FROM events WHERE task_id = :id AND seq > :after ORDER BY seq LIMIT :limit",
        {"id": task_id, "after": after_seq, "limit": limit},
    )
    return [rows.event(r) for r in found]


def signals(task_id: str, tenant: str | None) -> Program[list[Signal]]:
    yield from task_row(task_id, tenant)
    found = yield Query("SELECT * FROM signals WHERE task_id = :id ORDER BY seq", {"id": task_id})
    return [waits.signal(r) for r in found]


def task_counts(status: str) -> Program[dict[str, int]]:
    """How many tasks of each agent are in ``status``."""
    found = yield Query(
        "SELECT agent, COUNT(*) AS n FROM tasks WHERE status = :status GROUP BY agent",
        {"status": status},
    )
    return {r["agent"]: int(r["n"]) for r in found}


def memory(session_id: str) -> Program[list[MemoryItem]]:
    """Every item of the session's memory, by seq (``NotFound`` for an unknown session)."""
    yield from session_row(session_id, None)
    found = yield Query(
        "SELECT * FROM memory WHERE session_id = :id ORDER BY seq", {"id": session_id}
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


def task_start_parts(dialect: Dialect, task: types.TaskRecord) -> list[Program[Any]]:
    """What a claimed task reads before its first step (``Store.read_task_start``), as
    read-only programs: its journal, its attempts (on a later run only), its session
    and the session's messages up to its input. ``task_start`` makes their answers one."""
    return [
        session_journal(dialect, task.id, task.session_id),
        attempts(task.id) if task.runs > 1 else nothing(),
        session(task.session_id, None),
        messages(task.session_id, None, 0, task.input_seq, None),
    ]


def task_start(answers: Sequence[Any]) -> TaskStart:
    journal, attempts_, session_, history = answers
    return TaskStart(journal=journal, attempts=attempts_, session=session_, history=history)
