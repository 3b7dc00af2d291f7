"""The console's answers to a waiting task: approve or deny the tool call it waits on,
or send the signal it waits for. Each is a POST checked for CSRF, scoped to the
viewer's tenant (another tenant's task is 404), and goes through
``execution.signals``, the door the API and the CLI use.

A form names the wait it answers (``wait``: the signal name shown on the page); when
the task waits for something else by now (the page is stale), the answer is refused
with 409 rather than given to a call the operator did not see.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from tether import errors, types
from tether.execution import signals
from tether.server import http_errors
from tether.server.console import access, params
from tether.server.console.access import ConsoleError
from tether.server.state import ServerState, get_state

router = APIRouter(prefix="/console", include_in_schema=False)

MAX_REASON_CHARS = 1000


async def _waiting_task(
    request: Request, task_id: str
) -> tuple[ServerState, str | None, types.TaskRecord, dict[str, str]]:
    """The checked POST's viewer scope, the task it may see, and the form's fields."""
    viewer, fields = await access.checked_post(request)
    params.ident(task_id, "task")
    state = get_state(request)
    try:
        task = await state.store.get_task(task_id, tenant=viewer.scope())
    except errors.NotFound as exc:
        raise ConsoleError(404, f"no task {task_id} for this key") from exc
    shown = fields.get("wait", "")
    wait = task.wait or {}
    now = wait.get("name") if task.status == "waiting" and wait.get("kind") == "signal" else None
    if not shown or shown != now:
        what = f"waits for {now!r}" if now else f"is {task.status}"
        raise ConsoleError(
            409, f"task {task_id} {what}, not what this page showed; reload it and answer again"
        )
    return state, viewer.scope(), task, fields


async def _sent(state: ServerState, task_id: str, send: Any) -> Response:
    try:
        sent = await send
    except errors.TetherError as exc:
        raise ConsoleError(http_errors.status_of(exc), exc.detail) from exc
    state.metrics.observe_signal(signals.metric_name(sent.name))
    return RedirectResponse(f"/console/tasks/{task_id}", status_code=303)


@router.post("/tasks/{task_id}/approve")
async def approve(task_id: str, request: Request) -> Response:
    state, scope, _, _ = await _waiting_task(request, task_id)
    return await _sent(
        state, task_id, signals.decide(state.store, task_id, approved=True, tenant=scope)
    )


@router.post("/tasks/{task_id}/deny")
async def deny(task_id: str, request: Request) -> Response:
    state, scope, _, fields = await _waiting_task(request, task_id)
    reason = fields.get("reason", "").strip()
    if not reason or len(reason) > MAX_REASON_CHARS:
        raise ConsoleError(
            400,
            f"a denial needs a reason of 1 to {MAX_REASON_CHARS} characters: the model reads it",
        )
    return await _sent(
        state,
        task_id,
        signals.decide(state.store, task_id, approved=False, reason=reason, tenant=scope),
    )


@router.post("/tasks/{task_id}/signal")
async def send_signal(task_id: str, request: Request) -> Response:
    state, scope, task, fields = await _waiting_task(request, task_id)
    name = fields["wait"]
    if name.startswith(signals.APPROVAL_PREFIX):
        raise ConsoleError(409, f"task {task_id} waits for an approval: approve or deny it")
    text = fields.get("data", "").strip()
    try:
        data = json.loads(text) if text else None
    except json.JSONDecodeError as exc:
        raise ConsoleError(400, f"the data is not JSON ({exc.msg}); send JSON, or nothing") from exc
    return await _sent(state, task_id, signals.send(state.store, task.id, name, data, tenant=scope))
