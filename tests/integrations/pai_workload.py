"""The Pydantic AI agent that integration tests run, in this process and in worker processes.

``agent`` (name ``pai_counter``) runs on Pydantic AI's ``FunctionModel``: for the input
``count to K`` it calls the tool ``record(n)`` for n = 1..K, one call per model turn,
then answers ``counted: <what the tool returned, keys left out>``: a pure function of
the messages, so a replayed step sees the answer it saw before.

``record`` is a tool with a side effect made safe on re-run: it asks tether for its
step's idempotency key (``tether.current_step()``) and appends ``key n`` to the effects
ledger (``$TETHER_PAI_DIR/effects.log``) only when that key is not there yet. Every
execution, deduplicated or not, goes to ``starts.log`` (``key n pid``). When the file
``block`` holds ``n``, the call with that n waits, after its effect, until the file
``release`` exists: the test's handle to kill or stop a worker mid-tool. When it holds
``model:T``, the model's turn T waits the same way (``model.log`` says it started).

``TETHER_PAI_VARIANT=changed`` gives the agent other instructions, so a task journaled
by the plain agent no longer replays (non-determinism).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

import tether
from tether.integrations.pydantic_ai import TetherDurability

_ORDER = re.compile(r"count to (\d+)")


def _dir() -> Path:
    return Path(os.environ["TETHER_PAI_DIR"])


async def count(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """The model: one ``record`` call per turn up to the asked number, then the answer."""
    prompts = [
        p.content
        for m in messages
        for p in m.parts
        if isinstance(p, UserPromptPart) and isinstance(p.content, str)
    ]
    found = _ORDER.search(prompts[-1]) if prompts else None
    target = int(found.group(1)) if found else 0
    # Only this prompt's tool results count: the ones after its user prompt.
    last_prompt = max(
        i for i, m in enumerate(messages) if any(isinstance(p, UserPromptPart) for p in m.parts)
    )
    returns = [
        str(p.content).split(" key ")[0]
        for m in messages[last_prompt:]
        for p in m.parts
        if isinstance(p, ToolReturnPart) and p.tool_name == "record"
    ]
    await _maybe_block_model(len(returns) + 1)
    if len(returns) < target:
        return ModelResponse(
            parts=[
                ToolCallPart("record", {"n": len(returns) + 1}, tool_call_id=f"c{len(returns) + 1}")
            ]
        )
    return ModelResponse(parts=[TextPart("counted: " + ", ".join(returns))])


async def _maybe_block_model(turn: int) -> None:
    """With ``block`` holding ``model:T``, model turn T waits until ``release`` exists."""
    base = Path(os.environ.get("TETHER_PAI_DIR", "."))
    block = base / "block"
    if not (block.exists() and block.read_text().strip() == f"model:{turn}"):
        return
    with (base / "model.log").open("a") as f:
        f.write(f"{turn} {os.getpid()}\n")
    while not (base / "release").exists():
        await asyncio.sleep(0.05)


def record(n: int) -> str:
    """Record the number n (a side effect, once per idempotency key)."""
    step = tether.current_step()
    key = step.idempotency_key
    base = _dir()
    with (base / "starts.log").open("a") as f:
        f.write(f"{key} {n} {os.getpid()}\n")
    ledger = base / "effects.log"
    done = ledger.read_text().split("\n") if ledger.exists() else []
    if not any(line.split(" ")[0] == key for line in done if line):
        with ledger.open("a") as f:
            f.write(f"{key} {n}\n")
    block = base / "block"
    if block.exists() and block.read_text().strip() == str(n):
        while not (base / "release").exists():
            step.heartbeat()
            time.sleep(0.05)
    return f"recorded {n} key {key}"


_INSTRUCTIONS = (
    "Count with the record tool."
    if os.environ.get("TETHER_PAI_VARIANT") != "changed"
    else "Count with the record tool, twice as carefully."
)

agent = Agent(
    FunctionModel(count, model_name="counter-model", profile={"context_window": 1000}),
    name="pai_counter",
    instructions=_INSTRUCTIONS,
    tools=[record],
    capabilities=[TetherDurability()],
)
