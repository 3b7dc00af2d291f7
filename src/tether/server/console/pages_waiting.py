"""What a waiting task waits for, on its page, with the answer an operator can give:
Approve / Deny (with a reason) for a tool approval, a form with JSON data for a named
signal. The forms post to ``actions_waits`` and carry the wait they answer."""

from __future__ import annotations

import json
from typing import Any

from tether import types
from tether.execution import signals
from tether.server.console import html
from tether.server.console.session import Viewer

ARGUMENTS_CLIP = 2000
DATA_CHARS = 3500
"""The data field's limit: the console's forms are at most 4 kB (the API takes 64 kB)."""


def _arguments(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return html.clip(value, ARGUMENTS_CLIP)[0]
    return html.clip(html.pretty(value), ARGUMENTS_CLIP)[0]


def _form(task: types.TaskRecord, action: str, viewer: Viewer, wait: str, body: Any) -> html.Markup:
    return html.join(
        [
            html.Markup(
                f'<form method="post" action="/console/tasks/{html.esc(task.id)}/{action}"'
                f' class="answer" id="{action}-form">'
            ),
            html.csrf_field(viewer),
            html.Markup(f'<input type="hidden" name="wait" value="{html.esc(wait)}">'),
            body,
            html.Markup("</form>"),
        ]
    )


def _approval(task: types.TaskRecord, wait: dict[str, Any], viewer: Viewer) -> list[Any]:
    name = str(wait["name"])
    about = wait.get("about") if isinstance(wait.get("about"), dict) else None
    if about is None:  # parked before waits kept what they ask
        asked: list[Any] = [
            html.tag(
                "p",
                "A tool call waits for approval: its tool and arguments are in the "
                "tool.approval_requested event below.",
            )
        ]
    else:
        asked = [
            html.tag(
                "p",
                [
                    "A call to ",
                    html.tag("code", about.get("tool"), id="wait-tool"),
                    " waits for a person's approval; it runs only once approved. Arguments:",
                ],
            ),
            html.tag("pre", _arguments(about.get("arguments")), id="wait-arguments"),
        ]
    approve = _form(
        task, "approve", viewer, name,
        html.Markup('<button type="submit" id="approve" class="ok">Approve</button>'),
    )  # fmt: skip
    deny = _form(
        task, "deny", viewer, name,
        html.Markup(
            '<label>Reason <input type="text" name="reason" id="deny-reason" required'
            ' maxlength="1000" placeholder="the model reads this"></label>'
            '<button type="submit" id="deny" class="no">Deny</button>'
        ),
    )  # fmt: skip
    return [*asked, html.tag("div", [approve, deny], class_="answers")]


def _signal(task: types.TaskRecord, wait: dict[str, Any], viewer: Viewer) -> list[Any]:
    name = str(wait["name"])
    deadline = wait.get("deadline")
    until = [" until ", html.when(float(deadline))] if isinstance(deadline, int | float) else []
    send = _form(
        task, "signal", viewer, name,
        html.join([
            html.Markup(
                '<label>Data (JSON, empty for null)<textarea name="data" id="signal-data"'
                f' rows="4" maxlength="{DATA_CHARS}" placeholder=\'{{"approved": true}}\'>'
                "</textarea></label>"
            ),
            html.tag("button", f"Send {name}", type="submit", id="send-signal", class_="ok"),
        ]),
    )  # fmt: skip
    return [
        html.tag(
            "p", ["It waits for the signal ", html.tag("code", name, id="wait-signal"), *until, "."]
        ),
        send,
    ]


def panel(task: types.TaskRecord, viewer: Viewer) -> html.Markup:
    """The waiting box, or nothing when the task does not wait."""
    wait = task.wait or {}
    if task.status != "waiting" or not wait:
        return html.Markup("")
    since = ["Waiting since ", html.when(wait.get("since")), "; it holds no lease."]
    body: list[Any] = [html.tag("h2", "Waiting"), html.tag("p", since, class_="dim")]
    name = wait.get("name")
    if wait.get("kind") == "sleep":
        body.append(html.tag("p", ["It sleeps until ", html.when(wait.get("deadline")), "."]))
    elif isinstance(name, str) and name.startswith(signals.APPROVAL_PREFIX):
        body += _approval(task, wait, viewer)
    elif isinstance(name, str):
        body += _signal(task, wait, viewer)
    return html.tag("section", body, class_="waitbox", id="waiting")
