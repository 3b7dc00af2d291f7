"""DESIGN.md's example agent. Offline it uses ScriptedModel; set TETHER_MODEL_URL
(and TETHER_MODEL) to point it at an OpenAI-compatible endpoint instead.

The offline model also writes the session summary the context policy asks for once a
long session no longer fits its window, so a session can run task after task."""

from __future__ import annotations

import os

from tether import Agent, Model, ModelRequest, OpenAIModel, ScriptedModel, ToolContext, tool
from tether.context.summarize import RESUMMARY_INSTRUCTIONS, SUMMARY_INSTRUCTIONS
from tether.models.scripted import Reply, reply_index

COUNTING: list[Reply] = [*(ScriptedModel.call("record", n=i) for i in range(1, 11)), "done"]


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
    return ScriptedModel(_offline)


def _offline(request: ModelRequest) -> Reply:
    """Count to ten each turn; asked for a summary, write a short one (a pure function
    of the request, as every ScriptedModel reply is)."""
    first = request.messages[0].content if request.messages else None
    if first in (SUMMARY_INSTRUCTIONS, RESUMMARY_INSTRUCTIONS):
        folded = (request.messages[-1].content or "").count("[message ")
        return f"Earlier turns: the user said go and 1 to 10 were recorded ({folded} more folded)."
    return COUNTING[min(reply_index(request.messages), len(COUNTING) - 1)]


agent = Agent(
    name="counter",
    model=_model(),
    instructions="Call record for 1..10, then say done.",
    tools=[record],
)
