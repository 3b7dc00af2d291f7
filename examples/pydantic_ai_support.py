"""A Pydantic AI support agent made durable by tether, with a structured answer.

    tether run examples/pydantic_ai_support.py:agent "Where is my order A-1042?"

The agent is plain Pydantic AI: its only tether part is the ``TetherDurability``
capability. Every model request and tool call is a journaled step; a worker killed
mid-task resumes with the steps already done replayed. ``lookup_order`` shows what a
tool does to be safe on re-run: it asks tether for its step's idempotency key.

Offline it runs on Pydantic AI's ``FunctionModel`` (``triage`` below plays the model);
set TETHER_PYDANTIC_AI_MODEL (say ``openai:gpt-5-mini``) to use a real one.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

import tether
from tether.integrations.pydantic_ai import TetherDurability


class SupportAnswer(BaseModel):
    """What the support agent answers: a category, a reply and whether to escalate."""

    category: Literal["order", "billing", "other"]
    reply: str
    escalate: bool
    order_id: str | None = None


ORDERS = {"A-1042": "shipped on Monday, arriving Thursday", "B-7": "waiting for payment"}


def lookup_order(order_id: str) -> str:
    """Look up the status of an order by its id."""
    # Safe on re-run: a side effect (a CRM note, an email) would be keyed by this,
    # which is the same every time this step runs again after a crash.
    key = tether.current_step().idempotency_key
    status = ORDERS.get(order_id, "unknown")
    return f"order {order_id}: {status} (looked up in step {key.rsplit(':', 1)[1]})"


def triage(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """The offline model: look the order up if the question names one, then answer."""
    question = next(
        p.content
        for m in reversed(messages)
        for p in m.parts
        if isinstance(p, UserPromptPart) and isinstance(p.content, str)
    )
    found = re.search(r"\b([A-Z]-\d+)\b", question)
    looked_up = [
        p
        for p in messages[-1].parts
        if isinstance(p, ToolReturnPart) and p.tool_name == "lookup_order"
    ]
    if found and not looked_up:
        return ModelResponse(parts=[ToolCallPart("lookup_order", {"order_id": found.group(1)})])
    billing = any(w in question.lower() for w in ("charge", "refund", "invoice"))
    answer = SupportAnswer(
        category="order" if found else "billing" if billing else "other",
        reply=str(looked_up[0].content) if looked_up else "A colleague will get back to you.",
        escalate=not found,
        order_id=found.group(1) if found else None,
    )
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, answer.model_dump())])


def _model() -> Model | str:
    name = os.environ.get("TETHER_PYDANTIC_AI_MODEL")
    return name if name else FunctionModel(triage, model_name="support-triage")


agent = Agent(
    _model(),
    name="support",
    instructions="You are a support agent. Look orders up before answering about them.",
    output_type=SupportAnswer,
    tools=[lookup_order],
    capabilities=[TetherDurability()],
)
