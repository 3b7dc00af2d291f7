"""The PostgreSQL write path: claiming, fencing and running store programs, as functions
on a connection (the step commit is ``postgres_commits``).

``PostgresStore`` is the async face over them. A claim and a write program open their
own transaction, sent as a pipeline (``postgres_connection.pipelined_transaction``), so
a round trip is spent only where Python needs a statement's rows; ``run`` runs inside
its caller's transaction or in autocommit. The semantics are those of
``sqlite_queries``; what differs is how concurrent writers are kept apart:

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

import functools
from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql

from tether import types
from tether.store import leases, rows
from tether.store import postgres_connection as connection
from tether.store.base import Claim
from tether.store.program import DB_NOW, Notify, Program, Query, T, postgres_style

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


@functools.lru_cache(maxsize=16)
def _pick(only: str) -> str:
    """One statement for every kind of candidate, in ``_CANDIDATES``' order: the kinds are
    branches of a ``UNION ALL`` under ``LIMIT 1``, and PostgreSQL runs a branch only when
    the ones before it found nothing, so no row but the one taken is locked."""
    picks = (
        _PICK.format(condition=condition, only=only, order=order)
        for condition, order in _CANDIDATES
    )
    return (
        "SELECT * FROM ("
        + " UNION ALL ".join(f"SELECT * FROM ({p}) AS u{i}" for i, p in enumerate(picks))
        + ") AS picked LIMIT 1"
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
    return await _drive(conn, program, None)


async def apply(conn: Connection, program: Program[T]) -> T:
    """Run a store program in one write transaction of its own, pipelined: BEGIN goes out
    with the first statement, a statement that returns no rows (and ``Notify``) is sent
    without waiting for its answer, and COMMIT goes out with whatever is still queued;
    only a statement whose rows the program reads waits (one round trip each). An error
    in a statement sent without waiting is raised at the next wait or at COMMIT: the
    transaction is rolled back either way, as with ``run``."""
    async with connection.pipelined_transaction(conn) as pipe:
        return await _drive(conn, program, pipe)


_BLIND = ("INSERT", "UPDATE", "DELETE", "SAVEPOINT", "RELEASE")
"""Statements that return no rows unless they say ``RETURNING``: ``apply`` sends them on
without waiting, and the program receives [] as it would after waiting."""


def _blind(text: str) -> bool:
    head = text.lstrip().split(None, 1)[0].upper()
    return head in _BLIND and "RETURNING" not in text.upper()


async def _drive(conn: Connection, program: Program[T], pipe: psycopg.AsyncPipeline | None) -> T:
    """Feed ``program`` its statements' rows; in a pipeline (``pipe``) a statement whose
    rows nobody reads is sent without waiting, and one whose rows are read waits for a
    sync."""
    try:
        step = next(program)
        while True:
            found: list[Any] = []
            if isinstance(step, Notify):
                await notify_work(conn, step.agent)
            else:
                text = _text(step)
                if step.many:
                    async with conn.cursor() as many:
                        await many.executemany(text, step.many)
                elif pipe is not None and _blind(text):
                    await conn.cursor().execute(text, step.params)
                else:
                    cur = conn.cursor()
                    await cur.execute(text, step.params)
                    if pipe is not None:
                        await connection.sync(pipe)
                    if cur.description is not None:
                        found = await cur.fetchall()
            step = program.send(found)
    except StopIteration as done:
        result: T = done.value
        return result


async def run_together(conn: Connection, programs: Sequence[Program[Any]]) -> list[Any]:
    """Run read-only programs side by side in autocommit, one round trip a round: each
    round sends the next statement of every program not yet done, pipelined, then
    hands each its rows. Their answers, in order."""
    answers: list[Any] = [None] * len(programs)
    pending: dict[int, Query | Notify] = {}
    for i, program in enumerate(programs):
        try:
            pending[i] = next(program)
        except StopIteration as done:
            answers[i] = done.value
    while pending:
        cursors: dict[int, psycopg.AsyncCursor[Any]] = {}
        async with conn.pipeline():
            for i, step in pending.items():
                assert isinstance(step, Query) and not step.many, "reads only"
                cursors[i] = conn.cursor()
                await cursors[i].execute(_text(step), step.params)
        pending = {}
        for i, cur in cursors.items():
            found = await cur.fetchall() if cur.description is not None else []
            try:
                pending[i] = programs[i].send(found)
            except StopIteration as done:
                answers[i] = done.value
    return answers


def _text(step: Query) -> str:
    return _postgres_text(step.sql, step.lock)


@functools.lru_cache(maxsize=1024)
def _postgres_text(text: str, lock: bool) -> str:
    """A program's statement in psycopg's dialect, rewritten once per text (a regular
    expression's rewrite at every execute cost about a tenth of a millisecond)."""
    return postgres_style(text.replace(DB_NOW, connection.NOW)) + (_LOCK if lock else "")


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

    Two round trips, pipelined: BEGIN and the pick (every kind of candidate in one
    statement, which also reads the clock and the journal's length); then ``_TAKE``
    and COMMIT (or COMMIT alone when nothing was found).
    A claim that would give a session a second running task fails on the unique index
    and rolls the whole transaction back (``SessionBusy``)."""
    if agents is not None and not agents:
        return None
    params: dict[str, Any] = {
        "worker": worker, "task_id": task_id, "agents": connection.text_array(agents or ()),
    }  # fmt: skip
    only = ""
    if agents is not None:
        only += " AND t.agent = ANY(%(agents)s::text[])"
    if task_id is not None:
        only += " AND t.id = %(task_id)s"
    tid = ""
    try:
        async with connection.pipelined_transaction(conn) as pipe:
            pick = conn.cursor()
            await pick.execute(_pick(only), params)
            await connection.sync(pipe)
            row = await pick.fetchone()
            if row is None:
                return None
            reason = leases.claim_reason(row, worker)
            now = float(row["db_now"])
            tid = row["id"]
            epoch: int = row["lease_epoch"] + 1
            expires = now + lease_ttl
            needs_input = row["input_seq"] is None
            user = (
                types.Message(role="user", content=row["input"]).to_dict() if needs_input else None
            )
            take = {
                "worker": worker, "expires": expires, "epoch": epoch, "runs": row["runs"] + 1,
                "now": now, "id": tid, "from_step": int(row["steps_done"]), "reason": reason,
                "sid": row["session_id"], "needs_input": needs_input,
                "input": rows.dumps(user, f"input message of task {tid}") if needs_input else None,
                "version": types.PAYLOAD_VERSION,
            }  # fmt: skip
            taking = conn.cursor()
            await taking.execute(_TAKE, take)
    except psycopg.errors.UniqueViolation as exc:
        raise SessionBusy(tid) from exc
    updated = await taking.fetchone()
    assert updated is not None
    lease = types.Lease(task_id=tid, owner=worker, epoch=epoch, expires_at=expires)
    return Claim(task=rows.task(updated), lease=lease, reason=reason)


class SessionBusy(Exception):
    """A concurrent claimer started another task of this session first: the claim's
    transaction is rolled back and claiming tries again (the task stays queued)."""
