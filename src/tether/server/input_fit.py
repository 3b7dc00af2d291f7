"""Refuse, at submit, an input that can never fit the agent's context budget.

A 100k-character message to an agent with an 8k-token window was accepted, joined the
session and broke it: no request holding it could ever be sent. An input whose
tokens (with the agent's system prompt and tools, counted by the agent's own counter)
exceed the prompt budget is answered 422 before anything is stored.
"""

from __future__ import annotations

from tether import types
from tether.agent import Agent
from tether.execution.runner import Workflow


def refusal(workflow: Workflow | None, text: str) -> str | None:
    """Why ``text`` can never be sent to ``workflow``'s model, or None when it can."""
    if not isinstance(workflow, Agent):
        return None  # a durable function decides for itself what its input means
    messages = [*workflow.system_messages(), types.Message(role="user", content=text)]
    tools = [t.spec for t in workflow.tools.values()]
    tokens = workflow.counter.count(messages, tools)
    budget = workflow.budget
    if tokens <= budget.budget:
        return None
    return (
        f"the input takes about {tokens} tokens with agent {workflow.name!r}'s instructions "
        f"and tools, more than its prompt budget of {budget.budget} tokens (context window "
        f"{budget.window} minus {budget.reserve_output} reserved for the answer): it can never "
        "be sent to the model; send a shorter input"
    )
