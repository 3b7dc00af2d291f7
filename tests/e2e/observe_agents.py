"""The agent the observability tests run in `tether worker` subprocesses.

Its model is the test's stand-in server (``TETHER_OBS_MODEL_URL``); the tests inject
the faults. Its tools misbehave on purpose: ``flaky`` fails its first attempt
retryably, ``hold`` waits until the test opens a gate file (heartbeating meanwhile),
``sticky`` goes silent on its first attempt (a stuck step) and then behaves like
``hold``. Gates live in ``TETHER_OBS_GATES``: ``<name>.entered.<n>`` marks the n-th
time a tool reached the gate, ``<name>.open`` lets it through.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from tether import Agent, OpenAIModel, RetryPolicy, ToolContext, errors, tool
from tether.models.scripted import Reply, ScriptedModel
from tether.types import ModelRequest

MODEL = "stand-in-obs"
FAST = RetryPolicy(initial=0.01, max_delay=0.05, max_attempts=4)
_log = logging.getLogger("observe_agents")


def script(request: ModelRequest) -> Reply:
    """The stand-in's answers: the user's first word picks the tool, a tool result ends it."""
    last = request.messages[-1]
    if last.role != "user":
        return "done"
    words = (last.content or "").split()
    verb, name = words[0], (words[1] if len(words) > 1 else "gate")
    if verb in ("flaky", "hold", "sticky"):
        return ScriptedModel.call(verb, name=name)
    return "done"


def _gates() -> Path:
    return Path(os.environ["TETHER_OBS_GATES"])


def _enter(name: str) -> None:
    gates = _gates()
    n = len(list(gates.glob(f"{name}.entered.*"))) + 1
    (gates / f"{name}.entered.{n}").touch()


async def _wait_open(name: str, ctx: ToolContext) -> str:
    gate = _gates() / f"{name}.open"
    while not gate.exists():
        ctx.heartbeat()
        await asyncio.sleep(0.05)
    return f"{name} opened"


@tool
def flaky(name: str, ctx: ToolContext) -> str:
    """Fail the first attempt (retryably), succeed after."""
    _log.info("tool.flaky", extra={"gate": name})
    if ctx.attempt == 1:
        raise errors.ToolRetryable(f"flaky {name}: first attempt fails on purpose")
    return f"flaky {name} ok"


@tool
async def hold(name: str, ctx: ToolContext) -> str:
    """Wait until the test opens the gate."""
    _enter(name)
    return await _wait_open(name, ctx)


@tool(heartbeat_timeout=0.3, timeout=10.0)
async def sticky(name: str, ctx: ToolContext) -> str:
    """Beat once and go silent on the first attempt; wait for the gate after."""
    if ctx.attempt == 1:
        ctx.heartbeat()
        await asyncio.sleep(30)
    _enter(name)
    return await _wait_open(name, ctx)


agent = Agent(
    "faulty",
    OpenAIModel(
        base_url=os.environ.get("TETHER_OBS_MODEL_URL", "http://127.0.0.1:9/v1"),
        model=MODEL,
        context_window=8192,
        max_output_tokens=64,
    ),
    tools=[flaky, hold, sticky],
    model_retry=FAST,
    tool_retry=FAST,
)
