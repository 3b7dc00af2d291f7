"""New sessions and submitted tasks, the store's rules for every engine (programs,
``program``): ids are never reused, and a task submitted again with the same
idempotency key (per tenant) is the task submitted first, also when two submits race."""

from __future__ import annotations

from typing import Any

from tether import errors, types
from tether.store import ids, rows
from tether.store.program import Notify, Program, Query, one
from tether.store.reads import session_row

_BY_KEY = "SELECT * FROM tasks WHERE tenant = :tenant AND idempotency_key = :key"


def insert_session(tenant: str, agent: str, session_id: str) -> Program[rows.Row]:
    now = types.now()
    found = yield Query(
        "INSERT INTO sessions (id, tenant, agent, created_at, updated_at)"
        " VALUES (:id, :tenant, :agent, :now, :now) ON CONFLICT (id) DO NOTHING RETURNING *",
        {"id": session_id, "tenant": tenant, "agent": agent, "now": now},
    )
    row = one(found)
    if row is None:
        raise errors.Conflict(
            "a session with this id already exists; pass session_id=None for a fresh id",
            session=session_id,
        )
    return row


def create_session(tenant: str, agent: str, session_id: str) -> Program[types.SessionRecord]:
    return rows.session((yield from insert_session(tenant, agent, session_id)))


def submit(new: types.NewTask) -> Program[types.TaskRecord]:
    """Queue a task (in a new session unless one is named); wake idle workers."""
    if new.idempotency_key is not None:
        same = one((yield Query(_BY_KEY, {"tenant": new.tenant, "key": new.idempotency_key})))
        if same is not None:
            return rows.task(same)
    yield Query("SAVEPOINT tether_submit")  # a lost race leaves nothing behind
    try:
        row = yield from _insert_task(new)
    except _KeyTaken as taken:  # a concurrent submit with the same key committed first
        yield Query("ROLLBACK TO SAVEPOINT tether_submit")
        yield Query("RELEASE SAVEPOINT tether_submit")
        return rows.task(taken.row)
    yield Query("RELEASE SAVEPOINT tether_submit")
    yield Notify(new.agent)
    return rows.task(row)


class _KeyTaken(Exception):
    def __init__(self, row: rows.Row) -> None:
        super().__init__(row["id"])
        self.row = row


def _insert_task(new: types.NewTask) -> Program[rows.Row]:
    session_id = new.session_id
    if session_id is None:
        session_id = ids.new_id()
        yield from insert_session(new.tenant, new.agent, session_id)
    else:
        yield from session_row(session_id, new.tenant)
    task_id = new.task_id or ids.new_id()
    now = types.now()
    values: dict[str, Any] = {
        "id": task_id, "tenant": new.tenant, "session_id": session_id, "agent": new.agent,
        "input": new.input, "spec": new.spec, "key": new.idempotency_key,
        "trace": rows.dumps_opt(new.trace_context, "trace context"), "now": now,
    }  # fmt: skip
    found = yield Query(
        "INSERT INTO tasks (id, tenant, session_id, agent, status, input, spec, idempotency_key,"
        " trace_context, created_at, updated_at) VALUES (:id, :tenant, :session_id, :agent,"
        " 'queued', :input, :spec, :key, :trace, :now, :now) ON CONFLICT DO NOTHING RETURNING *",
        values,
    )
    row = one(found)
    if row is not None:
        return row
    if new.idempotency_key is not None:
        same = one((yield Query(_BY_KEY, {"tenant": new.tenant, "key": new.idempotency_key})))
        if same is not None:
            raise _KeyTaken(same)
    raise errors.Conflict(
        "a task with this id already exists; submit without task_id for a fresh id",
        tenant=new.tenant,
        task=task_id,
    )
