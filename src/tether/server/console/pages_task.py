"""One task: its state, error, runs, step timeline (a page of steps at a time), and
events (followed live through the task's event stream)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from tether import types
from tether.server.console import html, pages_waiting
from tether.server.console.session import Viewer
from tether.store import views

STEP_PAGE = 100
EVENT_PAGE = 200
LOOK_BACK = 32
"""Steps before a tool step searched for the model step that called it."""
CLIP = 600
"""Characters of a step's input or output shown inline; the rest is one click away."""

ADVICE = {
    "tool": "a tool failed: read its message, check the tool's own logs and inputs; "
    "fix the tool or its arguments, then resubmit",
    "model": "the model endpoint failed or refused: check its URL, key, limits and "
    "status; retryable ones were already retried with backoff",
    "agent": "the agent's own logic stopped it (limits, budget, non-determinism): "
    "read the message; raise the limit or fix the workflow and resubmit",
    "infra": "the store or a worker failed: check `tether doctor` and the workers' logs; "
    "the task resumes from its journal once the store is back",
    "input": "the request was invalid: fix the input named in the message and resubmit",
}


def _ran_in(index: int, runs: list[types.TaskRun]) -> tuple[types.TaskRun | None, int]:
    """The last run that started at or before ``index`` before any run started after it
    ran it; the runs that started later than ``index`` replayed it."""
    ran: types.TaskRun | None = None
    replays = 0
    for r in runs:
        if r.from_step > index:
            replays += 1
        elif replays == 0:
            ran = r
    return ran, replays


def _tool_arguments(steps: list[types.StepRecord]) -> dict[str, Any]:
    """Tool-call id → the arguments a model step asked for (this page's model steps)."""
    found: dict[str, Any] = {}
    for s in steps:
        if s.kind != "model" or not isinstance(s.output, dict):
            continue
        message = s.output.get("message") or {}
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and "id" in call:
                found[str(call["id"])] = {
                    "name": call.get("name"),
                    "arguments": call.get("arguments"),
                }
    return found


def step_input(s: types.StepRecord, around: list[types.StepRecord]) -> Any:
    """What is known of a step's input: a tool step's call (from the model step that
    made it, among ``around``); otherwise only its fingerprint is journaled."""
    if s.kind == "tool" and isinstance(s.output, dict):
        call = _tool_arguments(around).get(str(s.output.get("tool_call_id")))
        if call is not None:
            return call
    if s.kind == "model" and s.message_seqs:
        return f"the session's messages up to seq {s.message_seqs[0] - 1}"
    return f"not journaled (fingerprint {s.fingerprint})"


def _step_input(s: types.StepRecord, args: dict[str, Any], task: types.TaskRecord) -> html.Markup:
    if s.kind == "tool" and isinstance(s.output, dict) and s.output.get("tool_call_id") in args:
        return _clipped(args[s.output["tool_call_id"]], f"/console/tasks/{task.id}/steps/{s.index}")
    if s.kind == "model" and s.message_seqs:
        upto = s.message_seqs[0] - 1
        return html.join(
            [
                f"the session's messages up to seq {upto} ",
                html.link(_messages_before(task.session_id, upto), "(read them)"),
            ]
        )
    return html.tag("span", f"fingerprint {s.fingerprint[:16]}", class_="mono dim")


def _messages_before(session_id: str, upto: int) -> str:
    """The session page showing the last messages up to ``upto`` (pages hold 200)."""
    after = max(upto - 20, 0)
    return html.url(f"/console/sessions/{session_id}", {"after": after or None}) + f"#seq-{upto}"


def _clipped(value: Any, full: str) -> html.Markup:
    text, cut = html.clip(html.pretty(value), CLIP)
    out = [html.tag("pre", text)]
    if cut:
        out.append(html.link(full, "show all", class_="full"))
    return html.join(out)


def _timeline(
    task: types.TaskRecord,
    page: views.JournalPage,
    attempts: list[types.StepAttempt],
    runs: list[types.TaskRun],
) -> html.Markup:
    steps = page.steps
    if not steps:
        return html.tag("p", "no steps journaled yet", class_="empty")
    t0 = min(s.started_at for s in steps)
    span = max(max(s.finished_at for s in steps) - t0, 1e-6)
    by_step: dict[int, list[types.StepAttempt]] = defaultdict(list)
    for a in attempts:
        by_step[a.index].append(a)
    ordered = sorted(runs, key=lambda r: r.run)
    args = _tool_arguments(steps)
    out = []
    for s in steps:
        duration = max(s.finished_at - s.started_at, 0.0)
        left = (s.started_at - t0) / span * 100
        width = max(duration / span * 100, 0.4)
        bar = html.Markup(
            f'<div class="track"><div class="bar st-{html.esc(s.status)}"'
            f' style="left:{left:.2f}%;width:{min(width, 100 - left):.2f}%"'
            f' title="{html.esc(html.seconds(duration))}"></div></div>'
        )
        ran, replays = _ran_in(s.index, ordered)
        ran_text = (
            f"ran in run {ran.run} on {ran.worker}" if ran else f"ran on {s.worker or '?'}"
        ) + (f"; replayed by {replays} later run(s)" if replays else "")
        tries = [
            html.tag(
                "li",
                f"attempt {a.attempt}: {a.error.get('error_class')} ({a.error.get('type')}): "
                f"{a.error.get('message', '')}; retried after {a.delay:.2f} s",
            )
            for a in by_step.get(s.index, [])
        ]
        detail = [
            html.tag("div", [html.tag("b", "input "), _step_input(s, args, task)]),
            html.tag(
                "div",
                [
                    html.tag("b", "output "),
                    _clipped(s.output, f"/console/tasks/{task.id}/steps/{s.index}"),
                ],
            ),
        ]
        if s.error:
            detail.append(html.tag("div", [html.tag("b", "error "), _error_line(s.error)]))
        if s.usage:
            detail.append(
                html.tag(
                    "div",
                    f"tokens: {s.usage.prompt_tokens} prompt, "
                    f"{s.usage.completion_tokens} completion",
                    class_="dim",
                )
            )
        out.append(
            html.tag(
                "div",
                [
                    html.tag(
                        "div",
                        [
                            html.tag("span", f"#{s.index}", class_="idx"),
                            html.tag("span", s.kind, class_="kind"),
                            html.tag("span", s.name, class_="name"),
                            html.badge(s.status),
                            bar,
                            html.tag("span", html.seconds(duration), class_="dur"),
                            html.tag(
                                "span",
                                f"{s.attempts} attempt{'s' if s.attempts != 1 else ''}",
                                class_="att" + (" warn" if s.attempts > 1 else ""),
                            ),
                        ],
                        class_="steprow",
                    ),
                    html.tag(
                        "details",
                        [
                            html.tag(
                                "summary",
                                [
                                    ran_text,
                                    " · key ",
                                    html.tag("code", f"{task.id}:{s.index}"),
                                ],
                            ),
                            html.tag("ul", tries) if tries else "",
                            *detail,
                        ],
                        open="" if s.status == "failed" or s.attempts > 1 else None,
                    ),
                ],
                class_="step",
                id=f"step-{s.index}",
            )
        )
    return html.join(out)


def _error_line(error: dict[str, Any]) -> html.Markup:
    """``InvalidInput`` (an input error, not retryable): the message."""
    return html.join(
        [
            html.tag("code", str(error.get("error_class"))),
            f" ({error.get('type')} error, "
            f"{'retryable' if error.get('retryable') else 'not retryable'}): ",
            str(error.get("message", "")),
        ]
    )


def _error_box(error: dict[str, Any]) -> html.Markup:
    advice = ADVICE.get(str(error.get("type")), "read the message above")
    return html.tag(
        "section",
        [
            html.tag("h2", "Error"),
            html.tag("p", _error_line(error)),
            html.tag("p", ["What to do: ", advice], class_="advice"),
        ],
        class_="errorbox",
    )


def _pager(task_id: str, page: views.JournalPage, after: int) -> html.Markup:
    links = []
    if after >= 0:
        links.append(html.link(f"/console/tasks/{task_id}", "« first steps"))
        back = max(after - STEP_PAGE, -1)
        links.append(
            html.link(
                html.url(f"/console/tasks/{task_id}", {"after": back if back >= 0 else None}),
                "« previous",
            )
        )
    if page.steps and page.steps[-1].index + 1 < page.total:
        links.append(
            html.link(
                html.url(f"/console/tasks/{task_id}", {"after": page.steps[-1].index}),
                "next steps »",
                id="next-steps",
            )
        )
    shown = (
        f"steps {page.steps[0].index}–{page.steps[-1].index} of {page.total}"
        if page.steps
        else f"{page.total} steps"
    )
    return html.tag("p", [shown, " ", *links], class_="pager")


def _events(task: types.TaskRecord, found: list[types.EventRecord], after: int) -> html.Markup:
    rows = [
        html.tag(
            "tr",
            [
                html.tag("td", e.seq),
                html.tag("td", html.when(e.at)),
                html.tag("td", e.name, class_="mono"),
                html.tag("td", "" if e.step is None else e.step),
                html.tag("td", html.clip(html.pretty(e.data), 300)[0], class_="mono small"),
            ],
        )
        for e in found
    ]
    last = found[-1].seq if found else after
    more = (
        html.link(html.url(f"/console/tasks/{task.id}", {"events_after": last}), "more events »")
        if len(found) >= EVENT_PAGE
        else ""
    )
    live = (
        None
        if task.status in types.FINAL_STATUSES or len(found) >= EVENT_PAGE
        else (f"/console/tasks/{task.id}/events")
    )
    return html.join(
        [
            html.tag(
                "table",
                [
                    html.tag(
                        "thead",
                        html.tag(
                            "tr",
                            [
                                html.tag("th", h)
                                for h in ("seq", "at (UTC)", "event", "step", "data")
                            ],
                        ),
                    ),
                    html.tag("tbody", rows, id="events", data_stream=live, data_last=last),
                ],
            ),
            more,
        ]
    )


def render(
    task: types.TaskRecord,
    page: views.JournalPage,
    after: int,
    attempts: list[types.StepAttempt],
    runs: list[types.TaskRun],
    found_events: list[types.EventRecord],
    events_after: int,
    viewer: Viewer,
) -> str:
    facts = [
        ("status", html.tag("span", html.badge(task.status), id="task-status")),
        ("agent", task.agent),
        ("tenant", task.tenant),
        (
            "session",
            html.link(f"/console/sessions/{task.session_id}", task.session_id, class_="mono"),
        ),
        ("created", html.when(task.created_at)),
        ("updated", html.when(task.updated_at)),
        ("runs", task.runs),
        ("lease", f"{task.lease_owner} (epoch {task.lease_epoch})" if task.lease_owner else "none"),
        ("lease expires", html.when(task.lease_expires_at)),
        ("submitted with key", task.idempotency_key or "– (no Idempotency-Key)"),
    ]
    if task.cancel_requested:
        facts.append(("cancel", "requested: it stops at its next step boundary"))
    actions = []
    if task.status not in types.FINAL_STATUSES:
        actions.append(
            html.post_button(
                f"/console/tasks/{task.id}/cancel",
                "Cancel task",
                viewer,
                confirm="Cancel this task?",
            )
        )
    if task.status == "running":
        actions.append(
            html.post_button(
                f"/console/tasks/{task.id}/resume",
                "Resume on another worker",
                viewer,
                confirm="Expire this task's lease so any worker resumes it from its journal?",
            )
        )
    body: list[Any] = [
        html.tag(
            "dl",
            [html.join([html.tag("dt", k), html.tag("dd", v)]) for k, v in facts],
            class_="facts",
        ),
        html.tag("div", actions, class_="actions"),
        pages_waiting.panel(task, viewer),
        html.tag("h2", "Input"),
        _clipped(task.input, f"/console/tasks/{task.id}/steps/input"),
    ]
    if task.error:
        body.append(_error_box(task.error))
    if task.output is not None:
        body += [
            html.tag("h2", "Output"),
            _clipped(task.output, f"/console/tasks/{task.id}/steps/output"),
        ]
    run_rows = [
        [r.run, r.worker, r.reason, r.from_step, r.epoch, html.when(r.started_at)]
        for r in sorted(runs, key=lambda r: r.run)
    ]
    body += [
        html.tag("h2", "Runs"),
        html.table(["run", "worker", "reason", "from step", "epoch", "started (UTC)"], run_rows)
        if run_rows
        else html.tag("p", "not claimed yet", class_="empty"),
        html.tag("h2", "Steps"),
        _pager(task.id, page, after),
        html.tag("div", _timeline(task, page, attempts, runs), class_="timeline", id="steps"),
        html.tag("h2", "Events"),
        _events(task, found_events, events_after),
    ]
    return html.page(f"Task {task.id}", body, viewer, active="Tasks")


def render_value(task: types.TaskRecord, what: str, value: Any, viewer: Viewer) -> str:
    back = html.link(f"/console/tasks/{task.id}", f"« task {task.id}")
    return html.page(
        f"{what} of task {task.id}",
        [html.tag("p", back), html.tag("pre", html.pretty(value), class_="fullvalue")],
        viewer,
        active="Tasks",
    )
