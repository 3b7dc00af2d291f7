"""The workload on tether: an ``Agent`` whose model is a ``ScriptedModel`` (instant,
deterministic) and whose every step appends one ~500-byte message to the session.

The task's input says how many steps to take (``"steps=N …"``). The model answers
with a call to the ``note`` tool (arguments ~450 bytes) until the task has taken its
steps, then with a final ~500-byte answer; the tool returns ~500 bytes. So a task is
model, tool, model, tool, … and each step adds one message.

``agent`` and ``slow`` can be loaded by ``tether worker bench/tether_workload.py:agent``.
"""

from __future__ import annotations

import asyncio
import os

from bench.common import BODY, StepClock, body
from tether import Agent, ScriptedModel, tool, types
from tether.models.scripted import Reply

CLOCK = StepClock()
"""Marks of every step's work in this process (the suite reads them)."""
HOOKS: dict[int, list[object]] = {}
"""history length → callables run (untimed) when a step with that history begins."""
TOOL_SLEEP = float(os.environ.get("BENCH_TOOL_SLEEP", "1.0"))


def task_input(steps: int) -> str:
    return f"steps={steps} " + BODY


def _target(request: types.ModelRequest) -> tuple[int, int]:
    """(steps asked for, steps taken) for the task the request belongs to."""
    taken = 0
    for message in reversed(request.messages):
        if message.role == "user":
            return int((message.content or "steps=1").split()[0].split("=")[1]), taken
        taken += 1
    return 1, taken


def script(request: types.ModelRequest) -> Reply:
    asked, taken = _target(request)
    if taken + 1 >= asked:
        return body(len(request.messages))
    return ScriptedModel.call("note", text=body(len(request.messages))[:440])


class ClockedModel:
    """A ``ScriptedModel`` whose time is marked, so it is not counted as the runtime's."""

    def __init__(self, inner: ScriptedModel) -> None:
        self.inner = inner
        self.name = inner.name
        self.context_window = inner.context_window
        self.max_output_tokens = inner.max_output_tokens

    async def complete(self, request: types.ModelRequest) -> types.ModelResponse:
        history = len(request.messages)
        CLOCK.enter(history)
        for hook in HOOKS.get(history, ()):
            hook()  # type: ignore[operator]
        response = self.inner.reply(request)
        CLOCK.exit()
        return response

    async def aclose(self) -> None:
        return None


def make_agent(name: str = "bench", *, tool_sleep: float = 0.0) -> Agent:
    model = ClockedModel(
        ScriptedModel(script, name="instant", context_window=10**9, max_output_tokens=1024)
    )

    @tool(name="note")
    async def timed_note(text: str) -> str:
        """Write a note; returns ~500 bytes."""
        # One session at a time is clocked: the tool step follows that session's model step.
        hist = CLOCK.marks[-1][0] + 1 if CLOCK.marks else 0
        CLOCK.enter(hist)
        for hook in HOOKS.get(hist, ()):
            hook()  # type: ignore[operator]
        if tool_sleep:
            await asyncio.sleep(tool_sleep)
        CLOCK.exit()
        return text[::-1] + BODY[:60]

    return Agent(name, model, tools=[timed_note], max_steps=10**6, retry_budget=None)


agent = make_agent("bench")
slow = make_agent("bench-slow", tool_sleep=TOOL_SLEEP)
