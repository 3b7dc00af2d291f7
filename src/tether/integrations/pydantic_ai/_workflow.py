"""A Pydantic AI agent carrying ``TetherDurability``, as a tether durable function.

The task's session is the conversation: the agent gets the session's earlier turns as
``message_history`` and the task's input as its prompt; its final output (text, or the
JSON of a structured output) is the task's output.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_ai.agent.abstract import AbstractAgent
from pydantic_core import to_jsonable_python

from tether import errors, retry
from tether.execution.context import TaskContext, TaskRun, task_run
from tether.integrations.pydantic_ai import _errors, _messages, _run, _threads
from tether.integrations.pydantic_ai._capability import TetherDurability


class PydanticAIWorkflow:
    """Runs ``wraps`` (the user's agent, unchanged) as a tether task."""

    def __init__(self, agent: AbstractAgent[Any, Any], durability: TetherDurability[Any]) -> None:
        self.wraps = agent
        self.durability = durability
        self.name = agent.name or durability.name
        self.retries: retry.Retries = durability.retries

    def _deps(self, ctx: TaskRun) -> Any:
        build = self.durability.deps
        return build(ctx.task) if build is not None else None

    def __repr__(self) -> str:
        return f"PydanticAIWorkflow({self.name!r})"

    async def __call__(self, context: TaskContext, input: str) -> Any:
        ctx = task_run(context)
        run = _run.TaskRun(
            ctx=ctx,
            retries=self.retries,
            context_window=self.durability.context_window,
            warn_at=self.durability.warn_at,
        )
        earlier = [m for m in ctx.history if m.seq != ctx.task.input_seq]
        history = _messages.history(earlier)
        run.know(history)
        token = _run.CURRENT.set(run)
        try:
            with AbstractAgent.using_thread_executor(_threads.THREADS):
                result = await self.wraps.run(
                    input, message_history=history or None, deps=self._deps(ctx)
                )
            await run.finish(result.all_messages())
        except BaseException as exc:
            found = _unwrap(exc)
            if found is exc:
                raise
            raise found from exc
        finally:
            _run.CURRENT.reset(token)
        return _output(result.output)


def _unwrap(exc: BaseException) -> BaseException:
    """The error to end the task with: tether's own (a step's final error, a lost lease,
    a cancellation) as it is, out of any exception group; Pydantic AI's classified."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _unwrap(inner)
            if isinstance(found, errors.TetherError | errors.TetherSignal):
                return found
        return exc
    if isinstance(exc, errors.TetherError | errors.TetherSignal):
        return exc
    if isinstance(exc, Exception):
        return _errors.classify(exc, where="agent")
    return exc


def _output(output: Any) -> Any:
    if isinstance(output, str):
        return output
    if isinstance(output, BaseModel):
        return output.model_dump(mode="json")
    return to_jsonable_python(output)


def workflow_for(obj: object) -> PydanticAIWorkflow | None:
    """A Pydantic AI agent with ``TetherDurability`` as a durable function; None for
    Pydantic AI objects that are not agents; an agent without it is refused."""
    if not isinstance(obj, AbstractAgent):
        return None
    durability = TetherDurability.from_agent(obj)
    label = f"Pydantic AI agent {obj.name!r}" if obj.name else "a Pydantic AI agent"
    if durability is None:
        raise errors.InvalidInput(
            f"{label} has no TetherDurability capability, so tether cannot journal its model "
            "requests and tool calls; add it: `from tether.integrations.pydantic_ai import "
            "TetherDurability` and `Agent(..., capabilities=[TetherDurability()])`"
        )
    if not (obj.name or durability.name):  # pragma: no cover - Pydantic AI refuses it first
        raise errors.InvalidInput(
            f"{label} has no name; tether registers agents by name: "
            "`Agent(..., name='support', capabilities=[TetherDurability()])`"
        )
    return PydanticAIWorkflow(obj, durability)
