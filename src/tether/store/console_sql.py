"""The console's read-only views (``Store.page_tasks``, ``journal_page``,
``session_events``, ``overview``), written once for both engines as programs
(``program``): their queries, and their rows shaped.

Every query is bounded: pages by ``LIMIT`` on an index (keyset on ``tasks.position``,
``steps (task_id, idx)``), the overview by the window's first task position
(``tasks_by_created``) and fixed caps on its lists.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from tether import errors, types
from tether.store import reads, rows, views
from tether.store.dialect import Dialect
from tether.store.program import DB_NOW, Program, Query
from tether.store.transitions import task_row

LIST_CAP = 50
"""Longest list the overview returns (stuck tasks, recent runs)."""
ERROR_ROWS = 5000
"""Most error rows the overview reads to count errors by class."""
FUNNEL_CAP = 100
"""Step indexes from here on are counted together (as metrics cap ``step`` at 100+)."""
NO_POSITION = 2**62


# A time bound becomes a position bound by one seek in ``tasks_by_created``: the position
# of the first task created at or after ``since`` (of the last one before ``until``).
# Submission order and creation time agree (both are taken when the row is inserted), so
# the bound is exact; were two writers' clocks apart, a task submitted within that skew
# of a window's edge could fall outside it. (``MIN(position)`` would be exact under any
# skew, but SQLite answers it by walking the whole table in position order.)
_FIRST_SINCE = (
    "SELECT position FROM tasks WHERE created_at >= :since ORDER BY created_at, position LIMIT 1"
)
_LAST_BEFORE = (
    "SELECT position FROM tasks WHERE created_at < :until"
    " ORDER BY created_at DESC, position DESC LIMIT 1"
)


def check_limit(limit: int) -> None:
    if not 1 <= limit <= views.MAX_PAGE:
        raise errors.InvalidInput(f"a page holds 1 to {views.MAX_PAGE} rows, {limit} were asked")


def _tenant(params: dict[str, Any], tenant: str | None, column: str = "tenant") -> str:
    if tenant is None:
        return ""
    params["tenant"] = tenant
    return f" AND {column} = :tenant"


def task_page(query: views.TaskQuery, before: int | None, limit: int) -> Query:
    """Newest first, ``limit + 1`` rows (the extra one says another page exists)."""
    check_limit(limit)
    params: dict[str, Any] = {"limit": limit + 1}
    where = ["1 = 1"]
    for column in ("tenant", "agent", "status", "session_id"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if before is not None:
        where.append("position < :before")
        params["before"] = before
    if query.since is not None:
        # a bound on position lets the scan stop at the window's start
        where.append("created_at >= :since")
        where.append(f"position >= COALESCE(({_FIRST_SINCE}), {NO_POSITION})")
        params["since"] = query.since
    if query.until is not None:
        where.append("created_at < :until")
        where.append(f"position <= COALESCE(({_LAST_BEFORE}), 0)")
        params["until"] = query.until
    sql = f"SELECT * FROM tasks WHERE {' AND '.join(where)} ORDER BY position DESC LIMIT :limit"
    return Query(sql, params)


def shape_task_page(found: list[Any], limit: int) -> views.TaskPage:
    page = found[:limit]
    more = len(found) > limit
    positions = [int(r["position"]) for r in page]
    return views.TaskPage(
        tasks=[rows.task(r) for r in page],
        next_before=positions[-1] if more and positions else None,
        positions=positions,
    )


def page_tasks(query: views.TaskQuery, before: int | None, limit: int) -> Program[views.TaskPage]:
    return shape_task_page((yield task_page(query, before, limit)), limit)


def journal_page(
    dialect: Dialect, task_id: str, tenant: str | None, after_index: int, limit: int
) -> Program[views.JournalPage]:
    task = yield from task_row(task_id, tenant)
    page, count = journal_queries(task_id, after_index, limit)
    found = yield page
    steps = yield from reads.steps_with_messages(dialect, task["session_id"], found)
    last = yield count
    return views.JournalPage(steps=steps, total=int(last[0]["n"]) if last else 0)


def session_events(
    session_id: str, name: str, tenant: str | None, limit: int
) -> Program[list[types.EventRecord]]:
    """The session's events named ``name``, oldest first."""
    check_limit(limit)
    yield from reads.session_row(session_id, tenant)
    found = yield Query(
        "SELECT e.* FROM tasks t JOIN events e ON e.task_id = t.id"
        " WHERE t.session_id = :session AND e.name = :name ORDER BY e.at, e.seq LIMIT :limit",
        {"session": session_id, "name": name, "limit": limit},
    )
    return [rows.event(r) for r in found]


def overview(tenant: str | None, since: float) -> Program[views.Overview]:
    """The overview of the window from ``since`` to the store's clock now."""
    clock = yield Query(f"SELECT {DB_NOW} AS now")
    now = float(clock[0]["now"])
    first = (yield window_start(since))[0]["first"]
    parts = overview_queries(NO_POSITION if first is None else int(first), since, now, tenant)
    found: dict[str, list[rows.Row]] = {}
    for name, query in parts.items():
        found[name] = yield query
    return shape_overview(since, now, found)


def journal_queries(task_id: str, after_index: int, limit: int) -> tuple[Query, Query]:
    """The page of steps, and the task's step count (its highest index + 1; no row: 0)."""
    check_limit(limit)
    params = {"task": task_id, "after": after_index, "limit": limit}
    return (
        Query(
            "SELECT * FROM steps WHERE task_id = :task AND idx > :after ORDER BY idx LIMIT :limit",
            params,
        ),
        # the last index through the primary key: one seek, where MAX() in an
        # expression would read every step of the task
        Query(
            "SELECT idx + 1 AS n FROM steps WHERE task_id = :task ORDER BY idx DESC LIMIT 1",
            {"task": task_id},
        ),
    )


def window_start(since: float) -> Query:
    """The first task position of the window (tasks created at ``since`` or later); its
    ``first`` is NULL for an empty window (``NO_POSITION`` then)."""
    return Query(f"SELECT ({_FIRST_SINCE}) AS first", {"since": since})


def _capped(column: str) -> str:
    return f"CASE WHEN {column} >= {FUNNEL_CAP} THEN {FUNNEL_CAP} ELSE {column} END"


def overview_queries(first: int, since: float, now: float, tenant: str | None) -> dict[str, Query]:
    """The overview's queries, by part; ``first`` comes from ``window_start``."""
    p: dict[str, Any] = {
        "first": first,
        "since": since,
        "now": now,
        "cap": LIST_CAP,
        "errors": ERROR_ROWS,
    }
    scope = _tenant(p, tenant, "t.tenant")
    return {
        "statuses": Query(
            "SELECT t.agent, t.status, COUNT(*) AS n FROM tasks t WHERE t.position >= :first"
            f"{scope} GROUP BY t.agent, t.status ORDER BY t.agent, t.status",
            p,
        ),
        # started: tasks with a stored step.started event; completed: tasks whose
        # journal holds the step as completed (its step.completed event can be lost
        # with a lease, the journal row cannot)
        "funnel": Query(
            "SELECT agent, step, SUM(started) AS started, SUM(completed) AS completed FROM ("
            f" SELECT t.agent AS agent, {_capped('e.step')} AS step,"
            " COUNT(DISTINCT e.task_id) AS started, 0 AS completed"
            " FROM tasks t JOIN events e ON e.task_id = t.id"
            " WHERE t.position >= :first AND e.name = 'step.started' AND e.step IS NOT NULL"
            f"{scope} GROUP BY 1, 2"
            " UNION ALL"
            f" SELECT t.agent AS agent, {_capped('s.idx')} AS step,"
            " 0 AS started, COUNT(DISTINCT s.task_id) AS completed"
            " FROM tasks t JOIN steps s ON s.task_id = t.id"
            f" WHERE t.position >= :first AND s.status = 'completed'{scope} GROUP BY 1, 2"
            ") AS both_counts GROUP BY agent, step ORDER BY agent, step",
            p,
        ),
        "retry_errors": Query(
            "SELECT a.error FROM step_attempts a JOIN tasks t ON t.id = a.task_id"
            f" WHERE a.at >= :since{scope} LIMIT :errors",
            p,
        ),
        "task_errors": Query(
            "SELECT t.error FROM tasks t WHERE t.position >= :first AND t.status = 'failed'"
            f" AND t.error IS NOT NULL{scope} LIMIT :errors",
            p,
        ),
        "expired": Query(
            "SELECT t.id, t.tenant, t.agent, t.lease_owner, t.lease_expires_at,"
            " (SELECT COUNT(*) FROM steps s WHERE s.task_id = t.id) AS step"
            " FROM tasks t WHERE t.status = 'running' AND t.lease_expires_at < :now"
            f"{scope} ORDER BY t.lease_expires_at LIMIT :cap",
            p,
        ),
        "stuck_events": Query(
            "SELECT t.id, t.tenant, t.agent, e.step, e.at, e.data, e.payload_version,"
            " e.task_id, e.seq, e.name"
            " FROM tasks t JOIN events e ON e.task_id = t.id"
            f" WHERE t.position >= :first AND e.name = 'step.stuck'{scope}"
            " ORDER BY e.at DESC LIMIT :cap",
            p,
        ),
        "runs": Query(
            "SELECT r.* FROM task_runs r JOIN tasks t ON t.id = r.task_id"
            f" WHERE r.started_at >= :since AND r.reason <> 'start'{scope}"
            " ORDER BY r.started_at DESC LIMIT :cap",
            p,
        ),
        "workers": Query(
            "SELECT t.lease_owner AS worker, COUNT(*) AS n, MIN(t.lease_expires_at) AS expiry"
            " FROM tasks t WHERE t.status = 'running' AND t.lease_owner IS NOT NULL"
            f"{scope} GROUP BY t.lease_owner ORDER BY t.lease_owner LIMIT 2000",
            p,
        ),
    }


def _error_counts(source: str, found: Iterable[Any], column: str) -> list[views.ErrorCount]:
    counts: Counter[tuple[str, str]] = Counter()
    for r in found:
        error = rows.loads(r[column])
        if isinstance(error, dict):
            counts[(str(error.get("type", "?")), str(error.get("error_class", "?")))] += 1
    return [
        views.ErrorCount(source=source, type=t, error_class=c, count=n)
        for (t, c), n in counts.most_common()
    ]


def shape_overview(since: float, now: float, found: Mapping[str, list[Any]]) -> views.Overview:
    stuck = [
        views.StuckTask(
            task_id=r["id"],
            tenant=r["tenant"],
            agent=r["agent"],
            worker=r["lease_owner"],
            step=int(r["step"]),
            since=float(r["lease_expires_at"]),
            why="lease expired: its worker stopped renewing (a worker will recover it)",
        )
        for r in found["expired"]
    ]
    for r in found["stuck_events"]:
        ev = rows.event(r)
        stuck.append(
            views.StuckTask(
                task_id=r["id"],
                tenant=r["tenant"],
                agent=r["agent"],
                worker=ev.data.get("worker"),
                step=ev.step,
                since=ev.at,
                why="step.stuck: the step went silent past its heartbeat timeout",
            )
        )
    return views.Overview(
        since=since,
        now=now,
        statuses=[
            views.StatusCount(agent=r["agent"], status=r["status"], count=int(r["n"]))
            for r in found["statuses"]
        ],
        funnel=[
            views.FunnelStep(
                agent=r["agent"],
                step=int(r["step"]),
                started=max(int(r["started"]), int(r["completed"])),
                completed=int(r["completed"]),
            )
            for r in found["funnel"]
        ],
        errors=_error_counts("task", found["task_errors"], "error")
        + _error_counts("retry", found["retry_errors"], "error"),
        stuck=stuck,
        runs=[rows.run(r) for r in found["runs"]],
        workers=[
            views.WorkerLeases(
                worker=r["worker"],
                leases=int(r["n"]),
                next_expiry=None if r["expiry"] is None else float(r["expiry"]),
            )
            for r in found["workers"]
        ],
    )
