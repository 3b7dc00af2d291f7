"""Workflows a real `tether worker` runs for the Prometheus query tests.

``steady`` runs two steps that succeed; ``doomed`` fails its step 0 for good (a
``ToolFailed``); ``flaky``'s step 0 fails once retryably, then succeeds; ``silent``'s
step never heartbeats and waits until the test creates ``TETHER_TEST_GATE``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from tether import RetryPolicy, ToolContext, errors, tool
from tether.execution.context import TaskContext
from tether.execution.runner import FunctionWorkflow

FAST = RetryPolicy(initial=0.01, max_delay=0.02, max_attempts=3)


@tool
def ok(n: int) -> int:
    """Succeed."""
    return n


@tool
def boom() -> str:
    """Fail for good."""
    raise errors.ToolFailed("boom: fails on purpose")


@tool(retry=FAST)
def shaky(ctx: ToolContext) -> str:
    """Fail the first attempt retryably."""
    if ctx.attempt == 1:
        raise errors.ToolRetryable("shaky: first attempt fails on purpose")
    return "steady now"


@tool(timeout=120.0)
async def quiet() -> str:
    """Never heartbeat; wait for the gate."""
    gate = Path(os.environ["TETHER_TEST_GATE"])
    while not gate.exists():
        await asyncio.sleep(0.05)
    return "opened"


async def _steady(ctx: TaskContext, input: str) -> Any:
    return [await ctx.call_tool(ok, {"n": 0}), await ctx.call_tool(ok, {"n": 1})]


async def _doomed(ctx: TaskContext, input: str) -> Any:
    return await ctx.call_tool(boom, {})


async def _flaky(ctx: TaskContext, input: str) -> Any:
    return await ctx.call_tool(shaky, {})


async def _silent(ctx: TaskContext, input: str) -> Any:
    return await ctx.call_tool(quiet, {})


steady = FunctionWorkflow(_steady, name="steady")
doomed = FunctionWorkflow(_doomed, name="doomed")
flaky = FunctionWorkflow(_flaky, name="flaky")
silent = FunctionWorkflow(_silent, name="silent")
