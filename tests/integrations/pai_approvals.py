"""A Pydantic AI agent whose tool needs a person's approval, for the approval tests (in
this process and in ``tether worker`` processes).

``agent`` (name ``pai_refunder``) runs on ``FunctionModel``: its first turn calls
``refund(amount=5)`` (``requires_approval=True``), and ``refund(amount=6)`` too when the
prompt says ``two``; its next answers ``model read:`` and what the calls returned. Each
model turn appends a line to ``$TETHER_PAI_DIR/model.log``; each run of ``refund``
appends its idempotency key to ``refunds.log``, so a test counts what really ran (and
what was replayed). While the file ``hold`` exists, the turn after the tool results
waits (logged as ``held``): the test's handle to kill a worker in that model call.

``asker`` (name ``pai_asker``) is the same agent whose ``refund`` raises
``ApprovalRequired`` itself until the call is approved.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic_ai import Agent, ApprovalRequired, RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import tether
from tether.integrations.pydantic_ai import TetherDurability


def _log(name: str, line: str) -> None:
    with (Path(os.environ["TETHER_PAI_DIR"]) / name).open("a") as f:
        f.write(line + "\n")


def lines(root: Path, name: str) -> list[str]:
    path = root / name
    return path.read_text().splitlines() if path.exists() else []


async def refunder(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    returns = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    hold = Path(os.environ["TETHER_PAI_DIR"]) / "hold"
    _log("model.log", "held" if returns and hold.exists() else "turn")
    while returns and hold.exists():  # the test kills the worker here
        await asyncio.sleep(0.05)
    if not returns:
        calls = [ToolCallPart("refund", {"amount": 5}, tool_call_id="r1")]
        if "two" in str(messages[0].parts[-1].content):
            calls.append(ToolCallPart("refund", {"amount": 6}, tool_call_id="r2"))
        return ModelResponse(parts=calls)
    return ModelResponse(
        parts=[TextPart("model read: " + " | ".join(str(r.content) for r in returns))]
    )


agent = Agent(
    FunctionModel(refunder, model_name="refunder-model"),
    name="pai_refunder",
    capabilities=[TetherDurability()],
)


@agent.tool_plain(requires_approval=True)
def refund(amount: int) -> str:
    """Refund the customer, once a person approves."""
    _log("refunds.log", f"{amount} {tether.current_step().idempotency_key}")
    return f"refunded {amount}"


asker = Agent(
    FunctionModel(refunder, model_name="refunder-model"),
    name="pai_asker",
    capabilities=[TetherDurability()],
)


@asker.tool(name="refund")
def asking_refund(ctx: RunContext[None], amount: int) -> str:
    """Refund the customer; the tool itself asks for approval first."""
    if not ctx.tool_call_approved:
        raise ApprovalRequired()
    _log("refunds.log", f"{amount} {tether.current_step().idempotency_key}")
    return f"refunded {amount}"
