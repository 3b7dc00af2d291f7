"""The PostgreSQL step commit: many tasks' steps in one transaction sent as one pipeline
(group commit, ``Committer``), each commit fenced, checked and reported on its own.

Its shared rules (a retried commit already applied, a refused step record) are in
``commits``; the program runners and claims in ``postgres_queries``.
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
from tether.store import postgres_queries as queries

Connection = connection.Connection


async def commit_steps(
    conn: Connection, commits: Sequence[types.StepCommit]
) -> list[types.CommitResult | BaseException]:
    """Group commit in one round trip (``connection.pipelined_batch``: one implicit
    transaction, committed by the pipeline's Sync): one ``_FENCE`` locking every task of
    the batch whose lease holds, then ``_WRITE_STEPS`` writing every commit (or, for a
    batch with a signal or two commits of one task, one ``_WRITE_STEP`` per commit).

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
    "UPDATE tasks t SET updated_at = %(now)s"
    " FROM unnest(%(ids)s::text[], %(epochs)s::bigint[]) AS c(id, epoch)"
    " WHERE t.id = c.id AND t.status = 'running' AND t.lease_epoch = c.epoch"
    " RETURNING t.id, t.status, t.lease_epoch, t.session_id,"
    " set_config('plan_cache_mode', 'force_generic_plan', true) AS plans"
)
"""The fence of a batch: lock and touch (``updated_at``) the rows of the tasks whose
lease still holds, in one order (so two batches cannot deadlock on each other); a task
it leaves out lost its lease (or is gone), and is read afterwards for the report.
It also sets ``plan_cache_mode`` for the rest of the transaction (``set_config``, local;
set when a task is held, which is when the writes write): the prepared writes run on
their generic plans. Left to choose (``auto``), PostgreSQL kept planning ``_WRITE_STEP``
afresh for its parameters (a ``NULL`` signal, a ``false`` touch fold into
cheaper-looking custom plans), which cost about 0.4 ms of server CPU a step; the generic
plan is the same index lookups. (A ``SET LOCAL`` of its own was one statement more a
batch.)

The writes run after it in statements of their own: under READ COMMITTED a statement that
waited for a row lock sees other rows as of its first snapshot, so a step or a message
another commit had just written would look absent; a later statement sees everything
committed before it began."""

_FENCED_OUT = "SELECT id, status, lease_epoch, session_id FROM tasks WHERE id = ANY(%(ids)s)"
"""The tasks the fence left out, read after the batch to say why (``LeaseLost``,
``NotFound``)."""

_STEP_TYPES = (
    "text", "integer", "text", "text", "text", "text", "text", "text", "integer",
    "double precision", "double precision", "text", "text", "text", "integer",
)  # fmt: skip
"""The types of ``rows.STEP_COLUMNS``: the step row is a ``SELECT`` (written only
when the commit may go on), whose parameters take no type from the columns."""

_WRITE_STEP = sql.SQL(
    "WITH held AS ("
    " SELECT session_id FROM (SELECT session_id, status, lease_epoch FROM tasks"
    "  WHERE id = %(task_id)s LIMIT 1) t WHERE status = 'running' AND lease_epoch = %(epoch)s"
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
(``go``): the lease still holds the task (the fence locked it; the task is read by
primary key, as in ``_WRITE_STEPS``), no step
is journaled at that index yet, and the signal it consumes (if any) is still there.
Then the session's counter and state (the counter's ``UPDATE`` hands out the message
seqs under the session row's lock), its messages, its events, the signal and the step
row (the fence touched the task's ``updated_at``). It answers whether it wrote, the first seq's
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
            planned.append((i, _write_values(commit, now)))
        except errors.TetherError as exc:  # a value that is not JSON, a lease of another task
            results[i] = exc
    if planned:
        held = sorted({(commits[i].step.task_id, commits[i].lease.epoch) for i, _ in planned})
        writes: list[psycopg.AsyncCursor[Any]] = []
        async with connection.pipelined_batch(conn):
            fence = conn.cursor()
            await fence.execute(
                _FENCE,
                {
                    "now": now,
                    "ids": connection.text_array(t for t, _ in held),
                    "epochs": connection.number_array(e for _, e in held),
                },
            )
            if _one_statement([commits[i] for i, _ in planned]):
                write = conn.cursor()
                await write.execute(_WRITE_STEPS_TEXT, _many_writes([v for _, v in planned], now))
                writes.append(write)
            else:
                for _, values in planned:
                    write = conn.cursor()
                    await write.execute(_WRITE_STEP_TEXT, _one_write(values))
                    writes.append(write)
        fenced = {row["id"]: row for row in await fence.fetchall()}
        if out := sorted({t for t, _ in held} - fenced.keys()):
            fenced.update(
                {r["id"]: r for r in await queries.fetch_all(conn, _FENCED_OUT, {"ids": out})}
            )
        answers = [a for w in writes for a in await w.fetchall()]
        for (i, _), answer in zip(planned, answers, strict=True):
            results[i] = await _outcome(
                conn, commits[i], fenced.get(commits[i].step.task_id), answer
            )
    return [r for r in results if r is not None]


def _write_values(commit: types.StepCommit, now: float) -> dict[str, Any]:
    """One commit's values: ``_one_write`` or ``_many_writes`` makes them parameters."""
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


def _one_write(values: dict[str, Any]) -> dict[str, Any]:
    """``_WRITE_STEP``'s parameters: the lists as array literals."""
    return {
        **values,
        "mpayloads": connection.text_array(values["mpayloads"]),
        "enames": connection.text_array(values["enames"]),
        "eats": connection.number_array(values["eats"]),
        "esteps": connection.number_array(values["esteps"]),
        "edatas": connection.text_array(values["edatas"]),
    }


_BATCH_COLUMNS = (*zip(rows.STEP_COLUMNS, _STEP_TYPES, strict=True),
                  ("epoch", "bigint"), ("n", "integer"), ("state", "text"))  # fmt: skip
"""The columns of ``_WRITE_STEPS``' commits (``c``), one array each."""

_WRITE_STEPS = sql.SQL(
    "WITH c AS ("
    " SELECT * FROM unnest({arrays}) WITH ORDINALITY AS c({names}, ord)"
    "), held AS ("
    " SELECT c.ord, h.session_id FROM c CROSS JOIN LATERAL (SELECT t.session_id, t.status,"
    "  t.lease_epoch FROM tasks t WHERE t.id = c.task_id LIMIT 1) h"
    " WHERE h.status = 'running' AND h.lease_epoch = c.epoch"
    "), done AS ("
    " SELECT c.ord, d.fingerprint, d.message_seqs FROM c CROSS JOIN LATERAL (SELECT"
    "  s.fingerprint, s.message_seqs FROM steps s"
    "  WHERE s.task_id = c.task_id AND s.idx = c.idx LIMIT 1) d"
    "), go AS ("
    " SELECT held.ord, held.session_id FROM held"
    " WHERE NOT EXISTS (SELECT 1 FROM done WHERE done.ord = held.ord)"
    "), sess AS ("
    " UPDATE sessions s SET last_seq = s.last_seq + c.n,"
    " state = COALESCE(c.state, s.state), updated_at = %(now)s::double precision"
    " FROM go JOIN c ON c.ord = go.ord"
    " WHERE s.id = go.session_id AND (c.n > 0 OR c.state IS NOT NULL)"
    " RETURNING go.ord, s.last_seq - c.n AS base"
    "), msgs AS ("
    " INSERT INTO messages (session_id, seq, task_id, payload, payload_version, created_at)"
    " SELECT go.session_id, sess.base + m.pos, c.task_id, m.payload, %(version)s::integer,"
    " %(now)s::double precision"
    " FROM unnest(%(m_ord)s::bigint[], %(m_pos)s::integer[], %(m_payload)s::text[])"
    " AS m(ord, pos, payload)"
    " JOIN go ON go.ord = m.ord JOIN sess ON sess.ord = m.ord JOIN c ON c.ord = m.ord"
    "), ev AS ("
    " INSERT INTO events (task_id, seq, name, at, step, data, payload_version)"
    " SELECT c.task_id,"
    " COALESCE((SELECT MAX(x.seq) FROM events x WHERE x.task_id = c.task_id), 0) + e.pos,"
    " e.name, e.at, e.step, e.data, %(version)s::integer"
    " FROM unnest(%(e_ord)s::bigint[], %(e_pos)s::integer[], %(e_name)s::text[],"
    " %(e_at)s::double precision[], %(e_step)s::integer[], %(e_data)s::text[])"
    " AS e(ord, pos, name, at, step, data)"
    " JOIN go ON go.ord = e.ord JOIN c ON c.ord = e.ord"
    "), step AS ("
    " INSERT INTO steps ({columns}) SELECT {values} FROM go JOIN c ON c.ord = go.ord"
    " RETURNING task_id"
    ") SELECT c.ord, EXISTS (SELECT 1 FROM step WHERE step.task_id = c.task_id) AS wrote,"
    " (SELECT base FROM sess WHERE sess.ord = c.ord) AS base,"
    " done.fingerprint AS done_fingerprint, done.message_seqs AS done_seqs"
    " FROM c LEFT JOIN done ON done.ord = c.ord ORDER BY c.ord"
).format(
    arrays=sql.SQL(", ").join(
        sql.SQL("{}::{}[]").format(sql.Placeholder(f"c_{name}"), sql.SQL(t))
        for name, t in _BATCH_COLUMNS
    ),
    names=sql.SQL(", ").join(sql.Identifier(name) for name, _ in _BATCH_COLUMNS),
    columns=sql.SQL(", ").join(sql.Identifier(c) for c in rows.STEP_COLUMNS),
    values=sql.SQL(", ").join(
        sql.SQL(
            "CASE WHEN c.n > 0 THEN (SELECT array_to_json(ARRAY("
            "SELECT sess.base + g FROM generate_series(1, c.n) AS g ORDER BY g"
            "))::text FROM sess WHERE sess.ord = c.ord) ELSE c.message_seqs END"
        )
        if col == "message_seqs"
        else sql.SQL("c.{}").format(sql.Identifier(col))
        for col in rows.STEP_COLUMNS
    ),
)
"""Every commit of a batch in one statement (``_WRITE_STEP``'s rules, a row of ``c``
per commit; a task and its step are looked up by primary key for each, ``LATERAL …
LIMIT 1`` with the other conditions outside, so that the plan, generic and made once on
whatever statistics there are, cannot become a scan of every running task or journaled
step): written where the lease holds and no step is journaled at that index yet;
then each session's counter (one row per session: one running task per session and one
commit per task here), its messages, the task's events (numbered after its last), the
step rows. One statement instead of one a commit: a send for the worker and a message,
a plan and an executor start for the server, each. A batch with a signal or with two
commits of one task (a turn's concurrent tool calls) keeps ``_WRITE_STEP``, one a commit
(``_one_statement``)."""
_WRITE_STEPS_TEXT = _WRITE_STEPS.as_string(None)


def _one_statement(commits: Sequence[types.StepCommit]) -> bool:
    """Whether the batch's writes fit ``_WRITE_STEPS``: no signal, one commit a task."""
    tasks = {c.step.task_id for c in commits}
    return len(tasks) == len(commits) and all(c.signal_seq is None for c in commits)


def _many_writes(all_values: Sequence[dict[str, Any]], now: float) -> dict[str, Any]:
    """``_WRITE_STEPS``' parameters: a column of arrays, one element a commit; the messages
    and events flattened, each with its commit's ``ord`` (from 1) and its place in it."""
    params: dict[str, Any] = {"now": now, "version": types.PAYLOAD_VERSION}
    for name, t in _BATCH_COLUMNS:
        column = [v[name] for v in all_values]
        params[f"c_{name}"] = (
            connection.text_array(column) if t == "text" else connection.number_array(column)
        )
    m_ord: list[int] = []
    m_pos: list[int] = []
    e_ord: list[int] = []
    e_pos: list[int] = []
    for k, v in enumerate(all_values, 1):
        m_ord.extend([k] * len(v["mpayloads"]))
        m_pos.extend(range(1, len(v["mpayloads"]) + 1))
        e_ord.extend([k] * len(v["enames"]))
        e_pos.extend(range(1, len(v["enames"]) + 1))
    params |= {
        "m_ord": connection.number_array(m_ord),
        "m_pos": connection.number_array(m_pos),
        "m_payload": connection.text_array(p for v in all_values for p in v["mpayloads"]),
        "e_ord": connection.number_array(e_ord),
        "e_pos": connection.number_array(e_pos),
        "e_name": connection.text_array(x for v in all_values for x in v["enames"]),
        "e_at": connection.number_array(x for v in all_values for x in v["eats"]),
        "e_step": connection.number_array(x for v in all_values for x in v["esteps"]),
        "e_data": connection.text_array(x for v in all_values for x in v["edatas"]),
    }
    return params


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
        done = await queries.run(
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
