"""An OpenAI Agents SDK agent with a handoff, run durably by tether as it is.

    tether run examples/openai_agents_handoff.py:triage "I was charged twice for order 42"
    python examples/openai_agents_handoff.py "I was charged twice for order 42"

The agents are plain Agents SDK agents: tether journals each model call and each
``refund`` call as a step, so a crashed worker resumes after the last one, and
``refund`` uses ``tether.current_step().idempotency_key`` so a re-run refunds once.

Offline (no ``TETHER_MODEL_URL``) they talk to tether's stand-in OpenAI-compatible
server, started here, whose scripted answers send the customer from triage to billing,
which refunds. Set ``TETHER_MODEL_URL``, ``TETHER_MODEL`` and ``OPENAI_API_KEY`` to
use a real endpoint.
"""

from __future__ import annotations

import os
import sys

from agents import Agent, OpenAIChatCompletionsModel, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

import tether
from tether import ModelRequest, Runtime, ScriptedModel
from tether.models.scripted import Reply
from tether.testing import StandInModelServer

REFUNDS: dict[str, int] = {}
"""Refunds made, by idempotency key: a stand-in for a payment API that deduplicates."""


@function_tool
def refund(order_id: str, amount_cents: int) -> str:
    """Refund part of an order to the customer's card."""
    step = tether.current_step()
    step.heartbeat()
    REFUNDS.setdefault(step.idempotency_key, amount_cents)  # once per key, however re-run
    return f"refunded {amount_cents} cents on order {order_id} (refund {step.idempotency_key})"


def _offline_script(request: ModelRequest) -> Reply:
    system = request.messages[0].content or ""
    answered = [m for m in request.messages if m.role == "tool" and "refunded" in (m.content or "")]
    if system.startswith("Route"):
        return ScriptedModel.call("transfer_to_billing")
    if not answered:
        return ScriptedModel.call("refund", order_id="42", amount_cents=1999)
    return f"Done: {answered[-1].content}. Sorry for the trouble!"


OFFLINE: StandInModelServer | None = None


def _model() -> OpenAIChatCompletionsModel:
    global OFFLINE
    url = os.environ.get("TETHER_MODEL_URL")
    if url is None:
        set_tracing_disabled(True)  # offline: nothing to send traces to
        OFFLINE = StandInModelServer(_offline_script)
        url = OFFLINE.base_url
    client = AsyncOpenAI(base_url=url, api_key=os.environ.get("OPENAI_API_KEY", "offline"))
    return OpenAIChatCompletionsModel(
        model=os.environ.get("TETHER_MODEL", "gpt-4o-mini"), openai_client=client
    )


model = _model()
billing = Agent(
    name="billing",
    instructions="You handle billing. Refund a double charge with the refund tool, then "
    "tell the customer what you did.",
    model=model,
    tools=[refund],
)
triage = Agent(
    name="triage",
    instructions="Route the customer: hand billing questions to the billing agent.",
    model=model,
    handoffs=[billing],
)


if __name__ == "__main__":
    with Runtime(os.environ.get("TETHER_STORE", "sqlite:///openai_agents_handoff.db")) as rt:
        rt.register(triage)
        task = rt.submit("triage", " ".join(sys.argv[1:]) or "I was charged twice for order 42")
        result = rt.run(task.id)
        print(result.status, result.output)
