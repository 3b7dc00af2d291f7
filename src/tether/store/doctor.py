"""``Store.doctor``'s checks, engine-neutral: the SQL each engine runs and what a result means.

``Store.doctor`` (``report``, a program run by either engine) does, in order:

1. ``schema_findings`` on its ``schema_migrations`` rows: a store newer than the code,
   an edited migration, or pending migrations are findings (and with no schema at
   all, nothing else is checked);
2. runs every ``Check`` in ``CHECKS`` whose tables exist, replacing ``{now}`` with its
   marker for the current time (the database clock where leases use it), and
   turns the rows (one ``ref`` column each, at most ``LIMIT`` of them) into a finding
   with ``Check.finding``;
3. ``payload_findings`` on the distinct ``payload_version`` values of each payload table.

The SQL is plain enough for SQLite and PostgreSQL alike. Every check reads whole
tables: doctor is an operator's tool, run by hand or from a cron job, not a hot path.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from tether import errors
from tether.store import json_check, migrations, payloads
from tether.store.base import Finding, Severity
from tether.store.program import DB_NOW, Program, Query

__all__ = [
    "CHECKS", "LIMIT", "PAYLOAD_TABLES", "Check", "data_findings", "payload_findings",
    "report", "schema_findings",
]  # fmt: skip

LIMIT = 20
"""Rows fetched per check: a finding names at most this many objects."""

PAYLOAD_TABLES: Mapping[str, payloads.Kind] = {
    "messages": "message",
    "steps": "step",
    "events": "event",
}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    severity: Severity
    what: str
    """What each row is, in the plural: ``tasks of unknown sessions``."""
    remedy: str
    sql: str
    """Returns one ``ref`` column (text) per problem, ``LIMIT`` rows at most."""
    count_sql: str
    """Returns one ``n`` column: how many problems in all."""
    tables: tuple[str, ...]

    def query(self, now_sql: str) -> str:
        return self.sql.replace("{now}", now_sql)

    def count_query(self, now_sql: str) -> str:
        return self.count_sql.replace("{now}", now_sql)

    def finding(self, refs: Sequence[str], count: int) -> Finding | None:
        if count == 0:
            return None
        shown = ", ".join(refs)
        more = f" and {count - len(refs)} more" if count > len(refs) else ""
        return Finding(
            check=self.name,
            severity=self.severity,
            message=f"{count} {self.what}: {shown}{more}; {self.remedy}",
            count=count,
            refs=tuple(refs),
        )


def _check(
    name: str,
    severity: Severity,
    what: str,
    remedy: str,
    *,
    ref: str,
    source: str,
    tables: tuple[str, ...],
) -> Check:
    return Check(
        name=name,
        severity=severity,
        what=what,
        remedy=remedy,
        sql=f"SELECT {ref} AS ref {source} ORDER BY 1 LIMIT {LIMIT}",
        count_sql=f"SELECT COUNT(*) AS n {source}",
        tables=tables,
    )


def _orphans(table: str, alias: str, ref: str, what: str) -> Check:
    """Rows of ``table`` whose ``task_id`` names no task."""
    return _check(
        f"orphaned_{table}",
        "error",
        f"{what} of unknown tasks",
        "the task they belong to was deleted by hand; restore it from a backup or delete "
        "these rows",
        ref=ref,
        source=f"FROM {table} {alias} WHERE NOT EXISTS "
        f"(SELECT 1 FROM tasks t WHERE t.id = {alias}.task_id)",
        tables=(table, "tasks"),
    )


_SEQ = "CAST(m.seq AS TEXT)"

CHECKS: tuple[Check, ...] = (
    _check(
        "orphaned_tasks",
        "error",
        "tasks of unknown sessions",
        "their session was deleted by hand; restore it from a backup or fail these tasks",
        ref="k.id",
        source="FROM tasks k WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = k.session_id)",
        tables=("tasks", "sessions"),
    ),
    _check(
        "orphaned_messages",
        "error",
        "messages of unknown sessions",
        "their session was deleted by hand; restore it from a backup or delete these rows",
        ref=f"m.session_id || ':' || {_SEQ}",
        source="FROM messages m WHERE NOT EXISTS "
        "(SELECT 1 FROM sessions s WHERE s.id = m.session_id)",
        tables=("messages", "sessions"),
    ),
    _check(
        "messages_of_unknown_tasks",
        "error",
        "messages written by unknown tasks",
        "the task that wrote them was deleted by hand; restore it from a backup",
        ref=f"m.session_id || ':' || {_SEQ}",
        source="FROM messages m WHERE m.task_id IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM tasks t WHERE t.id = m.task_id)",
        tables=("messages", "tasks"),
    ),
    _orphans("steps", "p", "p.task_id || ':' || CAST(p.idx AS TEXT)", "steps"),
    _orphans("step_attempts", "a", "a.task_id || ':' || CAST(a.idx AS TEXT)", "step attempts"),
    _orphans("task_runs", "r", "r.task_id || ':' || CAST(r.run AS TEXT)", "task runs"),
    _orphans("events", "e", "e.task_id || ':' || CAST(e.seq AS TEXT)", "events"),
    _orphans("signals", "g", "g.task_id || ':' || CAST(g.seq AS TEXT)", "signals"),
    _check(
        "session_last_seq",
        "error",
        "sessions whose last_seq disagrees with their messages",
        "a session's messages must be numbered 1..last_seq without gaps; restore the "
        "session from a backup (new messages would be written at the wrong seq)",
        ref="s.id",
        source="FROM sessions s WHERE s.last_seq <> "
        "(SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id) OR s.last_seq <> "
        "(SELECT COALESCE(MAX(m.seq), 0) FROM messages m WHERE m.session_id = s.id)",
        tables=("sessions", "messages"),
    ),
    _check(
        "expired_leases",
        "warning",
        "running tasks whose lease has expired",
        "no worker holds them: start a worker (`tether worker SPEC`) and it resumes them "
        "from their journals",
        ref="k.id",
        source="FROM tasks k WHERE k.status = 'running' AND k.lease_expires_at < {now}",
        tables=("tasks",),
    ),
    _check(
        "running_without_lease",
        "error",
        "running tasks without a lease owner or expiry",
        "no worker can recover them; `tether tasks cancel ID` them, or restore from a backup",
        ref="k.id",
        source="FROM tasks k WHERE k.status = 'running' AND "
        "(k.lease_owner IS NULL OR k.lease_expires_at IS NULL)",
        tables=("tasks",),
    ),
    _check(
        "lease_on_idle_task",
        "error",
        "tasks holding a lease while not running",
        "a lease is cleared whenever a task is released or finished; these rows were "
        "changed by hand: clear lease_owner and lease_expires_at",
        ref="k.id",
        source="FROM tasks k WHERE k.status <> 'running' AND k.lease_owner IS NOT NULL",
        tables=("tasks",),
    ),
    _check(
        "overdue_waits",
        "warning",
        "waiting tasks due more than a minute ago",
        "no worker has woken them (their signal came or their time passed): start a worker "
        "for their agent (`tether worker SPEC`) and it resumes them",
        ref="k.id",
        source="FROM tasks k WHERE k.status = 'waiting' AND k.wake_at < {now} - 60",
        tables=("tasks", "signals"),  # wake_at arrives with the signals table (0004)
    ),
    _check(
        "orphaned_memory",
        "error",
        "memory entries of unknown sessions",
        "their session was deleted by hand; delete these rows",
        ref=f"m.session_id || ':' || {_SEQ}",
        source="FROM memory m WHERE NOT EXISTS "
        "(SELECT 1 FROM sessions s WHERE s.id = m.session_id)",
        tables=("memory", "sessions"),
    ),
    _check(
        "langgraph_forked_threads",
        "error",
        "LangGraph checkpoints written by tether tasks beside another child of their parent",
        "a thread run as a tether task must form one chain; two writers forked it (a store "
        "changed by hand, or written without fencing): inspect the thread with "
        "TetherSaver.list and delete the stray branch",
        ref="c.thread_id || ':' || c.checkpoint_id",
        source="FROM langgraph_checkpoints c WHERE c.task_id IS NOT NULL"
        " AND c.parent_checkpoint_id IS NOT NULL AND EXISTS (SELECT 1 FROM"
        " langgraph_checkpoints o WHERE o.thread_id = c.thread_id"
        " AND o.checkpoint_ns = c.checkpoint_ns"
        " AND o.parent_checkpoint_id = c.parent_checkpoint_id"
        " AND o.checkpoint_id <> c.checkpoint_id)",
        tables=("langgraph_checkpoints",),
    ),
    _check(
        "langgraph_checkpoints_of_unknown_tasks",
        "warning",
        "LangGraph checkpoints written by unknown tasks",
        "the task that wrote them was deleted by hand; the thread still resumes from them",
        ref="c.thread_id || ':' || c.checkpoint_id",
        source="FROM langgraph_checkpoints c WHERE c.task_id IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM tasks t WHERE t.id = c.task_id)",
        tables=("langgraph_checkpoints", "tasks"),
    ),
    _check(
        "langgraph_writes_of_unknown_checkpoints",
        "warning",
        "LangGraph pending writes of unknown checkpoints",
        "their checkpoint was deleted without them; TetherSaver.prune([thread]) removes them",
        ref="w.thread_id || ':' || w.checkpoint_id",
        source="FROM langgraph_writes w WHERE NOT EXISTS (SELECT 1 FROM langgraph_checkpoints c"
        " WHERE c.thread_id = w.thread_id AND c.checkpoint_ns = w.checkpoint_ns"
        " AND c.checkpoint_id = w.checkpoint_id)",
        tables=("langgraph_writes", "langgraph_checkpoints"),
    ),
)


def applicable(existing: Collection[str]) -> list[Check]:
    """The checks whose tables all exist (``memory`` arrives with a later migration)."""
    return [c for c in CHECKS if all(t in existing for t in c.tables)]


def schema_findings(
    url: str,
    applied: Mapping[int, migrations.Applied],
    shipped: Sequence[migrations.Migration],
) -> list[Finding]:
    """The store's schema against the code: newer, edited, pending, or missing."""
    if not applied:
        return [
            Finding(
                check="schema",
                severity="error",
                message=f"store {migrations.redact(url)} has no tether schema: run "
                f"`tether migrate --store {migrations.redact(url)}` to create it",
            )
        ]
    try:
        todo = migrations.pending(url, applied, shipped)
    except errors.StoreVersionError as exc:
        return [Finding(check="schema", severity="error", message=exc.message)]
    if not todo:
        return []
    error = migrations.pending_error(url, max(applied), todo)
    return [
        Finding(
            check="pending_migrations",
            severity="error",
            message=error.message,
            count=len(todo),
            refs=tuple(m.label for m in todo),
        )
    ]


def payload_findings(versions: Mapping[str, Mapping[int, int]]) -> list[Finding]:
    """``versions``: per payload table, row counts by ``payload_version``. A version this
    code cannot read (newer, or no upcaster) is a finding naming the table."""
    out: list[Finding] = []
    for table, counts in versions.items():
        kind = PAYLOAD_TABLES[table]
        bad = {v: n for v, n in sorted(counts.items()) if not payloads.REGISTRY.readable(kind, v)}
        if not bad:
            continue
        newer = any(v > payloads.REGISTRY.current for v in bad)
        detail = ", ".join(f"{n} at version {v}" for v, n in bad.items())
        remedy = (
            "a newer tether wrote them: upgrade tether"
            if newer
            else "no release of tether wrote that format: restore the rows from a backup"
        )
        out.append(
            Finding(
                check="payload_versions",
                severity="error",
                message=f"table {table} holds rows this tether (payload version "
                f"{payloads.REGISTRY.current}) cannot read: {detail}; {remedy}",
                count=sum(bad.values()),
                refs=(table,),
            )
        )
    return out


def report(
    url: str, shipped: Sequence[migrations.Migration], tables_sql: str
) -> Program[list[Finding]]:
    """Every finding, steps 1 to 3; ``tables_sql`` lists the engine's tables."""
    found = schema_findings(url, (yield from migrations.applied(tables_sql)), shipped)
    if found and found[0].check == "schema":
        return found
    return found + (yield from data_findings(tables_sql))


def data_findings(tables_sql: str) -> Program[list[Finding]]:
    """Steps 2 and 3 above, as a program (``program``) run by either engine;
    ``tables_sql`` lists the engine's tables (one ``name`` column)."""
    existing = {r["name"] for r in (yield Query(tables_sql))}
    found: list[Finding] = []
    for check in applicable(existing):
        total = yield Query(check.count_query(DB_NOW))
        refs = yield Query(check.query(DB_NOW))
        finding = check.finding([str(r["ref"]) for r in refs], int(total[0]["n"]) if total else 0)
        if finding is not None:
            found.append(finding)
    versions: dict[str, dict[int, int]] = {}
    for table in PAYLOAD_TABLES:
        counted = yield Query(
            f"SELECT payload_version AS v, COUNT(*) AS n FROM {table} GROUP BY payload_version"
        )
        versions[table] = {int(r["v"]): int(r["n"]) for r in counted}
    for table in json_check.JSON_COLUMNS:
        found += json_check.findings(table, (yield Query(json_check.query(table))))
    return found + payload_findings(versions)
