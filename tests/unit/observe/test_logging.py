from __future__ import annotations

import asyncio
import datetime
import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tether.observe import events
from tether.observe import logging as tlog
from tether.observe.events import TaskEvent

SECRET = "sk-live-very-secret-key"
CONTENT = "my bank account number is 12345"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = tlog.configure_logging("DEBUG", stream=out)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_bound_ids_and_extra_fields(stream: io.StringIO) -> None:
    log = logging.getLogger("tether.test")
    with tlog.bind(tenant="acme", session="s1", task="t1", worker="w1"):
        log.info("task.begin")
        with tlog.bind(step=3, attempt=2):
            log.warning("tool.slow", extra={"tool": "search", "seconds": 1.5})
        log.info("task.end")
    log.info("outside")
    got = lines(stream)
    assert [g["event"] for g in got] == ["task.begin", "tool.slow", "task.end", "outside"]
    ids = {"tenant": "acme", "session": "s1", "task": "t1", "worker": "w1"}
    assert {k: got[0][k] for k in ids} == ids
    assert got[1]["step"] == 3 and got[1]["attempt"] == 2 and got[1]["tool"] == "search"
    assert got[1]["level"] == "warning" and got[1]["logger"] == "tether.test"
    assert got[1]["seconds"] == 1.5
    assert "step" not in got[2]  # the inner bind ended
    assert not set(ids) & set(got[3])
    assert got[0]["ts"].endswith("Z")


@pytest.mark.parametrize(
    "created",
    [1_700_000_000.0, 1_700_000_000.1234565, 1_700_000_000.9999996, 1_700_000_001.5, -1.25, 0.0],
)
def test_timestamps_read_as_datetime_writes_them(created: float) -> None:
    """The cached-second timestamp is the text ``datetime`` makes, rounding included."""
    want = datetime.datetime.fromtimestamp(created, datetime.UTC).isoformat(timespec="microseconds")
    assert tlog.timestamp(created) == want.replace("+00:00", "Z")


def test_unbinding_with_none_and_formatting_args(stream: io.StringIO) -> None:
    with tlog.bind(tenant="acme", task="t1"), tlog.bind(task=None):
        logging.getLogger("x").info("user %s logged in", "bob")
        assert tlog.bound_ids() == {"tenant": "acme"}
    (got,) = lines(stream)
    assert got["event"] == "user bob logged in"
    assert "task" not in got and got["tenant"] == "acme"


def test_exceptions_and_unserialisable_values(stream: io.StringIO) -> None:
    log = logging.getLogger("x")
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("op.failed", extra={"obj": object(), "level": 3})
    (got,) = lines(stream)
    assert got["level"] == "error" and got["extra_level"] == 3
    assert "ValueError: bad" in got["exception"]
    assert got["obj"].startswith("<object object")


def test_ids_stay_with_their_thread_and_task(stream: io.StringIO) -> None:
    log = logging.getLogger("x")

    def in_thread() -> None:
        log.info("thread.event")

    async def one(task: str) -> None:
        with tlog.bind(task=task):
            await asyncio.sleep(0)
            log.info("async.event")

    async def both() -> None:
        await asyncio.gather(one("a"), one("b"))

    with tlog.bind(task="main"):
        t = threading.Thread(target=in_thread)
        t.start()
        t.join()
        asyncio.run(both())
    got = [g for g in lines(stream) if g["logger"] == "x"]  # not asyncio's own debug lines
    assert got[0]["event"] == "thread.event"
    assert "task" not in got[0]  # a new thread starts with an empty context
    assert sorted(g["task"] for g in got[1:]) == ["a", "b"]


def test_text_format(stream: io.StringIO) -> None:
    out = io.StringIO()
    handler = tlog.configure_logging("INFO", json=False, stream=out)
    try:
        with tlog.bind(task="t1"):
            logging.getLogger("x").info("hello", extra={"n": 2})
    finally:
        logging.getLogger().removeHandler(handler)
    text = out.getvalue()
    assert " info    hello task=t1 n=2" in text
    assert stream.getvalue() == ""  # configure_logging replaced the JSON handler


def sample_events() -> list[TaskEvent]:
    base: dict[str, Any] = {
        "tenant": "acme",
        "session_id": "s1",
        "task_id": "t1",
        "agent": "research",
        "worker": "w1",
    }
    error = {
        "type": "tool",
        "error_class": "ToolFailed",
        "retryable": False,
        "message": f"tool failed: {CONTENT}",
    }
    return [
        TaskEvent(
            name=events.TASK_STARTED,
            data={"reason": "start", "run": 1, "from_step": 0, "session_age": 0.0},
            **base,
        ),
        TaskEvent(
            name=events.STEP_STARTED,
            step=0,
            step_kind="model",
            step_name="chat",
            attempt=1,
            data={"model": "m1", "prompt": CONTENT},
            **base,
        ),
        TaskEvent(
            name=events.STEP_COMPLETED,
            step=0,
            step_kind="model",
            step_name="chat",
            attempt=1,
            data={
                "duration": 0.5,
                "finish_reason": "stop",
                "usage": {"prompt_tokens": 10, "completion_tokens": 2},
                "context_tokens": 12,
                "context_limit": 100,
                "output": CONTENT,
                "api_key": SECRET,
            },
            **base,
        ),
        TaskEvent(
            name=events.CONTEXT_COMPACTED,
            data={
                "strategy": "summarize",
                "messages": [CONTENT, CONTENT],
                "tokens_before": 90,
                "tokens_after": 30,
            },
            **base,
        ),
        TaskEvent(
            name=events.STEP_RETRYING,
            step=1,
            step_kind="tool",
            step_name="search",
            attempt=1,
            data={"error": error, "delay": 0.25},
            **base,
        ),
        TaskEvent(
            name=events.STEP_FAILED,
            step=1,
            step_kind="tool",
            step_name="search",
            attempt=2,
            data={"error": error},
            **base,
        ),
        TaskEvent(
            name=events.TASK_FAILED,
            data={"error": error, "step_error": True, "duration": 1.0, "session_age": 1.0},
            **base,
        ),
    ]


def test_log_observer_logs_every_event_without_contents() -> None:
    with tlog.capture_logs() as logs:
        observer = tlog.LogObserver()
        for e in sample_events():
            observer.on_event(e)
    assert [r["event"] for r in logs] == [e.name for e in sample_events()]
    assert [r["level"] for r in logs] == [
        "info",
        "info",
        "info",
        "info",
        "warning",
        "error",
        "error",
    ]
    for r in logs:
        assert (r["tenant"], r["session"], r["task"], r["worker"]) == ("acme", "s1", "t1", "w1")
        assert r["logger"] == "tether.events"
        dumped = json.dumps(r)
        assert CONTENT not in dumped and SECRET not in dumped
    completed = logs[2]
    assert completed["step"] == 0 and completed["attempt"] == 1
    assert completed["usage"] == {"prompt_tokens": 10, "completion_tokens": 2}
    assert completed["context_tokens"] == 12 and completed["finish_reason"] == "stop"
    assert logs[3]["messages"] == 2
    assert logs[4]["error"] == {"type": "tool", "error_class": "ToolFailed", "retryable": False}
    assert logs[4]["delay"] == 0.25 and logs[4]["step_name"] == "search"


def test_log_observer_debug_logs_everything() -> None:
    with tlog.capture_logs() as logs:
        observer = tlog.LogObserver(debug=True)
        for e in sample_events():
            observer.on_event(e)
    assert logs[2]["output"] == CONTENT
    assert logs[4]["error"]["message"] == f"tool failed: {CONTENT}"


def test_log_observer_data_cannot_clobber_ids_or_record_fields() -> None:
    e = TaskEvent(
        name=events.STEP_COMPLETED,
        tenant="acme",
        session_id="s1",
        task_id="t1",
        agent="a",
        data={"task": "other", "message": "m", "args": 1},
    )
    with tlog.capture_logs() as logs:
        tlog.LogObserver(debug=True).on_event(e)
    (r,) = logs
    assert r["task"] == "t1" and r["data_task"] == "other"
    assert r["data_message"] == "m" and r["data_args"] == 1


def test_log_observer_respects_level() -> None:
    logger = logging.getLogger("tether.quiet")
    with tlog.capture_logs("tether.quiet") as logs:
        logger.setLevel(logging.WARNING)
        observer = tlog.LogObserver(logger)
        for e in sample_events():
            observer.on_event(e)
    assert [r["level"] for r in logs] == ["warning", "error", "error"]
