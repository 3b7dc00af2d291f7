"""The spec that crash-test worker subprocesses run, and the test side that drives it.

A worker runs ``tests/crash/workload.py:chaos``: an ``Agent`` on ``OpenAIModel``
pointed at the stand-in model server the test runs (``TETHER_TEST_MODEL_URL``), with
one sync tool, ``record``, that writes every execution (idempotency key, task,
session, step, worker, start and end time) into a SQLite file of its own
(``TETHER_TEST_EFFECTS``), so a test can count how many times each step really ran.

Each task's input says what the model should do: ``[TAG] task J calls K pause P``.
``script`` (the stand-in server's model, in the test process) answers it by calling
``record(tag=TAG, n=i, pause=P)`` for i in 0..K-1, then ``[TAG] task J done``, as a
pure function of the request, so a replayed step sees the answer it saw before.
``TAG`` names the session, so every request and tool call can be checked for
messages of another session.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tether.agent import Agent
from tether.models import scripted
from tether.models.openai import OpenAIModel
from tether.tools import ToolContext, tool
from tether.types import Message, ModelRequest

_INPUT = re.compile(r"^\[(?P<tag>[^\]]+)\] task (?P<j>\d+) calls (?P<k>\d+) pause (?P<p>[\d.]+)$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    task_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    tag TEXT NOT NULL,
    n INTEGER NOT NULL,
    worker TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL,
    ended REAL
)
"""


def task_input(tag: str, j: int, calls: int, pause: float) -> str:
    return f"[{tag}] task {j} calls {calls} pause {pause}"


@dataclass(frozen=True, slots=True)
class Order:
    tag: str
    j: int
    calls: int
    pause: float


def parse_input(text: str | None) -> Order:
    found = _INPUT.match(text or "")
    if found is None:
        raise ValueError(f"not a workload input: {text!r}")
    return Order(found["tag"], int(found["j"]), int(found["k"]), float(found["p"]))


def _last_user(messages: tuple[Message, ...]) -> Message:
    return next(m for m in reversed(messages) if m.role == "user")


def script(request: ModelRequest) -> scripted.Reply:
    """The model: call ``record`` ``calls`` times, then answer; a pure function of the request."""
    order = parse_input(_last_user(request.messages).content)
    done = scripted.reply_index(request.messages)
    if done < order.calls:
        return scripted.ScriptedModel.call("record", tag=order.tag, n=done, pause=order.pause)
    return f"[{order.tag}] task {order.j} done"


# ---- the effects file -----------------------------------------------------------


@contextlib.contextmanager
def effects_db(path: str | Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(str(path), timeout=60, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(_SCHEMA)
        conn.row_factory = sqlite3.Row
        yield conn
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class Execution:
    key: str
    task_id: str
    session_id: str
    step: int
    attempt: int
    tag: str
    n: int
    worker: str
    pid: int
    started: float
    ended: float | None


def executions(path: str | Path) -> list[Execution]:
    """Every recorded tool execution, in the order they started."""
    with effects_db(path) as conn:
        rows = conn.execute(
            "SELECT key, task_id, session_id, step, attempt, tag, n, worker, pid, started, ended"
            " FROM executions ORDER BY id"
        ).fetchall()
    return [Execution(*tuple(r)) for r in rows]


# ---- the worker side --------------------------------------------------------------

_local = threading.local()


def _effects() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(os.environ["TETHER_TEST_EFFECTS"], timeout=60, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(_SCHEMA)
        _local.conn = conn
    return conn


@tool
def record(tag: str, n: int, pause: float, ctx: ToolContext) -> str:
    """Record that call ``n`` of session ``tag`` ran, taking ``pause`` seconds."""
    conn = _effects()
    cur = conn.execute(
        "INSERT INTO executions (key, task_id, session_id, step, attempt, tag, n, worker, pid,"
        " started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ctx.idempotency_key, ctx.task_id, ctx.session_id, ctx.step_index, ctx.attempt, tag,
            n, os.environ.get("TETHER_TEST_WORKER", "?"), os.getpid(), time.time(),
        ),
    )  # fmt: skip
    row = cur.lastrowid
    deadline = time.monotonic() + pause
    while True:
        ctx.heartbeat()
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(left, 0.05))
    conn.execute("UPDATE executions SET ended = ? WHERE id = ?", (time.time(), row))
    return f"[{tag}] recorded {n} with key {ctx.idempotency_key}"


chaos = Agent(
    name="chaos",
    model=OpenAIModel(
        base_url=os.environ.get("TETHER_TEST_MODEL_URL", "http://127.0.0.1:9/v1"),
        model="stand-in",
        context_window=1_000_000,
    ),
    instructions="Call record as told, then say done.",
    tools=[record],
)
