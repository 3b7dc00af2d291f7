"""The Agents SDK's tool approvals (``function_tool(needs_approval=…)``) as tether's
durable waits.

When the model calls a tool that needs approval, ``Runner.run`` ends with
``interruptions``. The workflow then answers each one, in order, with tether's
approval wait (``execution.approvals.ask``): the task emits
``tool.approval_requested`` and waits holding no lease until ``tether approve`` /
``tether deny --reason`` (or the HTTP routes) answer; then it approves or rejects the
item on the run's ``RunState`` and runs on from that state. The wait is a journaled
step, so a resumed task replays its model steps, reaches the same interruption, and
gets the same answer without waiting again. A rejected call does not run; the model
reads tether's denial text (with the reason) as its result.
"""

from __future__ import annotations

from typing import Any

from agents import RunState
from agents.items import ToolApprovalItem

from tether.execution import approvals
from tether.execution.context import TaskRun


async def decide(ctx: TaskRun, state: RunState[Any], pending: list[ToolApprovalItem]) -> None:
    """Wait for a person's answer to each of ``pending`` and record it on ``state``."""
    for item in pending:
        name = item.name or "?"
        decision = await approvals.ask(
            ctx, tool=name, arguments=item.arguments, call_id=item.call_id
        )
        if decision.approved:
            state.approve(item)
        else:
            state.reject(item, rejection_message=approvals.denial_text(name, decision.reason))
