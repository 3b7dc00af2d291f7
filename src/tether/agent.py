"""Agent: the built-in durable agent loop, written on the same step API users have.

build the context → model step → one tool step per tool call → repeat until the
model answers without tool calls, or ``max_steps`` model turns end the task with a
classified error. The context is built by ``tether.context``'s manager within the
``ContextPolicy``'s budget; a request the model server still refuses as too long
gets one compaction and one retry, then the task fails with ``ContextOverflow``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import pydantic

from tether import errors, retry, types
from tether.context import memory, truncation
from tether.context.planner import ContextPlanner
from tether.context.policy import ContextPolicy
from tether.context.window import Entry
from tether.execution import approvals, structured, tool_calls
from tether.execution.context import Heartbeat, StepCodec, StepSpec, TaskContext, TaskRun, task_run
from tether.models.base import Model
from tether.store.base import MemoryItem
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
        context: ContextPolicy | None = None,
        tool_choice: str | None = None,
        reset_tool_choice: bool = True,
        parallel_tool_calls: bool = True,
        output_type: type[pydantic.BaseModel] | None = None,
        output_retries: int = 2,
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
        self.tool_choice = _checked_tool_choice(name, tool_choice, self.tools)
        """``auto``, ``required``, ``none`` or a tool's name, for the first model turn;
        after a turn that called tools it goes back to the server's default unless
        ``reset_tool_choice`` is False (a forced choice would loop for ever)."""
        self.reset_tool_choice = reset_tool_choice
        self.parallel_tool_calls = parallel_tool_calls
        """Run the tool calls of one turn concurrently (each its own step and key)."""
        self.output = (
            structured.OutputSpec(
                output_type,
                via_tool=getattr(model, "structured_output", "tool") == "tool",
                retries=output_retries,
            )
            if output_type is not None
            else None
        )
        self.offered = dict(self.tools)
        if self.output is not None and self.output.tool is not None:
            self.offered[structured.FINAL_TOOL] = self.output.tool
        self.max_output_tokens = max_output_tokens
        self.context = context or ContextPolicy()
        self.budget = self.context.resolve(
            model.context_window, max_output_tokens or model.max_output_tokens
        )
        self.counter = self.context.make_counter()
        self.embedder = self.context.make_embedder()
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

    async def __call__(self, context: TaskContext, input: str) -> Any:
        ctx = task_run(context)
        window = self._window(ctx)
        history = [Entry(m.seq, m.message) for m in ctx.history]
        choice = self._first_tool_choice()
        judge = structured.Judge(self.output, self.name) if self.output else None
        for _turn in range(self.max_steps):
            index, response = await self._model_turn(ctx, window, history, choice)
            history.append(Entry(ctx.appended_by(index)[-1], response.message))
            calls = response.message.tool_calls
            if not calls and self.output is None:
                return response.message.content or ""
            if calls:
                if self.reset_tool_choice and not (self.output and self.output.via_tool):
                    choice = None  # kept while the answer itself must be a tool call
                history.extend(await self._answer_calls(ctx, calls))
            if judge and (answer := await judge.after_turn(ctx, response.message, history)):
                return answer.value
        raise errors.MaxStepsExceeded(
            f"agent {self.name!r} made {self.max_steps} model calls without a final answer; "
            "raise max_steps or change the instructions so the model finishes"
        )

    async def _answer_calls(self, ctx: TaskRun, calls: Sequence[types.ToolCall]) -> list[Entry]:
        """The turn's tool messages, in the model's order. Calls to tools that need a
        person's approval wait for it first (holding no lease); a turn with such calls
        then runs its calls one after another, any other turn concurrently."""
        decisions = await approvals.review(ctx, self.offered, calls)  # may wait for people
        if all(d is None for d in decisions):
            done = await tool_calls.run_tool_calls(
                ctx, self.offered, calls, concurrent=self.parallel_tool_calls
            )
            return [Entry(seq, message) for seq, message in done]
        answered: list[Entry] = []
        for call, decision in zip(calls, decisions, strict=True):
            index = ctx.step_index
            result = await approvals.answer(ctx, self.offered.get(call.name), call, decision)
            answered.append(Entry(ctx.appended_by(index)[-1], result))
        return answered

    def _first_tool_choice(self) -> str | None:
        if self.output is not None and self.output.via_tool and self.tool_choice is None:
            return "required"  # the answer is a tool call: never plain text
        return self.tool_choice

    async def _model_turn(
        self,
        ctx: TaskRun,
        window: ContextPlanner,
        history: list[Entry],
        tool_choice: str | None = None,
    ) -> tuple[int, types.ModelResponse]:
        """One model step on a request that fits (its index, its answer); after a
        server-side overflow, one compaction and one retry."""
        recovered = False
        while True:
            prepared = await window.prepare(history)
            request = types.ModelRequest(
                messages=prepared.messages,
                tools=window.tools,
                max_tokens=self.budget.reserve_output,
                tool_choice=tool_choice,
                output_schema=self.output.request_schema if self.output else None,
            )
            index = ctx.step_index
            try:
                return index, await ctx.call_model(
                    self.model,
                    request,
                    session_state=prepared.observe,
                    prompt_check=truncation.Check(
                        prepared.raw,
                        self.context.truncation_ratio,
                        strict=self.context.server_truncation == "fail",
                    ),
                )
            except errors.ContextOverflow:
                if recovered or not await window.recover(history):
                    raise
                recovered = True

    def _window(self, ctx: TaskRun) -> ContextPlanner:
        return ContextPlanner(
            policy=self.context,
            budget=self.budget,
            system=self.system_messages(),
            tools=tuple(t.spec for t in self.offered.values()),
            journal=_PlannerSteps(ctx, self.retries),
            session_state=ctx.session_state,
            complete=self.model.complete,
            summarizer=self.model.name,
            memory_access=_SessionMemory(ctx),
            counter=self.counter,
            embedder=self.embedder,
        )


def _checked_tool_choice(agent: str, choice: str | None, tools: dict[str, Tool]) -> str | None:
    if choice is None or choice in types.TOOL_CHOICE_MODES or choice in tools:
        return choice
    raise errors.InvalidInput(
        f"agent {agent!r}: tool_choice {choice!r} is neither auto, required, none nor one of "
        f"its tools ({', '.join(tools) or 'none'})"
    )


class _PlannerSteps:
    """The context planner's steps (summaries, embeddings), as journaled steps of this task."""

    def __init__(self, ctx: TaskRun, retries: retry.Retries) -> None:
        self._ctx = ctx
        self._retries = retries
        self._running: int | None = None

    @property
    def task_id(self) -> str:
        return self._ctx.task_id

    @property
    def replaying(self) -> bool:
        return self._ctx.replaying

    async def step(
        self,
        kind: Literal["summarize", "custom"],
        name: str,
        inputs: Any,
        execute: Callable[[], Awaitable[dict[str, Any]]],
        state: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> dict[str, Any]:
        index = self._ctx.step_index

        async def run(attempt: int, beat: Heartbeat) -> dict[str, Any]:
            self._running = index
            try:
                return await execute()
            finally:
                self._running = None

        summarizing = kind == "summarize"
        spec: StepSpec[dict[str, Any]] = StepSpec(
            kind,
            name,
            inputs,
            self._retries.model if summarizing else self._retries.custom,
            where="model" if summarizing else "agent",
            codec=StepCodec(session_state=state) if state is not None else StepCodec(),
        )
        return await self._ctx.run_step(spec, run)

    def emit(self, name: str, **data: Any) -> None:
        step = self._running if self._running is not None else self._ctx.step_index
        self._ctx.emitter.emit(name, step=step, **data)


class _SessionMemory:
    """The session's vector memory in the store; writes fenced by the task's lease."""

    def __init__(self, ctx: TaskRun) -> None:
        self._ctx = ctx

    async def add(self, items: Sequence[memory.Memory]) -> None:
        ctx = self._ctx
        await ctx.add_memory(
            [MemoryItem(i.seq, i.role, i.text, i.vector, task_id=ctx.task_id) for i in items]
        )

    async def search(self, vector: Sequence[float], k: int) -> list[tuple[memory.Memory, float]]:
        hits = await self._ctx.search_memory(vector, k)
        return [
            (memory.Memory(h.item.seq, h.item.role, h.item.text, h.item.vector), h.score)
            for h in hits
        ]
