"""``/v1/tasks/{id}/signals/{name}``, ``/approve``, ``/deny``: messages to waiting tasks.

A signal is kept until the task's ``wait_for_signal(name)`` consumes it; a task
waiting for it is due at once on any worker. Another tenant's task is 404, a finished
or cancelled one 409; nothing is stored when the answer is an error.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from tether.execution import signals
from tether.server import schemas
from tether.server.auth import State, Tenant
from tether.server.http_errors import WRITE_RESPONSES
from tether.server.path_ids import TaskIdPath

router = APIRouter(prefix="/v1/tasks", tags=["signals"])

_RESPONSES = {
    **WRITE_RESPONSES,
    409: {"model": schemas.ErrorBody, "description": "The task can no longer take this."},
}
SignalName = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}$",
        description="Letters, digits, `_ . : -`; at most 200 characters.",
    ),
]


@router.post(
    "/{task_id}/signals/{name}",
    status_code=202,
    response_model=schemas.SignalSent,
    responses=_RESPONSES,
    operation_id="sendSignal",
    summary="Send a signal to a task: its wait_for_signal(name) returns the data",
)
async def send_signal(
    task_id: TaskIdPath, name: SignalName, body: schemas.SignalSend, tenant: Tenant, state: State
) -> schemas.SignalSent:
    sent = await signals.send(state.store, task_id, name, body.data, tenant=tenant)
    state.metrics.observe_signal(signals.metric_name(sent.name))
    return schemas.SignalSent.of(sent)


@router.post(
    "/{task_id}/approve",
    status_code=202,
    response_model=schemas.SignalSent,
    responses=_RESPONSES,
    operation_id="approveToolCall",
    summary="Approve the tool call the task waits on (409 if it waits for none)",
)
async def approve(task_id: TaskIdPath, tenant: Tenant, state: State) -> schemas.SignalSent:
    sent = await signals.decide(state.store, task_id, approved=True, tenant=tenant)
    state.metrics.observe_signal(signals.metric_name(sent.name))
    return schemas.SignalSent.of(sent)


@router.post(
    "/{task_id}/deny",
    status_code=202,
    response_model=schemas.SignalSent,
    responses=_RESPONSES,
    operation_id="denyToolCall",
    summary="Deny the tool call the task waits on; the model reads the reason",
)
async def deny(
    task_id: TaskIdPath, body: schemas.Denial, tenant: Tenant, state: State
) -> schemas.SignalSent:
    sent = await signals.decide(
        state.store, task_id, approved=False, reason=body.reason, tenant=tenant
    )
    state.metrics.observe_signal(signals.metric_name(sent.name))
    return schemas.SignalSent.of(sent)
