"""Tool approval in the agent loop: a ``@tool(requires_approval=True)`` runs only once a
person said yes.

Before the tools of a model turn run, each call to such a tool waits, in the model's
order, for its answer: the task emits ``tool.approval_requested`` (tool, arguments,
call id, the signal name to answer) and waits holding no lease
(``wait_for_signal("approval.<step>")``). ``tether approve`` / ``tether deny --reason``
(and ``POST /v1/tasks/{id}/approve|deny``) answer it. An approved call runs as any
other; a denied one does not run, and its tool message tells the model why.

The integrations (Pydantic AI's ``requires_approval``, the Agents SDK's
``needs_approval``) ask through ``ask`` and word a denial with ``denial_text``, so every
framework's approval is the same wait, event, answer and text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from tether import retry, tools, types
from tether.execution import signals, waits
from tether.execution.context import Heartbeat, StepCodec, StepSpec, TaskRun
from tether.observe import events


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    approved: bool
    reason: str | None = None

    @staticmethod
    def of(data: Any) -> Decision:
        """An answer as sent; anything but ``{"approved": true}`` is a denial."""
        if isinstance(data, dict):
            reason = data.get("reason")
            return Decision(data.get("approved") is True, str(reason) if reason else None)
        return Decision(False, None)


async def review(
    ctx: TaskRun, available: Mapping[str, tools.Tool], calls: Sequence[types.ToolCall]
) -> list[Decision | None]:
    """One decision per call (None: the tool needs no approval), asked in order."""
    decisions: list[Decision | None] = []
    for call in calls:
        tool = available.get(call.name)
        if tool is None or not tool.requires_approval:
            decisions.append(None)
            continue
        decisions.append(await _ask(ctx, tool, call))
    return decisions


async def _ask(ctx: TaskRun, tool: tools.Tool, call: types.ToolCall) -> Decision:
    return await ask(ctx, tool=tool.name, arguments=call.arguments, call_id=call.id)


async def ask(ctx: TaskRun, *, tool: str, arguments: Any, call_id: str | None) -> Decision:
    """Wait (a journaled step, holding no lease) for a person's answer to one call of
    ``tool``; ``tool.approval_requested`` says what is asked when the wait begins."""
    name = f"{signals.APPROVAL_PREFIX}{ctx.step_index}"
    index = ctx.step_index

    def announce() -> None:
        ctx.emitter.emit(
            events.TOOL_APPROVAL_REQUESTED,
            step=index,
            tool=tool,
            arguments=arguments,
            tool_call_id=call_id,
            signal=name,
        )

    shown = arguments if not isinstance(arguments, str) else _clip(arguments)
    about = {"tool": tool, "arguments": shown, "tool_call_id": call_id}
    return Decision.of(await waits.wait_for_signal(ctx, name, announce=announce, about=about))


ABOUT_CHARS = 8_000
"""Characters of a call's arguments kept with the task's wait (the event has them all)."""


def _clip(text: str) -> str:
    return text if len(text) <= ABOUT_CHARS else text[:ABOUT_CHARS] + " …"


def denial_text(tool: str, reason: str | None) -> str:
    """What the model reads in place of a denied call's result."""
    because = reason or "no reason was given"
    return (
        f"A person denied this call to {tool}, so the tool did not run. Reason: {because}. "
        "Do not call it again with the same arguments; answer with what you have, or ask."
    )


async def answer(
    ctx: TaskRun, tool: tools.Tool | None, call: types.ToolCall, decision: Decision | None
) -> types.Message:
    """The call's tool message: the tool's result, or, when denied, the denial."""
    if decision is None or decision.approved:
        return await ctx.run_tool_call(tool, call)
    name = tool.name if tool is not None else call.name
    because = decision.reason or "no reason was given"
    text = denial_text(name, decision.reason)
    message = types.Message(role="tool", content=text, tool_call_id=call.id, name=name)

    async def execute(attempt: int, beat: Heartbeat) -> types.Message:
        return message

    spec: StepSpec[types.Message] = StepSpec(
        "tool",
        name,
        {"call_id": call.id, "arguments": call.arguments, "denied": because},
        retry.NO_RETRY,
        where="tool",
        codec=StepCodec(
            encode=lambda m: m.to_dict(), decode=types.Message.from_dict, messages=lambda m: (m,)
        ),
        started_data={"tool_call_id": call.id, "denied": True},
    )
    return await ctx.run_step(spec, execute)
