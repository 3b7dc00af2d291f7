"""Query parameters of console pages, checked: a value too long, malformed or out of
range is a 400 page naming the parameter, never a store query."""

from __future__ import annotations

import datetime as dt
import re

from starlette.datastructures import QueryParams

from tether.server import path_ids
from tether.server.console.access import ConsoleError

MAX_TEXT = 200
_STATUS = re.compile(r"^[a-z_]{1,32}$")


def text(query: QueryParams, name: str, *, limit: int = MAX_TEXT) -> str | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    if len(value) > limit:
        raise ConsoleError(400, f"filter {name!r} is longer than {limit} characters")
    return value


def status(query: QueryParams) -> str | None:
    value = text(query, "status", limit=32)
    if value is not None and not _STATUS.match(value):
        raise ConsoleError(
            400, f"filter 'status' must be a status name such as running, not {value!r}"
        )
    return value


def ident(value: str, what: str) -> str:
    """A task or session id as it appears in a path: bounded and plain, else 404."""
    if not path_ids.accepts(value):
        raise ConsoleError(404, f"no {what} {value[:64]!r}: not an id")
    return value


def integer(
    query: QueryParams, name: str, *, low: int, high: int, default: int | None = None
) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return default
    if len(value) > 20 or not re.fullmatch(r"-?\d+", value):
        raise ConsoleError(400, f"parameter {name!r} must be a whole number")
    number = int(value)
    if not low <= number <= high:
        raise ConsoleError(
            400, f"parameter {name!r} must be between {low} and {high}, not {number}"
        )
    return number


def moment(query: QueryParams, name: str) -> float | None:
    """A time: Unix seconds, or ISO 8601 (``2026-11-30T19:30``; UTC unless it says)."""
    value = text(query, name, limit=40)
    if value is None:
        return None
    try:
        return float(value) if re.fullmatch(r"\d{1,12}(\.\d+)?", value) else _iso(value)
    except ValueError as exc:
        raise ConsoleError(
            400, f"filter {name!r} must be a time such as 2026-11-30T19:30 or Unix seconds"
        ) from exc


def _iso(value: str) -> float:
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def iso(ts: float | None) -> str:
    """A time as the ``datetime-local`` inputs show it (UTC)."""
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M")
