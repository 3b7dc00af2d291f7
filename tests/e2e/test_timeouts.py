"""Timeouts and heartbeats: a tool that reports is never timed out while it reports,
a tool silent past its heartbeat timeout is stuck (retried or failed by policy), a
tool that never reports is timed out, and a model call has its own timeout. Real
async tools, real sync tools in threads, a real HTTP model server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import (
    Agent,
    OpenAIModel,
    RetryPolicy,
    Runtime,
    ScriptedModel,
    Tool,
    ToolContext,
    tool,
)
from tether.execution.context import TaskContext
from tether.execution.settings import ExecutionSettings
from tether.observe import events
from tether.runtime import TaskResult
from tether.testing import Fault, StandInModelServer
from tether.types import StepAttempt, StepRecord

# Generous margins: beats every 0.05 s against limits of 0.5 s; silences of seconds.
BEAT = 0.05
LIMIT = 0.5

release = threading.Event()
"""Lets a sync tool that was declared stuck (its thread cannot be killed) end early."""


class Recorder:
    def __init__(self) -> None:
        self.delays: list[float] = []
        self.seen: list[events.TaskEvent] = []

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)

    def on_event(self, event: events.TaskEvent) -> None:
        self.seen.append(event)

    def named(self, name: str) -> list[events.TaskEvent]:
        return [e for e in self.seen if e.name == name]


@pytest.fixture(autouse=True)
def _release_threads() -> Iterator[None]:
    release.clear()
    yield
    release.set()


def make_runtime(tmp_path: Path, recorder: Recorder, **settings: Any) -> Runtime:
    return Runtime(
        f"sqlite:///{tmp_path / 't.db'}",
        worker_id="timeouts:run",
        settings=ExecutionSettings(sleep=recorder.sleep, rand=lambda: 0.5, **settings),
        observers=[recorder],
    )


def run_tool(
    tmp_path: Path, the_tool: Tool, recorder: Recorder, **settings: Any
) -> tuple[TaskResult, list[StepAttempt], list[StepRecord]]:
    """Run ``the_tool`` once as a journaled step of a one-step workflow."""
    with make_runtime(tmp_path, recorder, **settings) as rt:

        @rt.workflow(name="one_tool")
        async def one_tool(ctx: TaskContext, input: str) -> Any:
            return await ctx.call_tool(the_tool, {})

        task = rt.submit("one_tool", "go")
        result = rt.run(task.id)
        attempts = rt.run_on_store(lambda s: s.list_attempts(task.id))
        journal = rt.run_on_store(lambda s: s.load_journal(task.id))
    return result, attempts, journal


# ---- heartbeats keep a long tool alive -----------------------------------------------


@tool(timeout=LIMIT, heartbeat_timeout=LIMIT)
async def long_async(ctx: ToolContext) -> str:
    """Work for three limits' worth, reporting all along."""
    started = time.monotonic()
    while time.monotonic() - started < 3 * LIMIT:
        await asyncio.sleep(BEAT)
        ctx.heartbeat()
    return f"async done on attempt {ctx.attempt}"


@tool(timeout=LIMIT, heartbeat_timeout=LIMIT)
def long_sync(ctx: ToolContext) -> str:
    """The same in a thread."""
    started = time.monotonic()
    while time.monotonic() - started < 3 * LIMIT:
        time.sleep(BEAT)
        ctx.heartbeat()
    return f"sync done on attempt {ctx.attempt}"


@pytest.mark.parametrize(("the_tool", "kind"), [(long_async, "async"), (long_sync, "sync")])
def test_a_tool_that_reports_is_not_timed_out(tmp_path: Path, the_tool: Tool, kind: str) -> None:
    recorder = Recorder()
    result, attempts, journal = run_tool(tmp_path, the_tool, recorder)
    assert result.status == "completed", result.error
    assert result.output == f"{kind} done on attempt 1"
    assert attempts == []
    assert journal[0].attempts == 1
    assert recorder.named(events.STEP_STUCK) == []


# ---- a silent tool is stuck: retried by policy ----------------------------------------


@tool(timeout=LIMIT, heartbeat_timeout=LIMIT, retry=RetryPolicy(initial=0.2, max_attempts=3))
async def stalls_async(ctx: ToolContext) -> str:
    """Report, then go silent on the first attempt."""
    ctx.heartbeat()
    await asyncio.sleep(BEAT)
    ctx.heartbeat()
    if ctx.attempt == 1:
        await asyncio.sleep(30)  # cancelled when declared stuck
    return f"recovered on attempt {ctx.attempt}"


@tool(timeout=LIMIT, heartbeat_timeout=LIMIT, retry=RetryPolicy(initial=0.2, max_attempts=3))
def stalls_sync(ctx: ToolContext) -> str:
    """The same in a thread (which cannot be cancelled: it is abandoned)."""
    ctx.heartbeat()
    time.sleep(BEAT)
    ctx.heartbeat()
    if ctx.attempt == 1:
        release.wait(10)
        return "the abandoned first attempt"
    return f"recovered on attempt {ctx.attempt}"


@pytest.mark.parametrize("the_tool", [stalls_async, stalls_sync], ids=["async", "sync"])
def test_a_silent_tool_is_stuck_and_retried(tmp_path: Path, the_tool: Tool) -> None:
    recorder = Recorder()
    result, attempts, journal = run_tool(tmp_path, the_tool, recorder)
    assert result.status == "completed", result.error
    assert result.output == "recovered on attempt 2"
    [attempt] = attempts
    assert attempt.index == 0 and attempt.attempt == 1
    assert (attempt.error["type"], attempt.error["error_class"]) == ("tool", "StepStuck")
    assert attempt.error["retryable"] is True
    assert f"heartbeat timeout {LIMIT}s" in attempt.error["message"]
    assert recorder.delays == [attempt.delay]
    assert 0.0 <= attempt.delay <= 0.2
    [stuck] = recorder.named(events.STEP_STUCK)
    assert stuck.step == 0
    assert stuck.data["heartbeat_timeout"] == LIMIT
    assert stuck.data["silent_for"] >= LIMIT
    assert journal[0].attempts == 2 and journal[0].status == "completed"


@tool(timeout=LIMIT, heartbeat_timeout=LIMIT, retry=RetryPolicy(max_attempts=1))
def stalls_for_good(ctx: ToolContext) -> str:
    """Report once, then hang (in a thread)."""
    ctx.heartbeat()
    release.wait(10)
    return "too late"


def test_a_stuck_tool_without_retries_fails_the_step(tmp_path: Path) -> None:
    recorder = Recorder()
    result, attempts, journal = run_tool(tmp_path, stalls_for_good, recorder)
    assert result.status == "failed"
    assert attempts == []
    assert recorder.delays == []
    assert result.error is not None
    assert (result.error["type"], result.error["error_class"]) == ("tool", "StepStuck")
    assert "gave up after 1 attempt," in result.error["message"]
    assert journal[0].status == "failed"


def test_an_agent_reads_a_stuck_tool_as_an_error_message(tmp_path: Path) -> None:
    recorder = Recorder()
    with StandInModelServer([ScriptedModel.call("stalls_for_good"), "done"]) as server:
        with make_runtime(tmp_path, recorder) as rt:
            model = OpenAIModel(base_url=server.base_url, model="stand-in")
            rt.register(Agent("a", model, tools=[stalls_for_good]))
            task = rt.submit("a", "go")
            result = rt.run(task.id)
        tool_message = server.requests[-1]["messages"][-1]
    assert result.status == "completed"
    assert tool_message["role"] == "tool"
    assert tool_message["content"].startswith("Error (StepStuck): tool step 'stalls_for_good'")


# ---- a tool that never reports is timed out ---------------------------------------------


@tool(timeout=LIMIT, retry=RetryPolicy(initial=0.2, max_attempts=2))
async def never_reports(ctx: ToolContext) -> str:
    """Silent from the start on the first attempt."""
    if ctx.attempt == 1:
        await asyncio.sleep(30)
    return "fast the second time"


def test_a_tool_that_never_reports_times_out(tmp_path: Path) -> None:
    recorder = Recorder()
    result, attempts, _ = run_tool(tmp_path, never_reports, recorder)
    assert result.status == "completed", result.error
    assert result.output == "fast the second time"
    [attempt] = attempts
    assert (attempt.error["type"], attempt.error["error_class"]) == ("tool", "Timeout")
    assert "timeout of 0.5s" in attempt.error["message"]
    assert recorder.named(events.STEP_STUCK) == []


@tool(retry=RetryPolicy(max_attempts=1))
def no_own_timeout() -> str:
    """Hang, with only the settings' default timeout to stop it."""
    release.wait(10)
    return "too late"


def test_the_settings_give_the_default_tool_timeout(tmp_path: Path) -> None:
    recorder = Recorder()
    result, _, _ = run_tool(tmp_path, no_own_timeout, recorder, tool_timeout=LIMIT)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error["type"], result.error["error_class"]) == ("tool", "Timeout")
    assert f"timeout of {LIMIT}s" in result.error["message"]


# ---- a model call slower than its timeout -------------------------------------------------


def test_a_model_reply_slower_than_the_timeout_is_retried(tmp_path: Path) -> None:
    recorder = Recorder()
    with StandInModelServer("done") as server:
        server.inject(Fault.delay(5.0))
        with make_runtime(tmp_path, recorder) as rt:
            model = OpenAIModel(base_url=server.base_url, model="stand-in", timeout=LIMIT)
            policy = RetryPolicy(initial=0.2, max_attempts=3)
            rt.register(Agent("a", model, model_retry=policy))
            task = rt.submit("a", "go")
            result = rt.run(task.id)
            attempts = rt.run_on_store(lambda s: s.list_attempts(task.id))
        assert server.count == 2
    assert result.status == "completed", result.error
    assert result.output == "done"
    [attempt] = attempts
    assert (attempt.error["type"], attempt.error["error_class"]) == ("model", "Timeout")
    assert attempt.error["retryable"] is True
    assert 0.0 <= attempt.delay <= 0.2


def test_a_model_that_is_always_too_slow_fails_the_task(tmp_path: Path) -> None:
    recorder = Recorder()
    with StandInModelServer("done") as server:
        server.inject(Fault.delay(5.0), Fault.delay(5.0))
        with make_runtime(tmp_path, recorder) as rt:
            model = OpenAIModel(base_url=server.base_url, model="stand-in", timeout=LIMIT)
            rt.register(Agent("a", model, model_retry=RetryPolicy(initial=0.2, max_attempts=2)))
            task = rt.submit("a", "go")
            result = rt.run(task.id)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error["type"], result.error["error_class"]) == ("model", "Timeout")
    assert "gave up after 2 attempts" in result.error["message"]
