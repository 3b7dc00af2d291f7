"""An Agents SDK agent as a tether durable function.

The Runner's loop runs inside the task, from the session's earlier turns (and this
task's input, which joined the session when the task first started). Model calls,
function-tool calls, guardrails and handoff callbacks are journaled steps (see
``graph`` and ``scope``); a resumed task replays them and runs on from the first
unrecorded one. A tool call that needs approval waits for a person (``approvals``).
When the run ends, one last step appends its new items to the session
and records the output: the final output's text, or the JSON of a structured output.
"""

from __future__ import annotations

from typing import Any

import pydantic
from agents import Agent, RunConfig
from agents.items import ToolApprovalItem
from agents.run_config import DEFAULT_MAX_TURNS

from tether import errors, retry
from tether.execution.context import Heartbeat, StepCodec, StepSpec, TaskContext, task_run
from tether.integrations.openai_agents import (
    approvals,
    codec,
    conversation,
    failures,
    graph,
    scope,
)

TURN_STEP = "openai_agents.turn"


class OpenAIAgentsWorkflow:
    """``agent`` as a durable function, registered under the agent's name.

    ``context_window`` and ``reserve_output`` size the session's token accounting
    (the SDK does not know its model's window); ``warn_at`` is where ``context.pressure``
    fires. ``run_config`` and ``context`` go to ``Runner.run`` as they are (with the
    changes ``graph.run_config`` makes)."""

    def __init__(
        self,
        agent: Agent[Any],
        *,
        name: str | None = None,
        max_turns: int = DEFAULT_MAX_TURNS,
        run_config: RunConfig | None = None,
        context: Any = None,
        context_window: int = 128_000,
        reserve_output: int = 4_096,
        warn_at: float = 0.8,
        retries: retry.Retries | None = None,
    ) -> None:
        if not isinstance(agent, Agent):
            raise errors.InvalidInput(
                f"OpenAIAgentsWorkflow takes an agents.Agent, not a {type(agent).__name__}"
            )
        if not 0 < warn_at <= 1:
            raise errors.InvalidInput(f"warn_at must be in (0, 1], not {warn_at}")
        if reserve_output >= context_window:
            raise errors.InvalidInput(
                f"reserve_output ({reserve_output}) must be below context_window ({context_window})"
            )
        self.wraps = agent
        self.name = name or agent.name
        self.max_turns = max_turns
        self.run_config = run_config
        self.context = context
        self.context_settings = scope.ContextSettings(context_window, reserve_output, warn_at)
        self.retries = retries or retry.Retries()

    def __repr__(self) -> str:
        return f"OpenAIAgentsWorkflow({self.name!r})"

    async def __call__(self, context: TaskContext, input: str) -> Any:
        ctx = task_run(context)
        runner = graph.runner()
        running = scope.Scope(ctx, self.context_settings)
        items: list[Any] = conversation.to_items(m.message for m in ctx.history)
        if not items:
            items = [{"role": "user", "content": input}]
        token = running.bind()
        config = graph.run_config(running, self.run_config)
        try:
            result = await runner.run(
                self.wraps,
                items,
                max_turns=self.max_turns,
                run_config=config,
                context=self.context,
            )
            while result.interruptions:  # tools with needs_approval: a person answers
                state = result.to_state()
                await approvals.decide(ctx, state, list(result.interruptions))
                result = await runner.run(
                    self.wraps, state, max_turns=self.max_turns, run_config=config
                )
        except Exception as exc:
            found = failures.translate(exc)
            if found is None or found is exc:
                raise
            raise found from exc
        finally:
            scope.Scope.unbind(token)
            if self.run_config is None:
                await config.model_provider.aclose()
        new_items = [
            item.to_input_item()
            for item in result.new_items
            if not isinstance(item, ToolApprovalItem)  # the request, not the conversation
        ]
        output = final_output(result.final_output)
        messages = conversation.to_messages(new_items)

        async def finish(attempt: int, beat: Heartbeat) -> Any:
            return {"output": output}

        spec: StepSpec[Any] = StepSpec(
            "custom",
            TURN_STEP,
            {"agent": result.last_agent.name, "items": codec.to_json(new_items)},
            retry.NO_RETRY,
            codec=StepCodec(messages=lambda value: messages),
        )
        recorded = await ctx.run_step(spec, finish)
        return recorded["output"]


def final_output(value: Any) -> Any:
    """The task's output: text as it is, a structured output as its JSON value."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    return pydantic.TypeAdapter(type(value)).dump_python(value, mode="json")
