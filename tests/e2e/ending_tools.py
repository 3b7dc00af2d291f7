"""Workflows for `tether worker` subprocesses whose sync tools never return.

Each workflow calls one tool. ``sleep`` blocks in ``time.sleep`` and ``socket`` in a
blocking ``recv`` on a socket nobody writes to, both for an hour, on every worker
but ``rescuer`` (``TETHER_TEST_WORKER``), which answers at once: so a task stuck on
one worker is seen to finish once handed over. ``leak`` times out after 0.3 s and
leaves its thread blocked; ``fast`` answers at once. A tool marks each entry with a
file ``<tool>.<pid>`` in ``TETHER_TEST_MARKS``.

``hog`` leaks: its step 0 keeps ``TETHER_TEST_GROW`` bytes of touched memory for good,
its step 1 waits (heartbeating) until the test creates ``linger.open`` in the marks
folder, its step 2 answers at once. ``gated`` is ``linger`` alone.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

from tether import RetryPolicy, ToolContext, tool
from tether.execution.context import TaskContext
from tether.execution.runner import FunctionWorkflow
from tether.tools import Tool

HOUR = 3600.0
ONCE = RetryPolicy(max_attempts=1)


def _enter(name: str) -> bool:
    """Mark the entry; True when this worker is to block."""
    (Path(os.environ["TETHER_TEST_MARKS"]) / f"{name}.{os.getpid()}").touch()
    return os.environ.get("TETHER_TEST_WORKER") != "rescuer"


@tool(timeout=HOUR)
def sleep() -> str:
    """Sleep for an hour (in C: time.sleep)."""
    if _enter("sleep"):
        time.sleep(HOUR)
    return "slept"


@tool(timeout=HOUR)
def read() -> str:
    """Wait for a byte that never comes (in C: a blocking socket read)."""
    if _enter("read"):
        mine, theirs = socket.socketpair()
        with mine, theirs:
            mine.recv(1)
    return "read"


@tool(timeout=0.3, retry=ONCE)
def leak() -> str:
    """Time out, and keep the thread."""
    _enter("leak")
    time.sleep(HOUR)
    return "never"


@tool
def fast() -> str:
    """Answer at once."""
    _enter("fast")
    return "fast"


_kept: list[bytes] = []


@tool
def grow() -> int:
    """Keep a block of memory for good (every page written, so it is resident)."""
    size = int(os.environ["TETHER_TEST_GROW"])
    _kept.append(b"\x01" * size)
    return size


@tool
async def linger(ctx: ToolContext) -> str:
    """Wait for the gate, heartbeating."""
    _enter("linger")
    gate = Path(os.environ["TETHER_TEST_MARKS"]) / "linger.open"
    while not gate.exists():
        ctx.heartbeat()
        await asyncio.sleep(0.05)
    return "lingered"


async def _hog(ctx: TaskContext, input: str) -> Any:
    return [await ctx.call_tool(grow), await ctx.call_tool(linger), await ctx.call_tool(fast)]


def _one_tool(the_tool: Tool, name: str | None = None) -> FunctionWorkflow:
    async def run(ctx: TaskContext, input: str) -> Any:
        return await ctx.call_tool(the_tool, {})

    return FunctionWorkflow(run, name=name or the_tool.name)


sleeper = _one_tool(sleep)
reader = _one_tool(read)
leaker = _one_tool(leak)
quick = _one_tool(fast)
hog = FunctionWorkflow(_hog, name="hog")
gated = _one_tool(linger, "gated")
