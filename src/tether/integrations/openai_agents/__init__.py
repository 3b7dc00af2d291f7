"""OpenAI Agents SDK agents as tether tasks: ``runtime.register(agent)`` as it is.

Each ``Model.get_response`` is a journaled ``model`` step and each function-tool call
a ``tool`` step; guardrails and handoff callbacks are ``custom`` steps, run once and
replayed after; agents used as tools and handoff targets journal their own calls. The
session is the conversation: the Runner starts from the session's earlier turns, and
the run's new items join the session when it ends. ``OpenAIAgentsWorkflow`` takes the
run's options (``max_turns``, ``run_config``, the context window); ``workflow_for``
wraps an agent with the defaults.
"""

from __future__ import annotations

from agents import Agent

from tether.integrations.openai_agents.workflow import OpenAIAgentsWorkflow

__all__ = ["OpenAIAgentsWorkflow", "workflow_for"]


def workflow_for(obj: object) -> OpenAIAgentsWorkflow | None:
    """An ``agents.Agent`` as a durable function; None for other objects of the SDK."""
    if isinstance(obj, Agent):
        return OpenAIAgentsWorkflow(obj)
    return None
