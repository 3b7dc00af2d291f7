"""Agents SDK agents the integration tests run, in-process and in worker processes.

The model is the SDK's own ``OpenAIChatCompletionsModel`` with an ``AsyncOpenAI``
client pointed at the stand-in server (``TETHER_TEST_MODEL_URL``); ``script`` is what
that server answers, a pure function of the request, told apart by each agent's
instructions. Tools write what they do to files the test reads:
``TETHER_TEST_EFFECTS`` (the effects ledger: one line per side effect, deduplicated
by idempotency key), ``TETHER_TEST_MARKS`` (every start of a tool or guardrail, with
its key) and ``TETHER_TEST_GATE`` (``record`` of ``n == 2`` waits until this file
exists).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from agents import (
    Agent,
    GuardrailFunctionOutput,
    OpenAIChatCompletionsModel,
    RunContextWrapper,
    function_tool,
    input_guardrail,
    set_tracing_disabled,
)
from openai import AsyncOpenAI
from pydantic import BaseModel

import tether
from tether import types
from tether.models.scripted import ScriptedModel

set_tracing_disabled(True)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _mark(what: str) -> None:
    marks = _env_path("TETHER_TEST_MARKS")
    if marks is not None:
        with marks.open("a") as f:
            f.write(what + "\n")


def effects(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@function_tool
def record(n: int) -> str:
    """Record a number once, however often this call is re-run."""
    step = tether.current_step()
    key = step.idempotency_key
    _mark(f"record {n} {key} attempt={step.attempt}")
    gate = _env_path("TETHER_TEST_GATE")
    if n == 2 and gate is not None:
        while not gate.exists():
            step.heartbeat()
            time.sleep(0.05)
    ledger = _env_path("TETHER_TEST_EFFECTS")
    if ledger is not None and key not in {e["key"] for e in effects(ledger)}:
        with ledger.open("a") as f:
            f.write(json.dumps({"key": key, "n": n}) + "\n")
    return f"recorded {n}"


@function_tool
def refund(amount: int) -> str:
    """Refund an amount."""
    _mark(f"refund {amount} {tether.current_step().idempotency_key}")
    return f"refunded {amount}"


@function_tool(needs_approval=True)
def pay(amount: int) -> str:
    """Pay an amount out, once a person approves."""
    _mark(f"pay {amount} {tether.current_step().idempotency_key}")
    return f"paid {amount}"


@function_tool
def lookup(word: str) -> str:
    """Look a word up in the dictionary."""
    return {"hello": "bonjour"}.get(word, "?")


@input_guardrail
def polite(ctx: RunContextWrapper[Any], agent: Agent[Any], data: Any) -> GuardrailFunctionOutput:
    """Refuses input that says "forbidden"; marks each run."""
    _mark(f"guardrail {tether.current_step().idempotency_key}")
    text = json.dumps(data)
    return GuardrailFunctionOutput(
        output_info={"checked": len(text)}, tripwire_triggered="forbidden" in text
    )


class Ticket(BaseModel):
    topic: str
    urgent: bool


def model() -> OpenAIChatCompletionsModel:
    client = AsyncOpenAI(
        base_url=os.environ.get("TETHER_TEST_MODEL_URL", "http://127.0.0.1:9/v1"),
        api_key="stand-in",
        max_retries=0,
        # no pooled connection outlives the event loop of the task that made it
        default_headers={"Connection": "close"},
    )
    return OpenAIChatCompletionsModel(model="stand-in", openai_client=client)


def build() -> dict[str, Agent[Any]]:
    m = model()
    billing = Agent(name="billing", instructions="BILLING", model=m, tools=[refund])
    translator = Agent(name="translator", instructions="TRANSLATE", model=m, tools=[lookup])
    return {
        "counter": Agent(
            name="counter",
            instructions="COUNTER",
            model=m,
            tools=[record],
            input_guardrails=[polite],
        ),
        "triage": Agent(name="triage", instructions="TRIAGE", model=m, handoffs=[billing]),
        "manager": Agent(
            name="manager",
            instructions="MANAGER",
            model=m,
            tools=[translator.as_tool("translate", "Translate a word into French.")],
        ),
        "ticketer": Agent(name="ticketer", instructions="TICKET", model=m, output_type=Ticket),
        "banker": Agent(name="banker", instructions="BANK", model=m, tools=[pay]),
    }


_agents = build()
counter = _agents["counter"]
triage = _agents["triage"]
manager = _agents["manager"]
ticketer = _agents["ticketer"]
banker = _agents["banker"]


# ---- what the stand-in server answers ------------------------------------------------


def _since_user(request: types.ModelRequest) -> list[types.Message]:
    out: list[types.Message] = []
    for message in reversed(request.messages):
        if message.role == "user":
            break
        out.append(message)
    return out[::-1]


def script(request: types.ModelRequest) -> Any:
    system = request.messages[0].content if request.messages[0].role == "system" else ""
    since = _since_user(request)
    results = [m for m in since if m.role == "tool"]
    last_user = next(m.content for m in reversed(request.messages) if m.role == "user")
    if system == "COUNTER":
        upto = int((last_user or "count 3").split()[-1])
        if len(results) < upto:
            return ScriptedModel.call("record", n=len(results) + 1)
        turns = sum(1 for m in request.messages if m.role == "user")
        return f"recorded 1..{upto} (turn {turns})"
    if system in ("TRIAGE", "DESK"):
        return ScriptedModel.call("transfer_to_billing")
    if system == "BILLING":
        if not any(m.name == "refund" or "refunded" in (m.content or "") for m in results):
            return ScriptedModel.call("refund", amount=5)
        return "refunded 5"
    if system == "MANAGER":
        if not results:
            return ScriptedModel.call("translate", input="hello")
        return f"translated: {results[-1].content}"
    if system == "TRANSLATE":
        if not results:
            return ScriptedModel.call("lookup", word="hello")
        return results[-1].content or "?"
    if system == "BANK":
        if not results:
            return ScriptedModel.call("pay", amount=7)
        return f"bank read: {results[-1].content}"
    if system == "TICKET":
        return json.dumps({"topic": "billing", "urgent": True})
    return "?"
