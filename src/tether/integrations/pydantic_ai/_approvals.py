"""Pydantic AI's tool approvals (``requires_approval=True``, ``ApprovalRequired``) as
tether's durable waits.

Pydantic AI hands the calls that need approval to its capabilities'
``handle_deferred_tool_calls`` hook before it runs them. Inside a task,
``TetherDurability`` answers each one, in the model's order, with tether's approval
wait (``execution.approvals.ask``): the task emits ``tool.approval_requested`` and waits
holding no lease until ``tether approve`` / ``tether deny --reason`` (or the HTTP
routes) answer. The wait is a journaled step, so a replay gets the same answer without
waiting again. An approved call runs as a journaled tool step; a denied one does not
run, and the model reads tether's denial text (with the reason) as its result.

Calls deferred for external execution (``CallDeferred``) are left to Pydantic AI.
"""

from __future__ import annotations

from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, ToolDenied

from tether.execution import approvals
from tether.integrations.pydantic_ai._run import TaskRun


async def resolve(run: TaskRun, requests: DeferredToolRequests) -> DeferredToolResults | None:
    """A decision for every call awaiting approval; None when none does."""
    if not requests.approvals:
        return None
    results = DeferredToolResults()
    for call in requests.approvals:
        decision = await approvals.ask(
            run.ctx,
            tool=call.tool_name,
            arguments=call.args_as_json_str(),
            call_id=call.tool_call_id,
        )
        results.approvals[call.tool_call_id] = (
            True
            if decision.approved
            else ToolDenied(approvals.denial_text(call.tool_name, decision.reason))
        )
    return results
