"""HTML building blocks: every value goes through ``esc`` (or ``Markup`` for trusted
fragments built here), so a task's input or a model's output can never inject markup."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from tether.server.console.session import Viewer


class Markup(str):
    """HTML already escaped (built by this module): joined as it is."""

    def __add__(self, other: str) -> Markup:
        """Markup stays markup; plain text added to it is escaped first."""
        return Markup(str.__add__(self, esc(other)))


def esc(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    text = "" if value is None else str(value)
    return Markup(
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )


def join(parts: Iterable[Any]) -> Markup:
    """The parts escaped and concatenated; nested lists are flattened."""
    return Markup("".join(join(p) if isinstance(p, list | tuple) else esc(p) for p in parts))


def tag(name: str, body: Any = "", /, **attrs: Any) -> Markup:
    """``<name attrs>body</name>``; attribute ``class_`` is ``class``; None drops one."""
    rendered = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items() if v is not None
    )
    if isinstance(body, list | tuple):
        body = join(body)
    return Markup(f"<{name}{rendered}>{esc(body)}</{name}>")


def link(href: str, text: Any, /, **attrs: Any) -> Markup:
    return tag("a", text, href=href, **attrs)


def url(path: str, params: Mapping[str, Any] | None = None) -> str:
    given = {k: v for k, v in (params or {}).items() if v not in (None, "")}
    return path + ("?" + urlencode(given) if given else "")


def when(ts: float | None) -> Markup:
    if ts is None:
        return Markup("–")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
    return tag("time", stamp + "Z", datetime=f"{stamp.replace(' ', 'T')}Z")


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s"
    return f"{value / 60:.1f} min"


_STATUS = re.compile(r"[^a-z0-9_-]")


def badge(status: str) -> Markup:
    """Any status, known or new (``waiting``), as a labelled badge; its class is the
    status itself, so a new one only needs a colour in the stylesheet."""
    return tag("span", status, class_=f"badge st-{_STATUS.sub('', status.lower())}")


def table(
    head: Iterable[str], rows: Iterable[Iterable[Any]], *, body: Markup | None = None, **attrs: Any
) -> Markup:
    """A table; ``body`` (rows already built) stands for ``rows``; ``attrs`` go on tbody."""
    header = tag("tr", [tag("th", h) for h in head])
    if body is None:
        body = join(tag("tr", [tag("td", c) for c in row]) for row in rows)
    return tag("table", [tag("thead", header), tag("tbody", body, **attrs)])


def pretty(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def clip(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters; True when it was cut."""
    return (text, False) if len(text) <= limit else (text[:limit] + " …", True)


def csrf_field(viewer: Viewer) -> Markup:
    return Markup(f'<input type="hidden" name="csrf" value="{esc(viewer.csrf)}">')


def post_button(action: str, label: str, viewer: Viewer, *, confirm: str | None = None) -> Markup:
    return Markup(
        f'<form method="post" action="{esc(action)}" class="inline"'
        + (f' data-confirm="{esc(confirm)}"' if confirm else "")
        + f'>{csrf_field(viewer)}<button type="submit">{esc(label)}</button></form>'
    )


_NAV = (("Overview", "/console/"), ("Tasks", "/console/tasks"))


def page(title: str, body: Any, viewer: Viewer | None, *, active: str = "") -> str:
    """A whole page: the nav (who is signed in, sign-out), then ``body``."""
    nav: list[Any] = [tag("span", "tether", class_="brand")]
    if viewer is not None:
        nav += [link(href, name, class_="on" if name == active else None) for name, href in _NAV]
        who = "operator: all tenants" if viewer.operator else f"tenant {viewer.tenant}"
        nav.append(tag("span", f"{who} · key {viewer.key_prefix}…", class_="who"))
        nav.append(
            Markup(
                '<form method="post" action="/console/logout" class="inline">'
                f'{csrf_field(viewer)}<button type="submit" id="sign-out">Sign out</button></form>'
            )
        )
    return "<!doctype html>\n" + tag(
        "html",
        [
            tag(
                "head",
                [
                    Markup('<meta charset="utf-8">'),
                    Markup('<meta name="viewport" content="width=device-width">'),
                    tag("title", f"{title} · tether console"),
                    Markup('<link rel="stylesheet" href="/console/static/console.css">'),
                    Markup('<script src="/console/static/console.js" defer></script>'),
                ],
            ),
            tag("body", [tag("nav", nav), tag("main", [tag("h1", title), body])]),
        ],
        lang="en",
    )
