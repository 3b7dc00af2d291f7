"""DESIGN.md's example agent. Offline it uses ScriptedModel; set TETHER_MODEL_URL
(and TETHER_MODEL) to point it at an OpenAI-compatible endpoint instead."""

from __future__ import annotations

import os

from tether import Agent, OpenAIModel, ScriptedModel, ToolContext, tool
from tether.models.base import Model


@tool
def record(n: int, ctx: ToolContext) -> str:
    """Record a number."""
    ctx.heartbeat()
    return f"recorded {n} with key {ctx.idempotency_key}"


def _model() -> Model:
    url = os.environ.get("TETHER_MODEL_URL")
    if url:
        return OpenAIModel(
            base_url=url, model=os.environ.get("TETHER_MODEL", "any"), context_window=8192
        )
    return ScriptedModel([*(ScriptedModel.call("record", n=i) for i in range(1, 11)), "done"])


agent = Agent(
    name="counter",
    model=_model(),
    instructions="Call record for 1..10, then say done.",
    tools=[record],
)
