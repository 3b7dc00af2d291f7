"""Structured JSON logs on the standard library's ``logging``.

Ids are bound once, where a task or step starts, and merged into every record logged
inside that scope, in that thread or asyncio task only (context variables), so no call
site passes them by hand::

    with bind(tenant="acme", session=sid, task=tid):
        with bind(step=3, attempt=1):
            log.info("tool.called", extra={"tool": "search"})

With ``configure_logging()`` each record is one JSON object on one line::

    {"ts": "2025-01-01T00:00:00.000000Z", "level": "info", "event": "tool.called",
     "logger": "app", "tenant": "acme", "session": "...", "task": "...", "step": 3,
     "attempt": 1, "tool": "search"}

``event`` is the record's stable name: its message (or an ``event`` extra field).
``LogObserver`` logs every ``TaskEvent``; ``capture_logs`` collects event dicts in tests.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json as jsonlib
import logging
import sys
import traceback
import types
from collections.abc import Iterator, Mapping
from typing import IO, Any

from tether import redact
from tether.observe import events

ID_KEYS = ("tenant", "session", "task", "step", "attempt", "worker")

_bound: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "tether_log_ids", default=types.MappingProxyType({})
)

# What every LogRecord has; anything else on a record came in through ``extra``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "tether_ids",
}


_FIXED = frozenset({"ts", "level", "logger"})


class bind:
    """Bind ids (tenant, session, task, step, attempt, worker) to every record logged inside.

    Nested binds add to the outer ones; a value of ``None`` unbinds a key. A class
    rather than a generator context manager: every step enters one.
    """

    __slots__ = ("_ids", "_token")

    def __init__(self, **ids: Any) -> None:
        self._ids = ids

    def __enter__(self) -> None:
        merged = {**_bound.get(), **self._ids}
        self._token = _bound.set({k: v for k, v in merged.items() if v is not None})

    def __exit__(self, *exc: object) -> None:
        _bound.reset(self._token)


def bound_ids() -> dict[str, Any]:
    """The ids bound in the current context."""
    return dict(_bound.get())


class ContextFilter(logging.Filter):
    """Stamps the ids bound where a record is created onto it, before any hand-off."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "tether_ids"):
            record.tether_ids = dict(_bound.get())
        return True


_second: tuple[int, str] = (0, "1970-01-01T00:00:00")
"""The last whole second a timestamp was made for, and its text: records come many a
second, and only the microseconds differ."""


def timestamp(created: float) -> str:
    """``created`` as ``2025-01-01T00:00:00.000000Z`` (UTC, microseconds rounded half to
    even, as ``datetime.fromtimestamp`` rounds them)."""
    global _second
    if created < 0:  # before 1970: not worth a fast path
        return (
            datetime.datetime.fromtimestamp(created, datetime.UTC)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z")
        )
    whole = int(created)
    micros = round((created - whole) * 1_000_000)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    second, text = _second
    if whole != second:
        text = datetime.datetime.fromtimestamp(whole, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (whole, text)
    return f"{text}.{micros:06d}Z"


def event_dict(record: logging.LogRecord) -> dict[str, Any]:
    """A record as the event dict the JSON line is made of."""
    out: dict[str, Any] = {
        "ts": timestamp(record.created),
        "level": record.levelname.lower(),
        "event": None,
        "logger": record.name,
    }
    ids = getattr(record, "tether_ids", None)
    out.update(ids if isinstance(ids, dict) else _bound.get())
    message = record.getMessage()
    for key, value in record.__dict__.items():
        if key not in _RECORD_ATTRS and not key.startswith("_"):
            out[f"extra_{key}" if key in _FIXED else key] = value
    if out["event"] is None:
        out["event"] = message
    elif message and message != out["event"]:
        out["message"] = message
    if record.exc_info and record.exc_info[0] is not None:
        out["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    elif record.exc_text:
        out["exception"] = record.exc_text
    return out


_ENCODER = jsonlib.JSONEncoder(default=str, ensure_ascii=False)
"""``json.dumps(…, default=str, ensure_ascii=False)`` without a new encoder per record."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``event``, ``logger``, ids, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        return redact.text(_ENCODER.encode(event_dict(record)))


class TextFormatter(logging.Formatter):
    """A human line for a terminal: time, level, event, then ``key=value`` pairs."""

    def format(self, record: logging.LogRecord) -> str:
        data = event_dict(record)
        head = f"{data.pop('ts')} {data.pop('level'):<7} {data.pop('event')}"
        data.pop("logger")
        exc = data.pop("exception", None)
        line = " ".join([head, *(f"{k}={v}" for k, v in data.items())])
        return redact.text(f"{line}\n{exc}" if exc else line)


class _TetherHandler(logging.StreamHandler[IO[str]]):
    """The handler ``configure_logging`` installs (so a second call replaces it)."""


def configure_logging(
    level: int | str = "INFO", json: bool = True, stream: IO[str] | None = None
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr), as JSON lines or text.

    Calling it again replaces the handler it installed before; other handlers stay.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _TetherHandler)]:
        root.removeHandler(old)
        old.close()
    handler = _TetherHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


class _CaptureHandler(logging.Handler):
    def __init__(self, into: list[dict[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into
        self.addFilter(ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(event_dict(record))


@contextlib.contextmanager
def capture_logs(logger: str = "") -> Iterator[list[dict[str, Any]]]:
    """Collect every record logged inside (all levels) as event dicts, for tests."""
    captured: list[dict[str, Any]] = []
    target = logging.getLogger(logger or None)
    handler = _CaptureHandler(captured)
    old_level = target.level
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)
    try:
        yield captured
    finally:
        target.removeHandler(handler)
        target.setLevel(old_level)


# ---- task events -----------------------------------------------------------

_WARNING = frozenset(
    {
        events.STEP_RETRYING,
        events.STEP_STUCK,
        events.LEASE_LOST,
        events.CONTEXT_PRESSURE,
        events.OUTPUT_TRUNCATED,
        events.PROMPT_TRUNCATED,
        events.TASK_CANCELLED,
    }
)
_ERROR = frozenset({events.STEP_FAILED, events.TASK_FAILED})

# Event data safe to log without debug: numbers, names and flags, never contents.
_SAFE_SCALARS = frozenset(
    {
        "reason", "run", "from_step", "session_age", "previous_worker", "duration",
        "finish_reason", "context_tokens", "context_limit", "delay", "silent_for",
        "heartbeat_timeout", "tokens", "limit", "utilisation", "strategy", "tokens_before",
        "tokens_after", "max_tokens", "model", "step_error", "drained", "handed_over",
        "outcome", "status", "counted", "reported",
    }
)  # fmt: skip
_SAFE_ERROR_KEYS = ("type", "error_class", "retryable")
_SAFE_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


_SCALAR_TYPES = (bool, int, float, str)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, _SCALAR_TYPES)


def safe_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an event's data that may be logged without ``debug``: no contents."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SAFE_SCALARS and (value is None or isinstance(value, _SCALAR_TYPES)):
            out[key] = value
        elif key == "error" and isinstance(value, Mapping):
            out["error"] = {k: value[k] for k in _SAFE_ERROR_KEYS if k in value}
        elif key == "usage" and isinstance(value, Mapping):
            out["usage"] = {
                k: value[k] for k in _SAFE_USAGE_KEYS if k in value and _is_scalar(value[k])
            }
        elif key == "messages":  # context.compacted: how many, never which
            if isinstance(value, int) and not isinstance(value, bool):
                out["messages"] = value
            elif isinstance(value, list | tuple):
                out["messages"] = len(value)
    return out


class LogObserver:
    """An ``Observer`` logging every task event with its ids, one record each.

    ``event`` is the event's name (``step.completed``…). Failures log at ERROR, retries,
    stuck steps, lost leases, context pressure and truncation at WARNING, the rest at
    INFO. Event data is reduced to counts, names and error classes unless ``debug``,
    which logs it whole (error messages, tool names' arguments, anything recorded).
    """

    def __init__(self, logger: logging.Logger | None = None, *, debug: bool = False) -> None:
        self.logger = logger if logger is not None else logging.getLogger("tether.events")
        self.debug = debug

    def on_event(self, event: events.TaskEvent) -> None:
        level = (
            logging.DEBUG  # streamed text: one record a piece would flood the log
            if event.name == events.MODEL_DELTA
            else logging.ERROR
            if event.name in _ERROR
            else logging.WARNING
            if event.name in _WARNING
            else logging.INFO
        )
        if not self.logger.isEnabledFor(level):
            return
        fields: dict[str, Any] = {
            "event": event.name,
            "tenant": event.tenant,
            "session": event.session_id,
            "task": event.task_id,
            "agent": event.agent,
        }
        optional = {
            "step": event.step,
            "step_kind": event.step_kind,
            "step_name": event.step_name,
            "attempt": event.attempt,
            "worker": event.worker,
        }
        fields.update({k: v for k, v in optional.items() if v is not None})
        data = dict(event.data) if self.debug else safe_data(event.data)
        for key, value in data.items():
            # data never overwrites the ids, nor the record's own attributes
            name = f"data_{key}" if key in fields or key in _RECORD_ATTRS else key
            fields[name] = value
        # The record made here, not by ``Logger.log``: that would walk the stack for a
        # caller (file, line) which no formatter of ours prints; the record's fields and
        # handling (filters, handlers, propagation) are the same.
        logger = self.logger
        logger.handle(
            logger.makeRecord(logger.name, level, "", 0, event.name, (), None, extra=fields)
        )
