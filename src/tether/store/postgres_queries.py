"""The PostgreSQL write path: claiming, fencing and group commit, as functions on a connection.

Each function runs inside a transaction its caller opened; ``PostgresStore`` is the
async face over them. The semantics are those of ``sqlite_queries``; what differs is
how concurrent writers are kept apart:

- every fenced write locks its task row (``FOR NO KEY UPDATE``) before checking the
  epoch, so a claim cannot bump the epoch between the check and the write;
- claiming picks each candidate with ``FOR NO KEY UPDATE SKIP LOCKED``, so concurrent
  workers never wait on each other's candidates;
- one running task per session is kept by the candidate conditions and, whatever two
  concurrent claimers decide from their snapshots, by the unique partial index
  ``tasks_one_running_per_session``: a claim that would break it is rolled back;
- message seqs come from ``UPDATE sessions SET last_seq = last_seq + n … RETURNING``,
  which serialises appends to one session on its row lock;
- times come from the database clock (``postgres_connection.NOW``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql

from tether import errors, types
from tether.store import commits as commit_rules
from tether.store import leases, rows, waits
from tether.store import postgres_connection as connection
from tether.store.base import Claim
from tether.store.program import DB_NOW, Notify, Program, T, postgres_style

Connection = connection.Connection

_LOCK = " FOR NO KEY UPDATE"
_CANDIDATES = (
    # its own lease first (a restarted worker's ``resume``), then any expired one
    (
        "t.status = 'running'"
        f" AND (t.lease_owner = %(worker)s OR t.lease_expires_at <= {connection.NOW})",
        "(t.lease_owner = %(worker)s) DESC, t.position",
    ),
    # a waiting task whose signal arrived or whose time came
    (f"t.status = 'waiting' AND t.wake_at <= {connection.NOW}", "t.position"),
    (
        "t.status = 'queued'"
        " AND NOT EXISTS (SELECT 1 FROM tasks r"
        "  WHERE r.session_id = t.session_id AND r.status IN ('running', 'waiting'))"
        " AND NOT EXISTS (SELECT 1 FROM tasks o"
        "  WHERE o.session_id = t.session_id AND o.status = 'queued' AND o.position < t.position)",
        "t.position",
    ),
)
_PICK = (
    f"SELECT t.*, {connection.NOW} AS db_now,"
    " (SELECT COUNT(*) FROM steps s WHERE s.task_id = t.id) AS steps_done"
    " FROM tasks t WHERE {condition}{only} ORDER BY {order} LIMIT 1"
    f"{_LOCK} OF t SKIP LOCKED"
)
_TAKE = (
    "WITH sess AS ("
    " UPDATE sessions SET last_seq = last_seq + 1, updated_at = %(now)s"
    " WHERE id = %(sid)s AND %(needs_input)s RETURNING last_seq"
    "), msg AS ("
    " INSERT INTO messages (session_id, seq, task_id, payload, payload_version, created_at)"
    " SELECT %(sid)s, last_seq, %(id)s, %(input)s, %(version)s, %(now)s FROM sess"
    "), claimed AS ("
    " UPDATE tasks SET status = 'running', lease_owner = %(worker)s,"
    " lease_expires_at = %(expires)s, lease_epoch = %(epoch)s, runs = %(runs)s,"
    " input_seq = COALESCE((SELECT last_seq FROM sess), input_seq), wake_at = NULL,"
    " updated_at = %(now)s WHERE id = %(id)s"
    " RETURNING *"
    "), run AS ("
    " INSERT INTO task_runs (task_id, run, worker, epoch, started_at, from_step, reason)"
    " SELECT id, runs, lease_owner, lease_epoch, %(now)s, %(from_step)s, %(reason)s"
    " FROM claimed"
    ") SELECT * FROM claimed"
)
"""Take the picked task in one statement: on its first start, append its input as the
session's next message (``input_seq``); set the lease; record the run."""


async def fetch_one(
    conn: Connection, query: str | sql.Composed, params: Any = None
) -> dict[str, Any] | None:
    cur = await conn.execute(query, params)
    return await cur.fetchone()


async def fetch_all(conn: Connection, query: str, params: Any = None) -> list[dict[str, Any]]:
    cur = await conn.execute(query, params)
    return await cur.fetchall()


async def notify_work(conn: Connection, agent: str) -> None:
    """Tell idle workers a task may be claimable (delivered when the transaction commits)."""
    await conn.execute("SELECT pg_notify(%s, %s)", (connection.WORK_CHANNEL, agent))


async def run(conn: Connection, program: Program[T]) -> T:
    """Run a store program (``program``) on this connection, inside its caller's
    transaction; a ``lock`` query locks its rows (``FOR NO KEY UPDATE``), ``Notify``
    becomes ``pg_notify`` (delivered at commit)."""
    try:
        step = next(program)
        while True:
            found: list[Any] = []
            if isinstance(step, Notify):
                await notify_work(conn, step.agent)
            else:
                text = step.sql.replace(DB_NOW, connection.NOW)
                text = postgres_style(text) + (_LOCK if step.lock else "")
                if step.many:
                    async with conn.cursor() as many:
                        await many.executemany(text, step.many)
                else:
                    cur = await conn.execute(text, step.params)
                    if cur.description is not None:
                        found = await cur.fetchall()
            step = program.send(found)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def claim(
    conn: Connection,
    worker: str,
    lease_ttl: float,
    agents: Sequence[str] | None,
    task_id: str | None,
) -> Claim | None:
    """Pick the first candidate (own lease, expired lease, due waiting task, next queued
    task of a free session; oldest first within each), skipping rows other claimers
    hold, and take it.

    One round trip per kind of candidate looked at (the pick that finds one also reads
    the clock and the journal's length), then one for ``_TAKE``.
    A claim that would give a session a second running task fails on the unique index
    and rolls the whole transaction back (``SessionBusy``)."""
    if agents is not None and not agents:
        return None
    params: dict[str, Any] = {"worker": worker, "task_id": task_id, "agents": list(agents or [])}
    only = ""
    if agents is not None:
        only += " AND t.agent = ANY(%(agents)s)"
    if task_id is not None:
        only += " AND t.id = %(task_id)s"
    row: dict[str, Any] | None = None
    for condition, order in _CANDIDATES:
        pick = _PICK.format(condition=condition, only=only, order=order)
        row = await fetch_one(conn, pick, params)
        if row is not None:
            break
    if row is None:
        return None
    reason = leases.claim_reason(row, worker)
    now = float(row["db_now"])
    tid: str = row["id"]
    epoch: int = row["lease_epoch"] + 1
    expires = now + lease_ttl
    needs_input = row["input_seq"] is None
    user = types.Message(role="user", content=row["input"]).to_dict() if needs_input else None
    take = {
        "worker": worker, "expires": expires, "epoch": epoch, "runs": row["runs"] + 1,
        "now": now, "id": tid, "from_step": int(row["steps_done"]), "reason": reason,
        "sid": row["session_id"], "needs_input": needs_input,
        "input": rows.dumps(user, f"input message of task {tid}") if needs_input else None,
        "version": types.PAYLOAD_VERSION,
    }  # fmt: skip
    try:
        updated = await fetch_one(conn, _TAKE, take)
    except psycopg.errors.UniqueViolation as exc:
        raise SessionBusy(tid) from exc
    assert updated is not None
    lease = types.Lease(task_id=tid, owner=worker, epoch=epoch, expires_at=expires)
    return Claim(task=rows.task(updated), lease=lease, reason=reason)


class SessionBusy(Exception):
    """A concurrent claimer started another task of this session first: the claim's
    transaction is rolled back and claiming tries again (the task stays queued)."""


async def commit_batch(
    conn: Connection, commits: Sequence[types.StepCommit]
) -> list[types.CommitResult | BaseException]:
    """Group commit inside one transaction: each commit under its own savepoint, so a
    fenced or rejected commit is rolled back alone and reported in its place."""
    results: list[types.CommitResult | BaseException] = []
    now = types.now()
    for commit in commits:
        try:
            async with conn.transaction():
                results.append(await _commit_one(conn, commit, now))
        except (errors.TetherError, errors.LeaseLost) as exc:
            results.append(exc)
        except psycopg.IntegrityError as exc:
            results.append(_rejected(commit.step, exc))
    return results


class Rejected(Exception):
    """A commit's failure in ``commit_all``, raised to roll its transaction back."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


async def commit_all(
    conn: Connection, commits: Sequence[types.StepCommit]
) -> list[types.CommitResult]:
    """Group commit without savepoints (two round trips fewer per commit): the first
    fenced or rejected commit raises ``Rejected``, carrying the error to report, which
    rolls the whole transaction back; the caller then runs ``commit_batch``. Losing a
    lease is rare, so the common batch pays for no savepoints."""
    now = types.now()
    done: list[types.CommitResult] = []
    for commit in commits:
        try:
            done.append(await _commit_one(conn, commit, now))
        except (errors.TetherError, errors.LeaseLost) as exc:
            raise Rejected(exc) from exc
        except psycopg.IntegrityError as exc:
            raise Rejected(_rejected(commit.step, exc)) from exc
    return done


_FENCE_FOR_COMMIT = (
    "UPDATE tasks SET updated_at = %(now)s WHERE id = %(task)s"
    " RETURNING status, lease_epoch, session_id"
)
"""The fence of a step commit: lock the task row (the update's ``FOR NO KEY UPDATE``
lock) and read its status and epoch, checked before anything else is written (a stale
lease's touch is rolled back with its transaction or savepoint)."""

_READ_FOR_COMMIT = (
    "SELECT s.last_seq,"
    " (SELECT COALESCE(MAX(e.seq), 0) FROM events e WHERE e.task_id = %(task)s) AS last_event,"
    " d.fingerprint AS done_fingerprint, d.message_seqs AS done_seqs"
    " FROM sessions s LEFT JOIN steps d ON d.task_id = %(task)s AND d.idx = %(idx)s"
    " WHERE s.id = %(sid)s"
)
"""What the write needs, read once the task row is locked, in a statement of its own:
under READ COMMITTED an ``UPDATE … FROM`` that waited for the lock re-checks only the
locked row, and would see the session's ``last_seq`` and the journal as they were
before the other commit (a step journaled meanwhile would look absent). A statement
after the lock sees everything committed before it."""

_WRITE_STEP = sql.SQL(
    "WITH sess AS ("
    " UPDATE sessions SET last_seq = %(new_last)s, state = COALESCE(%(state)s, state),"
    " updated_at = %(now)s WHERE id = %(sid)s AND last_seq = %(last)s AND %(touch)s"
    " RETURNING id"
    "), msgs AS ("
    " INSERT INTO messages (session_id, seq, task_id, payload, payload_version, created_at)"
    " SELECT %(sid)s, m.seq, %(task)s, m.payload, %(version)s, %(now)s"
    " FROM unnest(%(mseqs)s::bigint[], %(mpayloads)s::text[]) AS m(seq, payload)"
    "), ev AS ("
    " INSERT INTO events (task_id, seq, name, at, step, data, payload_version)"
    " SELECT %(task)s, %(last_event)s + e.ord, e.name, e.at, e.step, e.data, %(version)s"
    " FROM unnest(%(enames)s::text[], %(eats)s::double precision[], %(esteps)s::integer[],"
    " %(edatas)s::text[]) WITH ORDINALITY AS e(name, at, step, data, ord)"
    "), step AS ("
    " INSERT INTO steps ({columns}) VALUES ({values})"
    ") SELECT (SELECT COUNT(*) FROM sess) AS touched"
).format(
    columns=sql.SQL(", ").join(sql.Identifier(c) for c in rows.STEP_COLUMNS),
    values=sql.SQL(", ").join(sql.Placeholder(c) for c in rows.STEP_COLUMNS),
)
"""A step's whole write in one statement: the session's counter and state, its
messages, its events and the step row (the primary key rejects a second step at an
index). The session is updated only where its ``last_seq`` is still the one the fence
read: one running task per session means nothing else appends to it meanwhile, and
were that ever broken the commit fails instead of reusing seqs."""


async def _commit_one(conn: Connection, commit: types.StepCommit, now: float) -> types.CommitResult:
    """One step's commit in three round trips (``_FENCE_FOR_COMMIT``, ``_READ_FOR_COMMIT``,
    ``_WRITE_STEP``),
    plus one to consume a signal, and one to compare a retried commit's messages."""
    step, lease = commit.step, commit.lease
    leases.same_task(lease, step.task_id)
    fence = await fetch_one(conn, _FENCE_FOR_COMMIT, {"now": now, "task": step.task_id})
    if fence is None:
        raise errors.NotFound("no such task", task=step.task_id)
    leases.check(lease, fence)
    session_id: str = fence["session_id"]
    task = await fetch_one(
        conn, _READ_FOR_COMMIT, {"task": step.task_id, "idx": step.index, "sid": session_id}
    )
    if task is None:
        raise errors.NotFound("no such session", task=step.task_id)
    if task["done_fingerprint"] is not None:
        done = await run(
            conn,
            commit_rules.already_committed(
                commit, session_id, task["done_fingerprint"], task["done_seqs"]
            ),
        )
        if done is not None:
            return done
    last = int(task["last_seq"])
    n = len(commit.messages)
    seqs = tuple(range(last + 1, last + 1 + n)) if n else step.message_seqs
    values = dict(
        zip(rows.STEP_COLUMNS, rows.step_values(step, seqs, commit.messages), strict=True)
    )
    state = (
        None if commit.session_state is None else rows.dumps(commit.session_state, "session state")
    )
    payloads = [
        rows.dumps(m.to_dict(), f"message {q}") for q, m in zip(seqs, commit.messages, strict=False)
    ]
    written = await fetch_one(
        conn,
        _WRITE_STEP,
        {
            **values, "new_last": last + n, "state": state, "now": now, "sid": session_id,
            "last": last, "touch": bool(n) or state is not None, "task": step.task_id,
            "version": types.PAYLOAD_VERSION, "mseqs": list(seqs) if n else [],
            "mpayloads": payloads,
            "last_event": int(task["last_event"]),
            "enames": [e.name for e in commit.events], "eats": [e.at for e in commit.events],
            "esteps": [e.step for e in commit.events],
            "edatas": [rows.dumps(e.data, f"data of event {e.name}") for e in commit.events],
        },
    )  # fmt: skip
    if (bool(n) or state is not None) and (written is None or written["touched"] != 1):
        raise errors.StoreUnavailable(
            f"session {session_id} gained messages while task {step.task_id} committed step "
            f"{step.index}; the commit was rolled back, retry it",
            task=step.task_id,
        )
    if commit.signal_seq is not None:
        await consume_signal(conn, step.task_id, step.index, commit.signal_seq, now)
    return types.CommitResult(message_seqs=seqs)


def _rejected(step: types.StepRecord, exc: psycopg.IntegrityError) -> errors.TetherError:
    duplicate = isinstance(exc, psycopg.errors.UniqueViolation)
    return commit_rules.step_rejected(step, exc, duplicate=duplicate)


# ---- durable waits (rules in ``waits``) ---------------------------------------------


async def consume_signal(conn: Connection, task_id: str, step: int, seq: int, now: float) -> None:
    await run(conn, waits.consume(task_id, step, seq, now))
