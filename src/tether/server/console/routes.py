"""The console's routes under ``/console``: sign-in and sign-out, the pages, the live
fragments, and the two actions (cancel, resume), each a POST checked for CSRF."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tether import errors, types
from tether.execution.worker import worker_id_of
from tether.observe import process
from tether.server import keys, sse
from tether.server.console import (
    access,
    html,
    pages_overview,
    pages_session,
    pages_task,
    pages_tasks,
    params,
    session,
)
from tether.server.console.access import ConsoleError
from tether.server.state import ServerState, get_state
from tether.store import views

router = APIRouter(prefix="/console", include_in_schema=False)

State = Annotated[ServerState, Depends(get_state)]
Who = Annotated[session.Viewer, Depends(access.viewer)]
_MAX_KEY_CHARS = 512


def _page(body: str, code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=code, headers={"Cache-Control": "no-store"})


async def _task(state: ServerState, task_id: str, viewer: session.Viewer) -> types.TaskRecord:
    params.ident(task_id, "task")
    try:
        return await state.store.get_task(task_id, tenant=viewer.scope())
    except errors.NotFound as exc:
        raise ConsoleError(404, f"no task {task_id} for this key") from exc


# ---- sign-in -------------------------------------------------------------------------


@router.get("")
async def root() -> Response:
    return RedirectResponse("/console/", status_code=308)


def _login_page(next_path: str, message: str | None = None) -> str:
    form = html.Markup(
        '<form method="post" action="/console/login" class="login">'
        f'<input type="hidden" name="next" value="{html.esc(next_path)}">'
        '<label>API key <input type="password" name="key" id="key" autocomplete="off"'
        f' maxlength="{_MAX_KEY_CHARS}" required autofocus></label>'
        '<button type="submit" id="sign-in">Sign in</button></form>'
    )
    parts = [html.tag("p", message, class_="error")] if message else []
    hint = html.tag(
        "p",
        "A tenant key (`tether keys create --tenant T`) shows that tenant; an operator key "
        "(`tether keys create --operator`) shows every tenant.",
        class_="note",
    )
    return html.page("Sign in", [*parts, form, hint], None)


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/console/") and not value.startswith("//") and len(value) < 500:
        return value
    return "/console/"


@router.get("/login")
async def login_form(request: Request) -> HTMLResponse:
    return _page(_login_page(_safe_next(request.query_params.get("next"))))


@router.post("/login")
async def login(request: Request, state: State) -> Response:
    if not session.same_origin(request):
        raise ConsoleError(403, "refused: the sign-in form was posted from another site")
    fields = await access.form(request)
    key = fields.get("key", "").strip()
    next_path = _safe_next(fields.get("next"))
    found = None
    if key and len(key) <= _MAX_KEY_CHARS:
        found = await state.store.find_api_key(keys.hash_key(key))
    if found is None:
        return _page(_login_page(next_path, "unknown or revoked API key"), 401)
    value, _ = access.signer(request).issue(found.key_hash)
    response = RedirectResponse(next_path, status_code=303)
    session.set_cookie(response, value, request)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await access.checked_post(request)
    response = RedirectResponse("/console/login", status_code=303)
    session.clear_cookie(response)
    return response


# ---- pages ---------------------------------------------------------------------------


@router.get("/")
async def overview(viewer: Who, state: State) -> HTMLResponse:
    found = await state.store.overview(
        tenant=viewer.scope(), since=time.time() - pages_overview.WINDOW
    )
    merged: dict[str, views.WorkerLeases] = {}
    for w in found.workers:
        name = worker_id_of(w.worker)
        had = merged.get(name)
        expiry = min(filter(None, [w.next_expiry, had.next_expiry if had else None]), default=None)
        merged[name] = views.WorkerLeases(name, w.leases + (had.leases if had else 0), expiry)
    found = views.Overview(
        since=found.since, now=found.now, statuses=found.statuses, funnel=found.funnel,
        errors=found.errors, stuck=found.stuck, runs=found.runs, workers=list(merged.values()),
    )  # fmt: skip
    rss = process.rss_bytes()
    memory = {name: rss for name in state.local_workers()}
    if not viewer.operator:  # a tenant sees only the workers that hold its tasks
        memory = {k: v for k, v in memory.items() if k in merged}
    return _page(pages_overview.render(found, memory, viewer))


@router.get("/tasks")
async def tasks(request: Request, viewer: Who, state: State) -> HTMLResponse:
    lst = pages_tasks.listing(request.query_params, viewer)
    return _page(pages_tasks.render(lst, await pages_tasks.fetch(state.store, lst), viewer))


@router.get("/tasks/rows")
async def task_rows(request: Request, viewer: Who, state: State) -> HTMLResponse:
    lst = pages_tasks.listing(request.query_params, viewer)
    return _page(pages_tasks.rows(await pages_tasks.fetch(state.store, lst), viewer))


@router.get("/tasks/{task_id}")
async def task(task_id: str, request: Request, viewer: Who, state: State) -> HTMLResponse:
    found = await _task(state, task_id, viewer)
    query = request.query_params
    after = params.integer(query, "after", low=-1, high=2**31, default=-1)
    events_after = params.integer(query, "events_after", low=0, high=2**62, default=0)
    assert after is not None and events_after is not None
    page = await state.store.journal_page(
        task_id, tenant=viewer.scope(), after_index=after, limit=pages_task.STEP_PAGE
    )
    attempts = await state.store.list_attempts(task_id)
    if page.steps:
        lo, hi = page.steps[0].index, page.steps[-1].index
        attempts = [a for a in attempts if lo <= a.index <= hi]
    runs = await state.store.list_runs(task_id)
    found_events = await state.store.list_events(
        task_id, tenant=viewer.scope(), after_seq=events_after, limit=pages_task.EVENT_PAGE
    )
    return _page(
        pages_task.render(found, page, after, attempts, runs, found_events, events_after, viewer)
    )


@router.get("/tasks/{task_id}/events")
async def task_events(
    task_id: str, request: Request, viewer: Who, state: State
) -> sse.EventStreamResponse:
    found = await _task(state, task_id, viewer)
    last = params.integer(request.query_params, "after", low=0, high=2**62, default=0) or 0
    resumed = request.headers.get("last-event-id", "")
    if resumed.isdigit() and len(resumed) < 19:  # EventSource reconnecting
        last = max(last, int(resumed))
    return sse.EventStreamResponse(
        sse.stream(state.store, state.lifecycle, state.config, task_id, found.tenant, last)
    )


@router.get("/tasks/{task_id}/steps/{which}")
async def step_value(task_id: str, which: str, viewer: Who, state: State) -> HTMLResponse:
    found = await _task(state, task_id, viewer)
    if which == "input":
        return _page(pages_task.render_value(found, "Input", found.input, viewer))
    if which == "output":
        return _page(pages_task.render_value(found, "Output", found.output, viewer))
    if not which.isdigit() or len(which) > 10:
        raise ConsoleError(404, f"no step {which[:20]!r}: a step is its index (0, 1, …)")
    index = int(which)
    # the step and the few before it: a tool step's arguments are in the model step
    # that called it, just before
    before = max(index - pages_task.LOOK_BACK, 0)
    page = await state.store.journal_page(
        task_id, tenant=viewer.scope(), after_index=before - 1, limit=index - before + 1
    )
    if not page.steps or page.steps[-1].index != index:
        raise ConsoleError(404, f"task {task_id} has no step {index} (it has {page.total})")
    s = page.steps[-1]
    value = {"index": s.index, "kind": s.kind, "name": s.name, "status": s.status,
             "input": pages_task.step_input(s, page.steps), "output": s.output,
             "error": s.error, "fingerprint": s.fingerprint}  # fmt: skip
    return _page(pages_task.render_value(found, f"Step {index}", value, viewer))


@router.post("/tasks/{task_id}/cancel")
async def cancel(task_id: str, request: Request, state: State) -> Response:
    viewer, _ = await access.checked_post(request)
    await _task(state, task_id, viewer)
    await state.store.request_cancel(task_id, tenant=viewer.scope())
    return RedirectResponse(f"/console/tasks/{task_id}", status_code=303)


@router.post("/tasks/{task_id}/resume")
async def resume(task_id: str, request: Request, state: State) -> Response:
    """Hand a running task to any worker now: its lease expires, and the next claim
    resumes it from its journal (a recovery), as when a worker dies."""
    viewer, _ = await access.checked_post(request)
    found = await _task(state, task_id, viewer)
    if found.status != "running":
        raise ConsoleError(409, f"task {task_id} is {found.status}, not running: nothing to resume")
    await state.store.expire_lease(task_id)
    state.on_submit()
    return RedirectResponse(f"/console/tasks/{task_id}", status_code=303)


@router.get("/sessions/{session_id}")
async def session_page(
    session_id: str, request: Request, viewer: Who, state: State
) -> HTMLResponse:
    params.ident(session_id, "session")
    scope = viewer.scope()
    try:
        record = await state.store.get_session(session_id, tenant=scope)
    except errors.NotFound as exc:
        raise ConsoleError(404, f"no session {session_id} for this key") from exc
    after = params.integer(request.query_params, "after", low=0, high=2**62, default=0) or 0
    messages = await state.store.list_messages(
        session_id, tenant=scope, after_seq=after, limit=pages_session.MESSAGE_PAGE
    )
    found_tasks = await state.store.list_tasks(session_id=session_id, tenant=scope, limit=100)
    compactions = await state.store.session_events(session_id, "context.compacted", tenant=scope)
    memory = await state.store.list_memory(session_id)
    return _page(
        pages_session.render(record, messages, after, found_tasks, compactions, memory, viewer)
    )
