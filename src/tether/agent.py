"""Agent: the built-in durable agent loop, written on the same step API users have.

model step → one tool step per tool call → repeat until the model answers without
tool calls, or ``max_steps`` model turns end the task with a classified error.
"""

from __future__ import annotations

from collections.abc import Sequence

from tether import errors, retry, types
from tether.execution.context import TaskContext
from tether.models.base import Model
from tether.tools import Tool


class Agent:
    def __init__(
        self,
        name: str,
        model: Model,
        instructions: str = "",
        tools: Sequence[Tool] = (),
        *,
        max_steps: int = 25,
        retry_budget: int | None = 20,
        model_retry: retry.RetryPolicy | None = None,
        tool_retry: retry.RetryPolicy | None = None,
        max_output_tokens: int | None = None,
    ) -> None:
        if not name or not name.replace("-", "_").replace(".", "_").isidentifier():
            raise errors.InvalidInput(
                f"agent name {name!r} must be non-empty letters, digits, '_', '-' or '.'"
            )
        if max_steps < 1:
            raise errors.InvalidInput("max_steps must be at least 1")
        self.name = name
        self.model = model
        self.instructions = instructions
        self.tools = {t.name: t for t in tools}
        if len(self.tools) != len(tools):
            raise errors.InvalidInput(f"agent {name!r} has two tools with the same name")
        self.max_steps = max_steps
        self.max_output_tokens = max_output_tokens
        defaults = retry.Retries()
        self.retries = retry.Retries(
            model=model_retry or defaults.model,
            tool=tool_retry or defaults.tool,
            custom=defaults.custom,
            budget=retry_budget,
            truncation_retries=defaults.truncation_retries,
        )

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, model={self.model.name!r}, tools={list(self.tools)})"

    def system_messages(self) -> list[types.Message]:
        return (
            [types.Message(role="system", content=self.instructions)] if self.instructions else []
        )

    async def __call__(self, ctx: TaskContext, input: str) -> str:
        messages = self.system_messages() + [m.message for m in ctx.history]
        specs = tuple(t.spec for t in self.tools.values())
        for _turn in range(self.max_steps):
            request = types.ModelRequest(
                messages=tuple(messages), tools=specs, max_tokens=self.max_output_tokens
            )
            response = await ctx.call_model(self.model, request)
            messages.append(response.message)
            if not response.message.tool_calls:
                return response.message.content or ""
            for call in response.message.tool_calls:
                result = await ctx.run_tool_call(self.tools.get(call.name), call)
                messages.append(result)
        raise errors.MaxStepsExceeded(
            f"agent {self.name!r} made {self.max_steps} model calls without a final answer; "
            "raise max_steps or change the instructions so the model finishes"
        )
