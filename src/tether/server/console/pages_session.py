"""One session: its messages as a conversation (tool calls paired with their results),
the context bar (tokens vs budget, the warning mark), the summary and each compaction,
memory items, and its tasks."""

from __future__ import annotations

from typing import Any

from tether import types
from tether.context.view import context_view
from tether.server.console import html
from tether.server.console.session import Viewer
from tether.store.base import MemoryItem

MESSAGE_PAGE = 200
CLIP = 2000
WARN_AT = 0.8
"""The share of the budget where ``context.pressure`` fires by default."""


def _number(value: Any) -> float | None:
    return None if isinstance(value, bool) or not isinstance(value, int | float) else float(value)


def context_bar(state: dict[str, Any]) -> html.Markup:
    view = context_view(state)
    tokens, limit = _number(view.get("tokens")), _number(view.get("limit"))
    if tokens is None or not limit:
        return html.tag("p", "no model call counted yet", class_="empty")
    share = tokens / limit
    warn = _number((state.get("policy") or {}).get("warn_at")) or WARN_AT
    level = "over" if share >= 1 else "warn" if share >= warn else "ok"
    return html.tag(
        "div",
        [
            html.Markup(
                '<div class="ctx">'
                f'<div class="ctxfill {level}" style="width:{min(share, 1) * 100:.1f}%">'
                f'</div><div class="ctxmark" style="left:{warn * 100:.0f}%" '
                f'title="{warn:.0%}: context.pressure"></div></div>'
            ),
            html.tag(
                "p",
                f"{int(tokens)} of {int(limit)} tokens ({share:.0%}); the mark is {warn:.0%}, "
                f"where context.pressure fires; window {view.get('window')}, "
                f"counted by {view.get('counter') or '?'}",
                class_="note",
            ),
        ],
    )


def _content(text: str | None) -> html.Markup:
    clipped, cut = html.clip(text or "", CLIP)
    return html.tag("div", clipped + (" (cut here)" if cut else ""), class_="content")


def conversation(messages: list[types.StoredMessage], folded_upto: int = 0) -> html.Markup:
    """The messages as a conversation; those folded into the summary are marked."""
    results = {
        m.message.tool_call_id: m
        for m in messages
        if m.message.role == "tool" and m.message.tool_call_id
    }
    paired: set[int] = set()
    out = []
    for m in messages:
        msg = m.message
        if msg.role == "tool" and m.seq in paired:
            continue
        folded = " · folded into the summary" if m.seq <= folded_upto else ""
        parts: list[Any] = [
            html.tag(
                "div",
                [html.tag("b", msg.role), f" · seq {m.seq} · ", html.when(m.created_at), folded],
                class_="meta",
            )
        ]
        if msg.content:
            parts.append(_content(msg.content))
        for call in msg.tool_calls:
            result = results.get(call.id)
            pair: list[Any] = [
                html.tag(
                    "div",
                    [
                        html.tag("b", f"calls {call.name}"),
                        " ",
                        html.tag("code", html.clip(call.arguments, 400)[0]),
                    ],
                )
            ]
            if result is not None:
                paired.add(result.seq)
                pair.append(
                    html.tag(
                        "div",
                        [
                            html.tag("b", "→ result "),
                            f"(seq {result.seq}) ",
                            _content(result.message.content),
                        ],
                        class_="result",
                    )
                )
            else:
                pair.append(html.tag("div", "→ no result yet", class_="dim"))
            parts.append(html.tag("div", pair, class_="toolcall"))
        if msg.role == "tool":
            parts.append(
                html.tag(
                    "div",
                    f"result of call {msg.tool_call_id} (its call is on another page)",
                    class_="dim",
                )
            )
        kind = f"msg role-{msg.role}" + (" folded" if folded else "")
        out.append(html.tag("div", parts, class_=kind, id=f"seq-{m.seq}"))
    return html.join(out) if out else html.tag("p", "no messages", class_="empty")


def _compactions(state: dict[str, Any], found: list[types.EventRecord]) -> html.Markup:
    view = context_view(state)
    rows = [
        [
            html.link(f"/console/tasks/{e.task_id}", e.task_id[:12], class_="mono"),
            html.when(e.at),
            str(e.data.get("strategy", "")),
            html.clip(html.pretty({k: v for k, v in e.data.items() if k != "strategy"}), 300)[0],
        ]
        for e in found
    ]
    total = view.get("compactions_total", 0)
    head = html.tag(
        "p",
        f"{total} compaction(s) in all; folded up to seq {view.get('folded_upto', 0)}",
        class_="note",
    )
    if not rows:
        return html.join([head, html.tag("p", "no compaction events", class_="empty")])
    return html.join([head, html.table(["task", "at (UTC)", "strategy", "what"], rows)])


def _memory(items: list[MemoryItem]) -> html.Markup:
    if not items:
        return html.tag("p", "no memory items", class_="empty")
    rows = [[i.seq, i.role, html.clip(i.text, 200)[0], len(i.vector)] for i in items[:200]]
    return html.table(["seq", "role", "text", "dimensions"], rows)


def render(
    session: types.SessionRecord,
    messages: list[types.StoredMessage],
    after: int,
    tasks: list[types.TaskRecord],
    compactions: list[types.EventRecord],
    memory: list[MemoryItem],
    viewer: Viewer,
) -> str:
    view = context_view(session.state)
    summary = view.get("summary")
    summary_text = summary.get("text") if isinstance(summary, dict) else summary
    pager = []
    if after > 0:
        pager.append(html.link(f"/console/sessions/{session.id}", "« first messages"))
    if len(messages) >= MESSAGE_PAGE:
        pager.append(
            html.link(
                html.url(f"/console/sessions/{session.id}", {"after": messages[-1].seq}),
                "more messages »",
            )
        )
    task_rows = [
        [
            html.link(f"/console/tasks/{t.id}", t.id, class_="mono"),
            html.badge(t.status),
            html.when(t.created_at),
            html.clip(t.input, 80)[0],
        ]
        for t in tasks
    ]
    body = [
        html.tag(
            "dl",
            [
                html.join([html.tag("dt", k), html.tag("dd", v)])
                for k, v in (
                    ("agent", session.agent),
                    ("tenant", session.tenant),
                    ("created", html.when(session.created_at)),
                    ("messages", session.last_seq),
                )
            ],
            class_="facts",
        ),
        html.tag("h2", "Context"),
        context_bar(session.state),
        html.tag("h2", "Summary"),
        html.tag("div", summary_text, class_="content")
        if summary_text
        else html.tag("p", "no summary", class_="empty"),
        html.tag("h2", "Compactions"),
        _compactions(session.state, compactions),
        html.tag("h2", "Tasks"),
        html.table(["task", "status", "created (UTC)", "input"], task_rows),
        html.tag("h2", f"Conversation (messages after seq {after})" if after else "Conversation"),
        html.tag(
            "div",
            conversation(messages, int(view.get("folded_upto") or 0)),
            class_="conversation",
        ),
        html.tag("p", pager, class_="pager"),
        html.tag("h2", "Memory"),
        _memory(memory),
    ]
    return html.page(f"Session {session.id}", body, viewer)
