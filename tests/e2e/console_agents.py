"""Agents the console's browser test serves: one that calls tools (one of them fails
once, then succeeds), a workflow of N short steps, one that fails for good, and one
whose tool needs a person's approval."""

from __future__ import annotations

import asyncio

from tether import Agent, RetryPolicy, Runtime, ScriptedModel, ToolContext, errors, tool, types
from tether.execution.context import TaskContext
from tether.models.scripted import Reply

runtime = Runtime()


@tool(retry=RetryPolicy(initial=0.01, max_delay=0.05, max_attempts=3))
def lookup(topic: str, ctx: ToolContext) -> str:
    """Look a topic up in the team's notes."""
    if topic == "fencing" and ctx.attempt == 1:
        raise errors.ToolRetryable(f"the notes server timed out looking up {topic!r}")
    return f"notes on {topic}: " + "a lease has an owner, an expiry and an epoch. " * 3


_ANSWERS = (
    ScriptedModel.call("lookup", topic="leases"),
    ScriptedModel.call("lookup", topic="fencing"),
    "Leases expire unless renewed; a fencing epoch makes the store reject writes from a "
    "worker that lost its lease.",
)


def _research(request: types.ModelRequest) -> Reply:
    """Summarise when asked to (the context is full), else follow the script per turn."""
    system = " ".join(m.content or "" for m in request.messages if m.role == "system")
    if "running summary" in system:
        return (
            "The user asked how leases and fencing work. lookup('leases') and "
            "lookup('fencing') returned the team's notes: a lease has an owner, an expiry "
            "and an epoch; the assistant answered that fencing epochs reject stale writes."
        )
    last_user = max(i for i, m in enumerate(request.messages) if m.role == "user")
    turn = sum(1 for m in request.messages[last_user:] if m.role == "assistant")
    return _ANSWERS[min(turn, len(_ANSWERS) - 1)]


runtime.register(
    Agent(
        "research",
        ScriptedModel(_research, context_window=900, max_output_tokens=200),
        instructions="Answer from the notes; call lookup for each topic first.",
        tools=[lookup],
    )
)


async def _pause(i: int, seconds: float) -> int:
    await asyncio.sleep(seconds)
    return i


@runtime.workflow
async def steps(ctx: TaskContext, input: str) -> list[int]:
    """``input`` is ``"N"`` or ``"N:SECONDS"``: N journaled steps of SECONDS each."""
    count, _, pause = input.partition(":")
    done = []
    for i in range(int(count)):
        done.append(await ctx.step(f"s{i}", _pause, i, float(pause or 0.01)))
    return done


def _charge(amount: int) -> str:
    raise errors.InvalidInput(
        f"the card was declined for {amount} EUR: ask the customer for another card"
    )


@runtime.workflow
async def billing(ctx: TaskContext, input: str) -> str:
    """Two steps, the second fails and is not retried."""
    await ctx.step("quote", _pause, 0, 0.01)
    return await ctx.step("charge", _charge, int(input or 40))


@tool(requires_approval=True)
def refund(order: str, amount: int) -> str:
    """Refund an order, once a person approves."""
    return f"refunded {amount} EUR on {order}"


def _refunds(request: types.ModelRequest) -> Reply:
    last = request.messages[-1]
    if last.role == "tool":
        return f"Done: {last.content}"
    return ScriptedModel.call("refund", order="A-1042", amount=40)


runtime.register(Agent("refunds", ScriptedModel(_refunds), tools=[refund]))
