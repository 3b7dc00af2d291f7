"""``/v1/sessions``: create a session, read it, its messages and its context; submit tasks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from tether import errors, types
from tether.context.view import context_view
from tether.server import input_fit, path_ids, schemas
from tether.server.auth import State, Tenant
from tether.server.http_errors import RESPONSES, WRITE_RESPONSES

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


def _links(param: str, operations: dict[str, str]) -> dict[str, Any]:
    """OpenAPI links: the id in this response feeds these operations' ``param``."""
    return {
        name: {"operationId": op, "parameters": {param: "$response.body#/id"}}
        for name, op in operations.items()
    }


_SESSION_LINKS = _links(
    "session_id",
    {
        "GetSession": "getSession",
        "SubmitTask": "submitTask",
        "ListMessages": "listMessages",
        "GetContext": "getContext",
    },
)
_TASK_LINKS = _links(
    "task_id",
    {"GetTask": "getTask", "StreamTaskEvents": "streamTaskEvents", "CancelTask": "cancelTask"},
)

_MAX_KEY_CHARS = 255
_MAX_TRACE_HEADER = 512


@router.post(
    "",
    status_code=201,
    response_model=schemas.Session,
    responses={201: {"links": _SESSION_LINKS}, **WRITE_RESPONSES},
    operation_id="createSession",
    summary="Start a session with an agent",
)
async def create_session(
    body: schemas.SessionCreate, tenant: Tenant, state: State, response: Response
) -> schemas.Session:
    if body.agent not in state.agents:
        raise errors.UnknownAgent(
            f"no agent named {body.agent!r} on this server; it serves {sorted(state.agents)}",
            tenant=tenant,
        )
    record = await state.store.create_session(tenant, body.agent)
    response.headers["Location"] = f"/v1/sessions/{record.id}"
    return schemas.Session.of(record)


@router.get(
    "/{session_id}",
    response_model=schemas.Session,
    responses=RESPONSES,
    operation_id="getSession",
    summary="A session",
)
async def get_session(
    session_id: path_ids.SessionIdPath, tenant: Tenant, state: State
) -> schemas.Session:
    return schemas.Session.of(await state.store.get_session(session_id, tenant=tenant))


@router.post(
    "/{session_id}/tasks",
    status_code=202,
    response_model=schemas.Task,
    operation_id="submitTask",
    responses={
        202: {"links": _TASK_LINKS},
        **WRITE_RESPONSES,
        409: {
            "model": schemas.ErrorBody,
            "description": "The Idempotency-Key was used for a different request.",
        },
    },
    summary="Submit a task (a user message) to a session",
)
async def submit_task(
    session_id: path_ids.SessionIdPath,
    body: schemas.TaskCreate,
    tenant: Tenant,
    state: State,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=_MAX_KEY_CHARS,
            description="Retries with the same key return the same task, never a second one.",
        ),
    ] = None,
) -> schemas.Task:
    session = await state.store.get_session(session_id, tenant=tenant)
    if session.agent not in state.agents:
        raise errors.UnknownAgent(
            f"session {session_id} belongs to agent {session.agent!r}, which this server does "
            f"not serve (it serves {sorted(state.agents)})",
            tenant=tenant,
        )
    too_long = input_fit.refusal(state.workflows.get(session.agent), body.input)
    if too_long is not None:
        raise errors.InvalidInput(too_long, tenant=tenant, session=session_id)
    new = types.NewTask(
        tenant=tenant,
        agent=session.agent,
        input=body.input,
        session_id=session_id,
        spec=state.specs.get(session.agent),
        idempotency_key=idempotency_key,
        trace_context=_trace_context(request),
    )
    try:
        task = await state.store.submit_task(new)
    except errors.Conflict:
        if idempotency_key is None:
            raise
        # a concurrent retry with the same key won the insert: return its task
        task = await state.store.submit_task(new)
    if idempotency_key is not None and (task.session_id != session_id or task.input != body.input):
        raise errors.Conflict(
            f"Idempotency-Key {idempotency_key!r} was already used for task {task.id} with a "
            "different session or input; use a fresh key for a new request",
            tenant=tenant,
        )
    state.on_submit()
    return schemas.Task.of(task)


@router.get(
    "/{session_id}/messages",
    response_model=schemas.MessagePage,
    responses=RESPONSES,
    operation_id="listMessages",
    summary="A session's messages, in order",
)
async def list_messages(
    session_id: path_ids.SessionIdPath,
    tenant: Tenant,
    state: State,
    after_seq: Annotated[
        int, Query(ge=0, le=schemas.MAX_SEQ, description="Only messages after this seq.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 100,
) -> schemas.MessagePage:
    found = await state.store.list_messages(
        session_id, tenant=tenant, after_seq=after_seq, limit=limit + 1
    )
    page = found[:limit]
    more = len(found) > limit
    return schemas.MessagePage(
        session_id=session_id,
        messages=[schemas.Message.of(m) for m in page],
        next_after_seq=page[-1].seq if more and page else None,
    )


@router.get(
    "/{session_id}/context",
    response_model=schemas.Context,
    responses=RESPONSES,
    operation_id="getContext",
    summary="A session's context: tokens used, limit, utilisation, summary",
)
async def get_context(
    session_id: path_ids.SessionIdPath, tenant: Tenant, state: State
) -> schemas.Context:
    session = await state.store.get_session(session_id, tenant=tenant)
    view = context_view(session.state)
    tokens = _int(view.get("tokens"))
    limit = _int(view.get("limit"))
    summary = view.get("summary") or {}
    return schemas.Context(
        session_id=session.id,
        tokens=tokens,
        limit=limit,
        utilisation=tokens / limit if tokens is not None and limit else None,
        summary=summary.get("text") if isinstance(summary, dict) else None,
        compactions=int(view.get("compactions_total") or 0),
        memory_messages=int(view.get("memory_messages") or 0),
        state=session.state,
    )


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _trace_context(request: Request) -> dict[str, str] | None:
    carrier = {
        name: value
        for name in ("traceparent", "tracestate")
        if (value := request.headers.get(name)) and len(value) <= _MAX_TRACE_HEADER
    }
    return carrier if "traceparent" in carrier else None
