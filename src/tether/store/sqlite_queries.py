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
from tether.store import dialect, leases, reads, rows, waits
from tether.store.base import Claim
from tether.store.program import DB_NOW, Notify, Program, T, in_turn

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
    """Append events with the task's next event seqs (each row reads the last one in a
    scalar subquery of the statement that inserts it: no read before; an ``INSERT …
    SELECT`` from the same table would go through a temporary table)."""
    if not events:
        return
    conn.executemany(
        "INSERT INTO events (task_id, seq, name, at, step, data, payload_version) VALUES"
        " (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE task_id = ?1),"
        " ?2, ?3, ?4, ?5, ?6)",
        [
            (task_id, e.name, e.at, e.step, rows.dumps(e.data, f"data of event {e.name}"),
             types.PAYLOAD_VERSION)
            for e in events
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
    from_step = 0
    if input_seq is None:  # its first start: nothing journaled yet (steps need a claim)
        user = types.Message(role="user", content=row["input"])
        (input_seq,) = append_messages(conn, row["session_id"], tid, [user], now)
    else:
        from_step = conn.execute("SELECT COUNT(*) FROM steps WHERE task_id = ?", (tid,)).fetchone()[
            0
        ]
    taken = conn.execute(
        "UPDATE tasks SET status = 'running', lease_owner = ?, lease_expires_at = ?,"
        " lease_epoch = ?, runs = ?, input_seq = ?, wake_at = NULL, updated_at = ? WHERE id = ?"
        " RETURNING *",
        (worker, expires, epoch, runs, input_seq, now, tid),
    ).fetchone()
    conn.execute(
        "INSERT INTO task_runs (task_id, run, worker, epoch, started_at, from_step, reason)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (tid, runs, worker, epoch, now, from_step, reason),
    )
    lease = types.Lease(task_id=tid, owner=worker, epoch=epoch, expires_at=expires)
    task = rows.task(taken)
    start = reads.task_start(run(conn, in_turn(reads.task_start_parts(dialect.SQLITE, task))))
    return Claim(task=task, lease=lease, reason=reason, start=start)


def claim_many(
    conn: sqlite3.Connection,
    workers: Sequence[str],
    lease_ttl: float,
    agents: Sequence[str] | None,
) -> list[Claim]:
    """``claim`` under each lease owner in turn, in the caller's transaction, until
    one finds nothing."""
    claims: list[Claim] = []
    for worker in workers:
        got = claim(conn, worker, lease_ttl, agents, None)
        if got is None:
            break
        claims.append(got)
    return claims


def commit_batch(
    conn: sqlite3.Connection, commits: Sequence[types.StepCommit]
) -> list[types.CommitResult | BaseException]:
    """Group commit inside one transaction (``BEGIN IMMEDIATE``, opened by the caller);
    a fenced or rejected commit is rolled back alone and reported in its place.

    The usual rejections (a lost lease, a step journaled already) come before a commit
    writes anything, or from the statement that would have been its first write, which
    SQLite undoes by itself: so the batch runs without savepoints (a savepoint makes
    SQLite copy each page it changes to a journal of its own first). A commit that fails
    after it wrote (a signal consumed already) rolls the transaction back; the batch then
    runs again in a new one, each commit under its own savepoint."""
    now = types.now()
    try:
        return [_commit_or_error(conn, commit, now, isolated=False) for commit in commits]
    except _Undo:
        conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")
    results: list[types.CommitResult | BaseException] = []
    for commit in commits:
        conn.execute("SAVEPOINT step_commit")
        result = _commit_or_error(conn, commit, now, isolated=True)
        if isinstance(result, BaseException):
            conn.execute("ROLLBACK TO step_commit")
        conn.execute("RELEASE step_commit")
        results.append(result)
    return results


class _Undo(Exception):
    """A commit failed after it wrote: the batch's transaction is rolled back and the
    batch runs again, each commit under its own savepoint."""


def _commit_or_error(
    conn: sqlite3.Connection,
    commit: types.StepCommit,
    now: float,
    *,
    isolated: bool,
) -> types.CommitResult | BaseException:
    """One commit, or the error it is rejected with. A failure after the commit wrote
    raises ``_Undo`` unless the commit is ``isolated`` (under a savepoint of its own,
    which the caller rolls back)."""
    try:
        head = _journal_step(conn, commit)
    except (errors.TetherError, errors.LeaseLost) as exc:
        return exc
    except sqlite3.IntegrityError as exc:
        return commit_rules.step_rejected(commit.step, exc, duplicate="UNIQUE" in str(exc))
    if isinstance(head, types.CommitResult):
        return head
    try:
        return _write_rest(conn, commit, head, now)
    except (errors.TetherError, errors.LeaseLost, sqlite3.IntegrityError) as exc:
        if not isolated:
            raise _Undo from exc
        if isinstance(exc, sqlite3.IntegrityError):
            return commit_rules.step_rejected(commit.step, exc, duplicate="UNIQUE" in str(exc))
        return exc


_INSERT_STEP = (
    f"INSERT INTO steps ({', '.join(rows.STEP_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in rows.STEP_COLUMNS)})"
)
_FENCE_FOR_COMMIT = (
    "SELECT t.status, t.lease_epoch, t.session_id, s.last_seq FROM tasks t"
    " JOIN sessions s ON s.id = t.session_id WHERE t.id = ?"
)


def _journal_step(
    conn: sqlite3.Connection, commit: types.StepCommit
) -> tuple[str, int, tuple[int, ...]] | types.CommitResult:
    """The fence and the session's ``last_seq`` in one read, then the step row (so that a
    step journaled already is found by its primary key before anything is written):
    ``(session_id, last_seq, the messages' seqs)``, or the result of the same commit
    applied already. When it raises, nothing of the commit is written."""
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
    return session_id, last, seqs


def _write_rest(
    conn: sqlite3.Connection,
    commit: types.StepCommit,
    head: tuple[str, int, tuple[int, ...]],
    now: float,
) -> types.CommitResult:
    """The rest of a commit whose step row is written: the signal it consumes, its
    messages, one update of the session (``last_seq`` and state), its events, the
    task's ``updated_at``."""
    step = commit.step
    session_id, last, seqs = head
    n = len(commit.messages)
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
