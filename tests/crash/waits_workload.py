"""Workflows the durable-wait tests run in real ``tether worker`` processes.

``input`` carries the test's knobs, so one spec serves every case: a timeout in
seconds, a sleep's length.
"""

from __future__ import annotations

import time
from typing import Any

from tether import Runtime
from tether.execution.context import TaskContext

runtime = Runtime()


@runtime.workflow
async def wait_one(ctx: TaskContext, input: str) -> Any:
    """Wait for signal ``go``; return its data."""
    return await ctx.wait_for_signal("go")


@runtime.workflow
async def wait_two(ctx: TaskContext, input: str) -> list[Any]:
    """Two waits for ``go``: each consumes one signal."""
    first = await ctx.wait_for_signal("go")
    second = await ctx.wait_for_signal("go")
    return [first, second]


@runtime.workflow
async def wait_timeout(ctx: TaskContext, input: str) -> Any:
    """``input`` is ``SECONDS`` (a timeout: SignalTimeout) or ``SECONDS:default``."""
    seconds, _, default = input.partition(":")
    if default:
        return await ctx.wait_for_signal("never", timeout=float(seconds), default=default)
    return await ctx.wait_for_signal("never", timeout=float(seconds))


@runtime.workflow
async def quick(ctx: TaskContext, input: str) -> str:
    await ctx.step("work", lambda: input)
    return f"done {input}"


@runtime.workflow
async def nap(ctx: TaskContext, input: str) -> dict[str, float]:
    """Sleep ``input`` seconds (a durable timer past the worker's threshold); report
    when it was due and when the task went on after it."""
    due = await ctx.step("due", lambda: time.time() + float(input))
    await ctx.sleep(float(input))
    woke = await ctx.step("woke", time.time)
    return {"due": due, "woke": woke}
