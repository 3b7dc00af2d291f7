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

import functools
import json
from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql

from tether import errors, types
from tether.store import commits as commit_rules
from tether.store import console_sql, leases, reads, rows, views, waits
from tether.store import postgres_connection as connection
from tether.store.base import Claim, TaskStart
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


async def db_now(conn: Connection) -> float:
    row = await fetch_one(conn, f"SELECT {connection.NOW} AS now")
    assert row is not None
    return float(row["now"])


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
                text = _text(step)
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


_BLIND = ("INSERT", "UPDATE", "DELETE", "SAVEPOINT", "RELEASE")
"""Statements that return no rows unless they say ``RETURNING``: ``apply`` sends them on
without waiting, and the program receives [] as it would after waiting."""


def _blind(text: str) -> bool:
    head = text.lstrip().split(None, 1)[0].upper()
    return head in _BLIND and "RETURNING" not in text.upper()


async def apply(conn: Connection, program: Program[T]) -> T:
    """Run a store program in one write transaction of its own, pipelined: BEGIN goes out
    with the first statement, a statement that returns no rows (and ``Notify``) is sent
    without waiting for its answer, and COMMIT goes out with whatever is still queued;
    only a statement whose rows the program reads waits (one round trip each). An error
    in a statement sent without waiting is raised at the next wait or at COMMIT: the
    transaction is rolled back either way, as with ``run``."""
    async with connection.pipelined_transaction(conn) as pipe:
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
                    elif _blind(text):
                        await conn.cursor().execute(text, step.params)
                    else:
                        cur = conn.cursor()
                        await cur.execute(text, step.params)
                        await connection.sync(pipe)
                        if cur.description is not None:
                            found = await cur.fetchall()
                step = program.send(found)
        except StopIteration as done:
            result: T = done.value
    return result


def _journal(task_id: str, session_id: str) -> Program[list[types.StepRecord]]:
    """``load_journal`` as a program: the steps, then the messages they refer to."""
    found = yield Query("SELECT * FROM steps WHERE task_id = :id ORDER BY idx", {"id": task_id})
    payloads = [rows.step_payload_of(r) for r in found]
    seqs = rows.referenced_seqs(found, payloads)
    messages = (
        (
            yield Query(
                "SELECT * FROM messages WHERE session_id = :sid AND seq = ANY(:seqs)",
                {"sid": session_id, "seqs": seqs},
            )
        )
        if seqs
        else []
    )
    return rows.journal(found, payloads, messages)


async def read_task_start(conn: Connection, task: types.TaskRecord) -> TaskStart:
    """The reads of a claimed task before its first step (``Store.read_task_start``) as
    programs run side by side: two round trips, the second only for what the first
    read names (the journal's messages, the session's rows after its check)."""
    found = await run_together(
        conn,
        [
            _journal(task.id, task.session_id),
            reads.attempts(task.id) if task.runs > 1 else _nothing(),
            reads.session(task.session_id, None),
            reads.messages(task.session_id, None, 0, task.input_seq, None),
        ],
    )
    return TaskStart(journal=found[0], attempts=found[1], session=found[2], history=found[3])


def _nothing() -> Program[list[Any]]:
    return []
    yield  # a generator that reads nothing


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


async def session_row(
    conn: Connection, session_id: str, tenant: str | None, *, lock: bool = False
) -> dict[str, Any]:
    row = await fetch_one(
        conn, "SELECT * FROM sessions WHERE id = %s" + (_LOCK if lock else ""), (session_id,)
    )
    if row is None or (tenant is not None and row["tenant"] != tenant):
        raise errors.NotFound("no such session", tenant=tenant, session=session_id)
    return row


async def task_row(
    conn: Connection, task_id: str, tenant: str | None = None, *, lock: bool = False
) -> dict[str, Any]:
    row = await fetch_one(
        conn, "SELECT * FROM tasks WHERE id = %s" + (_LOCK if lock else ""), (task_id,)
    )
    if row is None or (tenant is not None and row["tenant"] != tenant):
        raise errors.NotFound("no such task", tenant=tenant, task=task_id)
    return row


async def fence(conn: Connection, lease: types.Lease, task_id: str) -> dict[str, Any]:
    """Lock the task row; return it if ``lease`` still holds the task, else ``LeaseLost``."""
    leases.same_task(lease, task_id)
    row = await task_row(conn, task_id, lock=True)
    leases.check(lease, row)
    return row


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
    params: dict[str, Any] = {"worker": worker, "task_id": task_id, "agents": list(agents or [])}
    only = ""
    if agents is not None:
        only += " AND t.agent = ANY(%(agents)s)"
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


async def commit_steps(
    conn: Connection, commits: Sequence[types.StepCommit]
) -> list[types.CommitResult | BaseException]:
    """Group commit in one round trip (``connection.one_exchange``): BEGIN, one
    ``_FENCE`` locking every task of the batch, one ``_WRITE_STEP`` per commit, COMMIT.

    Each write checks its own lease, journal index and signal in SQL and writes nothing
    when one fails, so a fenced or repeated commit is reported in its place (from the
    fence's row and the write's answer) without taking the others down, and without
    savepoints. Only a statement that fails outright (a check constraint, a race on a
    key) aborts the batch: it is rolled back and each commit then runs alone, in its
    own round trip, so the failure is reported for its commit only."""
    try:
        return await _commit_together(conn, commits)
    except psycopg.Error as exc:
        if connection.is_unavailable(exc) or len(commits) == 1:
            raise
    return [r for c in commits for r in await _commit_alone(conn, c)]


async def _commit_alone(
    conn: Connection, commit: types.StepCommit
) -> list[types.CommitResult | BaseException]:
    try:
        return await _commit_together(conn, [commit])
    except psycopg.IntegrityError as exc:
        return [_rejected(commit.step, exc)]


_FENCE = (
    "SELECT id, status, lease_epoch, session_id FROM tasks WHERE id = ANY(%(ids)s)"
    " ORDER BY id FOR NO KEY UPDATE"
)
"""The fence of a batch: lock the task rows (in one order, so two batches cannot
deadlock on each other) and read their status and epoch, for the report of a commit
whose lease is lost. The writes run after it in statements of their own: under READ
COMMITTED a statement that waited for a row lock sees other rows as of its first
snapshot, so a step or a message another commit had just written would look absent;
a later statement sees everything committed before it began."""

_STEP_TYPES = (
    "text", "integer", "text", "text", "text", "text", "text", "text", "integer",
    "double precision", "double precision", "text", "text", "text", "integer",
)  # fmt: skip
"""The types of ``rows.STEP_COLUMNS``: the step row is a ``SELECT`` (written only
when the commit may go on), whose parameters take no type from the columns."""

_WRITE_STEP = sql.SQL(
    "WITH held AS ("
    " SELECT session_id FROM tasks"
    " WHERE id = %(task_id)s AND status = 'running' AND lease_epoch = %(epoch)s"
    "), done AS ("
    " SELECT fingerprint, message_seqs FROM steps WHERE task_id = %(task_id)s AND idx = %(idx)s"
    "), go AS ("
    " SELECT session_id FROM held WHERE NOT EXISTS (SELECT 1 FROM done)"
    " AND (%(signal)s::bigint IS NULL OR EXISTS (SELECT 1 FROM signals"
    "  WHERE task_id = %(task_id)s AND seq = %(signal)s::bigint AND consumed_step IS NULL))"
    "), sess AS ("
    " UPDATE sessions SET last_seq = last_seq + %(n)s::integer,"
    " state = COALESCE(%(state)s::text, state), updated_at = %(now)s::double precision"
    " WHERE id = (SELECT session_id FROM go) AND %(touch)s::boolean"
    " RETURNING last_seq - %(n)s::integer AS base"
    "), msgs AS ("
    " INSERT INTO messages (session_id, seq, task_id, payload, payload_version, created_at)"
    " SELECT go.session_id, sess.base + m.ord, %(task_id)s, m.payload, %(version)s, %(now)s"
    " FROM go, sess, unnest(%(mpayloads)s::text[]) WITH ORDINALITY AS m(payload, ord)"
    "), ev AS ("
    " INSERT INTO events (task_id, seq, name, at, step, data, payload_version)"
    " SELECT %(task_id)s,"
    " COALESCE((SELECT MAX(seq) FROM events WHERE task_id = %(task_id)s), 0) + e.ord,"
    " e.name, e.at, e.step, e.data, %(version)s"
    " FROM go, unnest(%(enames)s::text[], %(eats)s::double precision[], %(esteps)s::integer[],"
    " %(edatas)s::text[]) WITH ORDINALITY AS e(name, at, step, data, ord)"
    "), sig AS ("
    " UPDATE signals SET consumed_step = %(idx)s, consumed_at = %(now)s"
    " WHERE task_id = %(task_id)s AND seq = %(signal)s::bigint AND consumed_step IS NULL"
    " AND EXISTS (SELECT 1 FROM go) RETURNING 1"
    "), touched AS ("
    " UPDATE tasks SET updated_at = %(now)s WHERE id = %(task_id)s AND EXISTS (SELECT 1 FROM go)"
    " RETURNING 1"
    "), step AS ("
    " INSERT INTO steps ({columns}) SELECT {values} FROM go RETURNING 1"
    ") SELECT (SELECT COUNT(*) FROM step) AS wrote, (SELECT base FROM sess) AS base,"
    " (SELECT fingerprint FROM done) AS done_fingerprint,"
    " (SELECT message_seqs FROM done) AS done_seqs"
).format(
    columns=sql.SQL(", ").join(sql.Identifier(c) for c in rows.STEP_COLUMNS),
    values=sql.SQL(", ").join(
        sql.SQL(
            "CASE WHEN %(n)s::integer > 0 THEN (SELECT array_to_json(ARRAY("
            "SELECT base + g FROM sess, generate_series(1, %(n)s::integer) AS g ORDER BY g"
            "))::text) ELSE %(message_seqs)s::text END"
        )
        if c == "message_seqs"
        else sql.SQL("{}::{}").format(sql.Placeholder(c), sql.SQL(t))
        for c, t in zip(rows.STEP_COLUMNS, _STEP_TYPES, strict=True)
    ),
)
"""A step's whole write in one statement, written only where the commit may go on
(``go``): the lease still holds the task (as the fence found it, now locked), no step
is journaled at that index yet, and the signal it consumes (if any) is still there.
Then the session's counter and state (the counter's ``UPDATE`` hands out the message
seqs under the session row's lock), its messages, its events, the signal, the task's
``updated_at`` and the step row. It answers whether it wrote, the first seq's
predecessor, and the step already journaled at that index (a retried commit)."""
_WRITE_STEP_TEXT = _WRITE_STEP.as_string(None)
"""Rendered once: psycopg renders a composed query again at every execute."""


async def _commit_together(
    conn: Connection, commits: Sequence[types.StepCommit]
) -> list[types.CommitResult | BaseException]:
    now = types.now()
    results: list[types.CommitResult | BaseException | None] = [None] * len(commits)
    planned: list[tuple[int, dict[str, Any]]] = []
    for i, commit in enumerate(commits):
        try:
            planned.append((i, _write_params(commit, now)))
        except errors.TetherError as exc:  # a value that is not JSON, a lease of another task
            results[i] = exc
    if planned:
        ids = sorted({commits[i].step.task_id for i, _ in planned})
        writes: list[psycopg.AsyncCursor[Any]] = []
        async with connection.pipelined_transaction(conn):
            fence = conn.cursor()
            await fence.execute(_FENCE, {"ids": ids})
            for _, params in planned:
                write = conn.cursor()
                await write.execute(_WRITE_STEP_TEXT, params)
                writes.append(write)
        fenced = {row["id"]: row for row in await fence.fetchall()}
        for (i, _), write in zip(planned, writes, strict=True):
            answer = await write.fetchone()
            assert answer is not None
            results[i] = await _outcome(
                conn, commits[i], fenced.get(commits[i].step.task_id), answer
            )
    return [r for r in results if r is not None]


def _write_params(commit: types.StepCommit, now: float) -> dict[str, Any]:
    step = commit.step
    leases.same_task(commit.lease, step.task_id)
    n = len(commit.messages)
    values = dict(
        zip(
            rows.STEP_COLUMNS,
            rows.step_values(step, step.message_seqs, commit.messages),
            strict=True,
        )
    )
    state = (
        None if commit.session_state is None else rows.dumps(commit.session_state, "session state")
    )
    return {
        **values, "epoch": commit.lease.epoch, "signal": commit.signal_seq, "n": n,
        "state": state, "now": now, "touch": bool(n) or state is not None,
        "version": types.PAYLOAD_VERSION,
        "mpayloads": [rows.dumps(m.to_dict(), f"message {i} of step {step.index}")
                      for i, m in enumerate(commit.messages)],
        "enames": [e.name for e in commit.events], "eats": [e.at for e in commit.events],
        "esteps": [e.step for e in commit.events],
        "edatas": [rows.dumps(e.data, f"data of event {e.name}") for e in commit.events],
    }  # fmt: skip


async def _outcome(
    conn: Connection,
    commit: types.StepCommit,
    fence: dict[str, Any] | None,
    answer: dict[str, Any],
) -> types.CommitResult | BaseException:
    """What one commit of a batch is told, from its task's fenced row and its write's
    ``answer``."""
    step = commit.step
    if fence is None:
        return errors.NotFound("no such task", task=step.task_id)
    try:
        leases.check(commit.lease, fence)
    except errors.LeaseLost as lost:
        return lost
    if answer["wrote"]:
        n = len(commit.messages)
        base = answer["base"]
        return types.CommitResult(
            message_seqs=tuple(range(base + 1, base + 1 + n)) if n else step.message_seqs
        )
    if answer["done_fingerprint"] is not None:  # read after the batch's COMMIT, in autocommit
        done = await run(
            conn,
            commit_rules.already_committed(
                commit, fence["session_id"], answer["done_fingerprint"], answer["done_seqs"]
            ),
        )
        return done if done is not None else _journaled(step)
    if commit.signal_seq is not None:
        return waits.already_consumed(step.task_id, step.index, commit.signal_seq)
    return errors.StoreCorrupt(
        f"the commit of step {step.index} of task {step.task_id} wrote nothing and no rule "
        "said why; report this",
        task=step.task_id,
        step=step.index,
    )


def _journaled(step: types.StepRecord) -> errors.TetherError:
    """Another step is journaled at this index: the ``Conflict`` its primary key gives."""
    return commit_rules.step_rejected(
        step, LookupError(f"steps ({step.task_id}, {step.index}) exists"), duplicate=True
    )


def _rejected(step: types.StepRecord, exc: psycopg.IntegrityError) -> errors.TetherError:
    duplicate = isinstance(exc, psycopg.errors.UniqueViolation)
    return commit_rules.step_rejected(step, exc, duplicate=duplicate)


async def step_storage_bytes(conn: Connection, task_id: str, index: int) -> int:
    """Bytes of the step's row (every column, as stored) plus its messages' payloads."""
    size = sql.SQL(" + ").join(
        sql.SQL("COALESCE(pg_column_size({}), 0)").format(sql.Identifier(c))
        for c in rows.STEP_COLUMNS
    )
    task = await task_row(conn, task_id)
    query = sql.SQL("SELECT {} AS size, message_seqs FROM steps WHERE task_id = %s AND idx = %s")
    cur = await conn.execute(query.format(size), (task_id, index))
    row = await cur.fetchone()
    if row is None:
        raise errors.NotFound("no such step in the journal", task=task_id, step=index)
    seqs = [int(s) for s in json.loads(row["message_seqs"])]
    payloads = await fetch_one(
        conn,
        "SELECT COALESCE(SUM(pg_column_size(payload)), 0) AS size FROM messages"
        " WHERE session_id = %s AND seq = ANY(%s)",
        (task["session_id"], seqs),
    )
    return int(row["size"]) + (int(payloads["size"]) if payloads is not None else 0)


# ---- console views (read-only; SQL in ``console_sql``) -------------------------------


async def _all(conn: Connection, q: console_sql.Query) -> list[dict[str, Any]]:
    return await fetch_all(conn, console_sql.postgres_style(q.sql), q.params)


async def page_tasks(
    conn: Connection, query: views.TaskQuery, before: int | None, limit: int
) -> views.TaskPage:
    found = await _all(conn, console_sql.task_page(query, before, limit))
    return console_sql.shape_task_page(found, limit)


async def journal_page(
    conn: Connection, task_id: str, tenant: str | None, after_index: int, limit: int
) -> views.JournalPage:
    task = await task_row(conn, task_id, tenant)
    page, count = console_sql.journal_page(task_id, after_index, limit)
    found = await _all(conn, page)
    payloads = [rows.step_payload_of(r) for r in found]
    seqs = rows.referenced_seqs(found, payloads)
    messages = (
        await fetch_all(
            conn,
            "SELECT * FROM messages WHERE session_id = %s AND seq = ANY(%s)",
            (task["session_id"], seqs),
        )
        if seqs
        else []
    )
    last = await _all(conn, count)
    total = int(last[0]["n"]) if last else 0
    return views.JournalPage(steps=rows.journal(found, payloads, messages), total=total)


async def session_events(
    conn: Connection, session_id: str, name: str, tenant: str | None, limit: int
) -> list[types.EventRecord]:
    await session_row(conn, session_id, tenant)
    found = await _all(conn, console_sql.session_events(session_id, name, limit))
    return [rows.event(r) for r in found]


async def overview(conn: Connection, tenant: str | None, since: float) -> views.Overview:
    now = await db_now(conn)
    first = (await _all(conn, console_sql.window_start(since)))[0]["first"]
    parts = console_sql.overview(
        console_sql.NO_POSITION if first is None else int(first), since, now, tenant
    )
    found = {name: await _all(conn, q) for name, q in parts.items()}
    return console_sql.shape_overview(since, now, found)
