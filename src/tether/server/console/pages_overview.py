"""The overview: the last hour's tasks by status per agent, the step funnel per agent,
errors by class, stuck steps, recoveries and handovers, workers with leases and memory."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from tether.server.console import html
from tether.server.console.session import Viewer
from tether.store import console_sql, views

WINDOW = 3600.0


def _statuses(o: views.Overview) -> html.Markup:
    by_agent: dict[str, dict[str, int]] = defaultdict(dict)
    names: list[str] = []
    for c in o.statuses:
        by_agent[c.agent][c.status] = c.count
        if c.status not in names:
            names.append(c.status)
    if not by_agent:
        return html.tag("p", "no tasks created in the last hour", class_="empty")
    rows = []
    for agent, counts in sorted(by_agent.items()):
        cells: list[Any] = [html.link(html.url("/console/tasks", {"agent": agent}), agent)]
        for name in names:
            n = counts.get(name, 0)
            cells.append(
                html.link(html.url("/console/tasks", {"agent": agent, "status": name}), n)
                if n
                else "0"
            )
        cells.append(sum(counts.values()))
        rows.append(cells)
    head = ["agent", *[html.badge(n) for n in names], "total"]
    header = html.tag("tr", [html.tag("th", h) for h in head])
    body = html.join(html.tag("tr", [html.tag("td", c) for c in r]) for r in rows)
    return html.tag("table", [html.tag("thead", header), html.tag("tbody", body)])


def _funnel(o: views.Overview) -> html.Markup:
    by_agent: dict[str, list[views.FunnelStep]] = defaultdict(list)
    for f in o.funnel:
        by_agent[f.agent].append(f)
    if not by_agent:
        return html.tag("p", "no steps in the last hour", class_="empty")
    out = []
    for agent, steps in sorted(by_agent.items()):
        top = max(max(f.started for f in steps), 1)
        bars = []
        for f in steps:
            label = f"{f.step}+" if f.step >= console_sql.FUNNEL_CAP else str(f.step)
            drop = f.started - f.completed
            bars.append(
                html.tag(
                    "div",
                    [
                        html.tag("span", f"step {label}", class_="fl"),
                        html.Markup(
                            '<span class="fbar">'
                            f'<span class="fs" style="width:{f.started / top * 100:.1f}%"></span>'
                            f'<span class="fc" style="width:{f.completed / top * 100:.1f}%"></span>'
                            "</span>"
                        ),
                        html.tag(
                            "span",
                            f"{f.completed}/{f.started} completed"
                            + (f", {drop} stopped here" if drop else ""),
                            class_="fn" + (" warn" if drop else ""),
                        ),
                    ],
                    class_="frow",
                )
            )
        out.append(html.tag("div", [html.tag("h3", agent), *bars], class_="funnel"))
    return html.join(out)


def _errors(o: views.Overview) -> html.Markup:
    if not o.errors:
        return html.tag("p", "no errors in the last hour", class_="empty")
    rows = [
        [
            html.tag("code", e.error_class),
            e.type,
            "task failed with it" if e.source == "task" else "a step was retried",
            e.count,
        ]
        for e in o.errors
    ]
    return html.table(["error class", "where", "seen as", "count"], rows)


def _stuck(o: views.Overview) -> html.Markup:
    if not o.stuck:
        return html.tag("p", "nothing stuck", class_="empty")
    rows = [
        [
            html.link(f"/console/tasks/{s.task_id}#step-{s.step}", s.task_id, class_="mono"),
            s.tenant,
            s.agent,
            "–" if s.step is None else s.step,
            s.worker or "–",
            html.when(s.since),
            s.why,
        ]
        for s in o.stuck
    ]
    return html.table(["task", "tenant", "agent", "step", "worker", "since (UTC)", "why"], rows)


def _runs(o: views.Overview) -> html.Markup:
    if not o.runs:
        return html.tag("p", "no recoveries or handovers in the last hour", class_="empty")
    rows = [
        [
            html.link(f"/console/tasks/{r.task_id}", r.task_id, class_="mono"),
            r.reason,
            r.worker,
            r.from_step,
            html.when(r.started_at),
        ]
        for r in o.runs
    ]
    return html.table(["task", "reason", "to worker", "from step", "at (UTC)"], rows)


def _workers(o: views.Overview, memory: Mapping[str, float]) -> html.Markup:
    names = sorted({w.worker for w in o.workers} | set(memory))
    if not names:
        return html.tag("p", "no worker holds a lease", class_="empty")
    leases = {w.worker: w for w in o.workers}
    rows = []
    for name in names:
        held = leases.get(name)
        mem = memory.get(name)
        rows.append(
            [
                html.tag("span", name, class_="mono"),
                held.leases if held else 0,
                html.when(held.next_expiry) if held else "–",
                _bytes(mem)
                if mem is not None
                else html.tag("span", "not in this process: see its /metrics", class_="dim"),
            ]
        )
    return html.table(["worker", "leases", "next expiry (UTC)", "memory (RSS)"], rows)


def _bytes(value: float) -> str:
    if math.isnan(value):
        return "unknown"
    return f"{value / 2**20:.0f} MiB"


def render(o: views.Overview, memory: Mapping[str, float], viewer: Viewer) -> str:
    scope = "every tenant" if viewer.operator else f"tenant {viewer.tenant}"
    body = [
        html.tag(
            "p", ["The last hour, ", scope, ". Generated ", html.when(o.now), "."], class_="note"
        ),
        html.tag(
            "div",
            [
                html.tag(
                    "section", [html.tag("h2", "Tasks by status"), _statuses(o)], class_="card"
                ),
                html.tag("section", [html.tag("h2", "Errors by class"), _errors(o)], class_="card"),
            ],
            class_="grid",
        ),
        html.tag(
            "section",
            [html.tag("h2", "Step funnel: started vs completed"), _funnel(o)],
            class_="card",
        ),
        html.tag("section", [html.tag("h2", "Stuck"), _stuck(o)], class_="card"),
        html.tag("section", [html.tag("h2", "Recoveries and handovers"), _runs(o)], class_="card"),
        html.tag("section", [html.tag("h2", "Workers"), _workers(o, memory)], class_="card"),
    ]
    return html.page("Overview", body, viewer, active="Overview")
