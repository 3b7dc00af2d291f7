"""SQLite's own statements: running a store program (``run``), and the hot path tuned
for SQLite (claiming and group commit), as functions on a connection.

Each function runs on the store's connection thread inside a transaction its caller
opened (``sqlite_connection.write``); ``SQLiteStore`` is the async face over them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from tether import errors, types
from tether.store import commits as commit_rules
from tether.store import leases, rows, waits
from tether.store.base import Claim
from tether.store.program import DB_NOW, Notify, Program, T

_CANDIDATES: tuple[str, ...] = (
    "t.status = 'running' AND t.lease_owner = :worker",
    "t.status = 'running' AND t.lease_expires_at <= :now",
    "t.status = 'waiting' AND t.wake_at <= :now",
    (
        "t.status = 'queued'"
        " AND NOT EXISTS (SELECT 1 FROM tasks r"
        "  WHERE r.session_id = t.session_id AND r.status IN ('running', 'waiting'))"
        " AND NOT EXISTS (SELECT 1 FROM tasks o"
        "  WHERE o.session_id = t.session_id AND o.status = 'queued' AND o.position < t.position)"
    ),
)


def run(conn: sqlite3.Connection, program: Program[T]) -> T:
    """Run a store program (``program``) on this connection, inside its caller's
    transaction. ``Notify`` does nothing: SQLite's workers poll."""
    try:
        step = next(program)
        while True:
            if isinstance(step, Notify):
                step = program.send([])
            elif step.many:
                conn.executemany(step.sql, step.many)
                step = program.send([])
            else:
                params = step.params
                if DB_NOW in step.sql:
                    params = {**params, DB_NOW[1:]: types.now()}
                step = program.send(conn.execute(step.sql, params).fetchall())
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def task_row(conn: sqlite3.Connection, task_id: str, tenant: str | None = None) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM tasks WHERE id = ?", (task_id,)
    ).fetchone()
    if row is None or (tenant is not None and row["tenant"] != tenant):
        raise errors.NotFound("no such task", tenant=tenant, task=task_id)
    return row


def append_messages(
    conn: sqlite3.Connection,
    session_id: str,
    task_id: str,
    messages: Sequence[types.Message],
    now: float,
) -> tuple[int, ...]:
    """Give the messages the session's next seqs (from its ``last_seq`` counter)."""
    last: int = conn.execute(
        "SELECT last_seq FROM sessions WHERE id = ?", (session_id,)
    ).fetchone()[0]
    seqs = tuple(range(last + 1, last + 1 + len(messages)))
    _insert_messages(conn, session_id, task_id, messages, seqs, now)
    conn.execute(
        "UPDATE sessions SET last_seq = ?, updated_at = ? WHERE id = ?",
        (last + len(messages), now, session_id),
    )
    return seqs


def _insert_messages(
    conn: sqlite3.Connection,
    session_id: str,
    task_id: str,
    messages: Sequence[types.Message],
    seqs: Sequence[int],
    now: float,
) -> None:
    conn.executemany(
        "INSERT INTO messages (session_id, seq, task_id, payload, payload_version, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (session_id, seq, task_id, rows.dumps(m.to_dict(), f"message {seq}"),
             types.PAYLOAD_VERSION, now)
            for seq, m in zip(seqs, messages, strict=True)
        ],
    )  # fmt: skip


def insert_events(conn: sqlite3.Connection, task_id: str, events: Sequence[types.NewEvent]) -> None:
    """Append events with the task's next event seqs."""
    if not events:
        return
    last: int = conn.execute(
        "SELECT COALESCE(MAX(seq), 0) FROM events WHERE task_id = ?", (task_id,)
    ).fetchone()[0]
    conn.executemany(
        "INSERT INTO events (task_id, seq, name, at, step, data, payload_version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (task_id, last + i, e.name, e.at, e.step, rows.dumps(e.data, f"data of event {e.name}"),
             types.PAYLOAD_VERSION)
            for i, e in enumerate(events, start=1)
        ],
    )  # fmt: skip


def claim(
    conn: sqlite3.Connection,
    worker: str,
    lease_ttl: float,
    agents: Sequence[str] | None,
    task_id: str | None,
) -> Claim | None:
    """Pick the first candidate (own lease, expired lease, due waiting task, next queued
    task of a free session; oldest first within each) and take it. Runs inside
    ``BEGIN IMMEDIATE``."""
    if agents is not None and not agents:
        return None
    now = types.now()
    params: dict[str, Any] = {"worker": worker, "now": now, "task_id": task_id}
    only = ""
    if agents is not None:
        names = {f"agent{i}": a for i, a in enumerate(agents)}
        params.update(names)
        only += f" AND t.agent IN ({', '.join(':' + k for k in names)})"
    if task_id is not None:
        only += " AND t.id = :task_id"
    row: sqlite3.Row | None = None
    for condition in _CANDIDATES:
        row = conn.execute(
            f"SELECT * FROM tasks t WHERE {condition}{only} ORDER BY t.position LIMIT 1", params
        ).fetchone()
        if row is not None:
            break
    if row is None:
        return None
    reason = leases.claim_reason(row, worker)
    tid: str = row["id"]
    epoch: int = row["lease_epoch"] + 1
    runs: int = row["runs"] + 1
    expires = now + lease_ttl
    input_seq = row["input_seq"]
    if input_seq is None:
        user = types.Message(role="user", content=row["input"])
        (input_seq,) = append_messages(conn, row["session_id"], tid, [user], now)
    from_step = conn.execute("SELECT COUNT(*) FROM steps WHERE task_id = ?", (tid,)).fetchone()[0]
    conn.execute(
        "UPDATE tasks SET status = 'running', lease_owner = ?, lease_expires_at = ?,"
        " lease_epoch = ?, runs = ?, input_seq = ?, wake_at = NULL, updated_at = ? WHERE id = ?",
        (worker, expires, epoch, runs, input_seq, now, tid),
    )
    conn.execute(
        "INSERT INTO task_runs (task_id, run, worker, epoch, started_at, from_step, reason)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (tid, runs, worker, epoch, now, from_step, reason),
    )
    lease = types.Lease(task_id=tid, owner=worker, epoch=epoch, expires_at=expires)
    return Claim(task=rows.task(task_row(conn, tid)), lease=lease, reason=reason)


def commit_batch(
    conn: sqlite3.Connection, commits: Sequence[types.StepCommit]
) -> list[types.CommitResult | BaseException]:
    """Group commit inside one transaction: each commit under its own savepoint, so a
    fenced or rejected commit is rolled back alone and reported in its place."""
    results: list[types.CommitResult | BaseException] = []
    now = types.now()
    for commit in commits:
        conn.execute("SAVEPOINT step_commit")
        try:
            results.append(_commit_one(conn, commit, now))
        except (errors.TetherError, errors.LeaseLost) as exc:
            conn.execute("ROLLBACK TO step_commit")
            results.append(exc)
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK TO step_commit")
            results.append(
                commit_rules.step_rejected(commit.step, exc, duplicate="UNIQUE" in str(exc))
            )
        conn.execute("RELEASE step_commit")
    return results


_INSERT_STEP = (
    f"INSERT INTO steps ({', '.join(rows.STEP_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in rows.STEP_COLUMNS)})"
)
_FENCE_FOR_COMMIT = (
    "SELECT t.status, t.lease_epoch, t.session_id, s.last_seq FROM tasks t"
    " JOIN sessions s ON s.id = t.session_id WHERE t.id = ?"
)


def _commit_one(
    conn: sqlite3.Connection, commit: types.StepCommit, now: float
) -> types.CommitResult:
    """One step's commit in as few statements as it takes: the fence and the session's
    ``last_seq`` in one read; the step row first (so that a step journaled already is
    found by its primary key before anything is written); then its messages, one update
    of the session (``last_seq`` and state), its events, the task's ``updated_at``."""
    step, lease = commit.step, commit.lease
    leases.same_task(lease, step.task_id)
    task = conn.execute(_FENCE_FOR_COMMIT, (step.task_id,)).fetchone()
    if task is None:
        raise errors.NotFound("no such task", task=step.task_id)
    leases.check(lease, task)
    session_id: str = task["session_id"]
    last: int = task["last_seq"]
    n = len(commit.messages)
    seqs = tuple(range(last + 1, last + 1 + n)) if n else step.message_seqs
    try:
        conn.execute(_INSERT_STEP, rows.step_values(step, seqs, commit.messages))
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" in str(exc):
            done_row = conn.execute(
                "SELECT fingerprint, message_seqs FROM steps WHERE task_id = ? AND idx = ?",
                (step.task_id, step.index),
            ).fetchone()
            done = run(
                conn,
                commit_rules.already_committed(
                    commit,
                    session_id,
                    None if done_row is None else done_row["fingerprint"],
                    None if done_row is None else done_row["message_seqs"],
                ),
            )
            if done is not None:
                return done
        raise
    if commit.signal_seq is not None:
        consume_signal(conn, step.task_id, step.index, commit.signal_seq, now)
    if n:
        _insert_messages(conn, session_id, step.task_id, commit.messages, seqs, now)
    if commit.session_state is not None:
        state = rows.dumps(commit.session_state, "session state")
        conn.execute(
            "UPDATE sessions SET last_seq = ?, state = ?, updated_at = ? WHERE id = ?",
            (last + n, state, now, session_id),
        )
    elif n:
        conn.execute(
            "UPDATE sessions SET last_seq = ?, updated_at = ? WHERE id = ?",
            (last + n, now, session_id),
        )
    insert_events(conn, step.task_id, commit.events)
    conn.execute("UPDATE tasks SET updated_at = ? WHERE id = ?", (now, step.task_id))
    return types.CommitResult(message_seqs=seqs)


# ---- durable waits (rules in ``waits``) ---------------------------------------------


def consume_signal(conn: sqlite3.Connection, task_id: str, step: int, seq: int, now: float) -> None:
    run(conn, waits.consume(task_id, step, seq, now))
