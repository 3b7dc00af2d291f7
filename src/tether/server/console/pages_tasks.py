"""The task list: filters (status, agent, tenant, session, time), keyset pages, and the
table body that the page's script fetches again every few seconds (live updates)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import QueryParams

from tether import types
from tether.server.console import html, params
from tether.server.console.session import Viewer
from tether.store import views
from tether.store.base import Store

PAGE = 50


@dataclass(frozen=True, slots=True)
class Listing:
    query: views.TaskQuery
    before: int | None
    limit: int
    visible: bool
    """False when a tenant key asks for another tenant: the answer is empty."""

    def link_params(self) -> dict[str, object]:
        q = self.query
        return {
            "status": q.status,
            "agent": q.agent,
            "tenant": q.tenant,
            "session": q.session_id,
            "since": params.iso(q.since),
            "until": params.iso(q.until),
            "limit": None if self.limit == PAGE else self.limit,
        }


def listing(query: QueryParams, viewer: Viewer) -> Listing:
    tenant = params.text(query, "tenant")
    scope = viewer.scope()
    visible = scope is None or tenant is None or tenant == scope
    session = params.text(query, "session", limit=128)
    return Listing(
        query=views.TaskQuery(
            tenant=scope if scope is not None else tenant,
            agent=params.text(query, "agent"),
            status=params.status(query),
            session_id=params.ident(session, "session") if session else None,
            since=params.moment(query, "since"),
            until=params.moment(query, "until"),
        ),
        before=params.integer(query, "before", low=1, high=2**62),
        limit=params.integer(query, "limit", low=1, high=views.MAX_PAGE, default=PAGE) or PAGE,
        visible=visible,
    )


async def fetch(store: Store, lst: Listing) -> views.TaskPage:
    if not lst.visible:
        return views.TaskPage(tasks=[], next_before=None)
    return await store.page_tasks(lst.query, before=lst.before, limit=lst.limit)


def rows(found: views.TaskPage, viewer: Viewer) -> html.Markup:
    """The table body: one row per task (what the live script swaps in)."""
    out = []
    for t in found.tasks:
        cells = [
            html.link(f"/console/tasks/{t.id}", t.id, class_="mono"),
            html.badge(t.status),
            t.agent,
        ]
        if viewer.operator:
            cells.append(t.tenant)
        cells += [
            html.link(f"/console/sessions/{t.session_id}", t.session_id[:12], class_="mono"),
            html.when(t.created_at),
            html.clip(t.input, 80)[0],
            _error_cell(t),
        ]
        out.append(html.tag("tr", [html.tag("td", c) for c in cells], data_task=t.id))
    if not out:
        span = 8 if viewer.operator else 7
        out.append(html.Markup(f'<tr><td colspan="{span}" class="empty">no tasks</td></tr>'))
    return html.join(out)


def _error_cell(t: types.TaskRecord) -> html.Markup:
    if not t.error:
        return html.Markup("")
    return html.tag("span", f"{t.error.get('error_class')} ({t.error.get('type')})", class_="err")


def render(lst: Listing, found: views.TaskPage, viewer: Viewer) -> str:
    q = lst.query
    fields = [
        _select("status", q.status),
        _input("agent", q.agent, "agent"),
    ]
    if viewer.operator:
        fields.append(_input("tenant", q.tenant, "tenant"))
    fields += [
        _input("session", q.session_id, "session id"),
        html.tag("label", ["since ", _time("since", q.since)]),
        html.tag("label", ["until ", _time("until", q.until)]),
        html.Markup('<button type="submit">Filter</button>'),
        html.link("/console/tasks", "clear"),
    ]
    head = ["task", "status", "agent"] + (["tenant"] if viewer.operator else [])
    head += ["session", "created (UTC)", "input", "error"]
    base = lst.link_params()
    live_url = html.url("/console/tasks/rows", base)
    body_attrs = {"id": "task-rows"}
    if lst.before is None:
        body_attrs["data_live"] = live_url
    table = html.table(head, [], body=rows(found, viewer), **body_attrs)
    pager = []
    if lst.before is not None:
        pager.append(html.link(html.url("/console/tasks", base), "« newest"))
    if found.next_before is not None:
        pager.append(
            html.link(
                html.url("/console/tasks", {**base, "before": found.next_before}),
                "older »",
                id="older",
            )
        )
    note = "live: refreshes every 2 s" if lst.before is None else "an older page (not live)"
    return html.page(
        "Tasks",
        [
            html.tag("form", fields, method="get", action="/console/tasks", class_="filters"),
            html.tag("p", note, class_="note"),
            table,
            html.tag("p", pager, class_="pager"),
        ],
        viewer,
        active="Tasks",
    )


_STATUSES = ("queued", "running", "waiting", "completed", "failed", "cancelled")


def _select(name: str, value: str | None) -> html.Markup:
    options = [html.tag("option", f"any {name}", value="")]
    known = list(_STATUSES) + ([value] if value and value not in _STATUSES else [])
    for s in known:
        options.append(
            html.Markup(
                f'<option value="{html.esc(s)}"{" selected" if s == value else ""}>'
                f"{html.esc(s)}</option>"
            )
        )
    return html.tag("select", options, name=name)


def _input(name: str, value: str | None, hint: str) -> html.Markup:
    return html.Markup(
        f'<input name="{name}" value="{html.esc(value or "")}" placeholder="{html.esc(hint)}"'
        f' maxlength="{params.MAX_TEXT}">'
    )


def _time(name: str, value: float | None) -> html.Markup:
    return html.Markup(
        f'<input type="datetime-local" name="{name}" value="{html.esc(params.iso(value))}">'
    )
