"""``/v1/tasks/{id}``: read a task with its steps, follow its events, cancel it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from tether.server import path_ids, schemas, sse
from tether.server.auth import State, Tenant
from tether.server.http_errors import RESPONSES, as_json
from tether.store.base import ApiKey

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


@router.get(
    "/{task_id}",
    response_model=schemas.TaskDetail,
    responses=RESPONSES,
    operation_id="getTask",
    summary="A task, with its steps",
)
async def get_task(
    task_id: path_ids.TaskIdPath, tenant: Tenant, state: State
) -> schemas.TaskDetail:
    task = await state.store.get_task(task_id, tenant=tenant)
    journal = await state.store.load_journal(task_id)
    return schemas.TaskDetail(
        **schemas.Task.of(task).model_dump(), steps=[schemas.Step.of(s) for s in journal]
    )


@router.get(
    "/{task_id}/events",
    status_code=200,
    response_class=sse.EventStreamResponse,
    operation_id="streamTaskEvents",
    responses={
        200: {
            "description": "Server-Sent Events: each `id:` is the event's seq; the stream "
            "ends with `stream.end` when the task has ended, or `stream.reconnect` when "
            "the client should resume with `Last-Event-ID`.",
            "content": {"text/event-stream": {"schema": sse.EVENT_SCHEMA}},
        },
        **as_json(RESPONSES),
        **as_json(
            {
                429: {
                    "description": "This API key holds the most event streams it may; "
                    "retry after `Retry-After` seconds."
                }
            }
        ),
    },
    summary="Follow a task's events (Server-Sent Events, resumable)",
)
async def task_events(
    task_id: path_ids.TaskIdPath,
    tenant: Tenant,
    state: State,
    request: Request,
    last_event_id: Annotated[
        int,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=schemas.MAX_SEQ,
            description="Resume after this event (the last `id:` received); 0: from the start.",
        ),
    ] = 0,
) -> sse.EventStreamResponse:
    await state.store.get_task(task_id, tenant=tenant)  # 404 before the stream starts
    key: ApiKey = request.state.api_key
    state.streams.take(key.id)  # 429 past the key's cap

    async def authorized() -> bool:
        return await state.store.find_api_key(key.key_hash) is not None

    return sse.EventStreamResponse(
        sse.stream(
            state.store, state.lifecycle, state.config, task_id, tenant, last_event_id, authorized
        ),
        on_close=lambda: state.streams.give_back(key.id),
    )


@router.post(
    "/{task_id}/cancel",
    status_code=202,
    response_model=schemas.Task,
    responses=RESPONSES,
    operation_id="cancelTask",
    summary="Cancel a task: a queued one at once, a running one at its next step boundary",
)
async def cancel_task(task_id: path_ids.TaskIdPath, tenant: Tenant, state: State) -> schemas.Task:
    return schemas.Task.of(await state.store.request_cancel(task_id, tenant=tenant))
