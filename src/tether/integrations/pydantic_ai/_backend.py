"""The durable unit of Pydantic AI's builder, as one journaled tether step.

Pydantic AI's ``CallableOperationBackend`` hands every durable operation (a model
request, a tool's argument validation and call, an MCP call, a compaction, a
capability's operation) to ``execute`` with a body that runs it and returns its JSON.
Here that body runs inside ``execution.context.TaskRun.run_step``: replayed from the journal when
the task ran it before, run and committed otherwise, with tether's retries, timeouts,
heartbeats, events, metrics and spans. Model requests are ``model`` steps, tool calls
``tool`` steps, compactions ``summarize`` steps, the rest ``custom`` steps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, assert_never

from pydantic_ai import RunContext
from pydantic_ai.durable_exec import (
    CallableOperationBackend,
    CapabilityOperationId,
    DurableOperationId,
    DurableOperationNamer,
    EventStreamHandlerId,
    ModelCancelSuspendedResponseId,
    ModelCompactMessagesId,
    ModelRequestId,
    RoleBasedOperationConfig,
    ToolsetCallToolId,
    ToolsetGetInstructionsId,
    ToolsetGetToolsId,
    ToolsetValidateToolArgumentsId,
)
from pydantic_ai.durable_exec._operation_names import DurableInvocationName
from pydantic_core import to_jsonable_python

from tether import errors, types
from tether.integrations.pydantic_ai import _errors, _messages

if TYPE_CHECKING:
    from tether.integrations.pydantic_ai._run import TaskRun


class TetherNamer(DurableOperationNamer):
    """Journal names of the durable units. They are stored in the journal and compared
    on replay, so they must not change: a tool step is named by its tool, a model step
    by its model, as tether's own agent names them."""

    def operation_name(self, operation_id: DurableOperationId) -> str:
        match operation_id:
            case ModelRequestId(model_name=model_name):
                return model_name
            case ModelCompactMessagesId(model_name=model_name):
                return f"compact:{model_name}"
            case ModelCancelSuspendedResponseId(model_name=model_name):
                return f"cancel:{model_name}"
            case EventStreamHandlerId():
                return "event_stream_handler"
            case CapabilityOperationId(capability_id=capability_id, operation=operation):
                return f"capability:{capability_id}.{operation}"
            case ToolsetGetToolsId(toolset_id=toolset_id):
                return f"toolset:{toolset_id}.get_tools"
            case ToolsetGetInstructionsId(toolset_id=toolset_id):
                return f"toolset:{toolset_id}.get_instructions"
            case ToolsetValidateToolArgumentsId(toolset_id=toolset_id):
                return f"toolset:{toolset_id}.validate"
            case ToolsetCallToolId(toolset_id=toolset_id):
                return f"toolset:{toolset_id}.call"
        assert_never(operation_id)

    def invocation_name(
        self, operation_id: DurableOperationId, *, label: str | None
    ) -> DurableInvocationName:
        if label is not None and isinstance(operation_id, ToolsetCallToolId):
            return DurableInvocationName(label)
        if label is not None and isinstance(operation_id, ToolsetValidateToolArgumentsId):
            return DurableInvocationName(f"{label}.validate")
        return DurableInvocationName(self.operation_name(operation_id))


class TetherBackend(CallableOperationBackend[None]):
    """Runs each durable unit as a step of the task that runs the agent."""

    def __init__(self, current: Callable[[], TaskRun | None]) -> None:
        super().__init__(
            namer=TetherNamer(),
            config=RoleBasedOperationConfig(model=None, event=None, capability=None, tool=None),
        )
        self._current = current

    async def execute(
        self,
        *,
        operation_id: DurableOperationId,
        name: str,
        body: Callable[[], Awaitable[object]],
        cache_key: tuple[object, ...],
        config: None,
    ) -> object:
        run = self._current()
        if run is None:  # pragma: no cover - the capability routes nothing outside a task
            raise errors.WorkflowFailed(
                f"Pydantic AI asked for durable unit {name!r} outside a tether task"
            )
        if isinstance(operation_id, ModelRequestId):
            return await run.model_step(name, body, _run_context(cache_key))
        if isinstance(operation_id, ToolsetCallToolId):
            return await run.other_step("tool", name, _tool_inputs(cache_key), body, "tool")
        if isinstance(operation_id, ToolsetValidateToolArgumentsId):
            return await run.other_step("custom", name, _tool_inputs(cache_key), body, "tool")
        if isinstance(operation_id, ModelCompactMessagesId):
            return await run.other_step("summarize", name, _inputs(cache_key), body, "model")
        return await run.other_step("custom", name, _inputs(cache_key), body, "agent")


def _run_context(cache_key: tuple[object, ...]) -> RunContext[Any]:
    for item in reversed(cache_key):
        if isinstance(item, RunContext):
            return item
    raise errors.WorkflowFailed("a Pydantic AI model request came without its run context")


def _tool_inputs(cache_key: tuple[object, ...]) -> dict[str, Any]:
    """A tool call's step inputs: its name, arguments and the model's call id."""
    name, args = cache_key[0], cache_key[1]
    ctx = next((c for c in cache_key if isinstance(c, RunContext)), None)
    return {
        "tool": name,
        "args": _jsonable(args),
        "call_id": ctx.tool_call_id if ctx is not None else None,
    }


def _inputs(cache_key: tuple[object, ...]) -> list[Any]:
    """Any other unit's inputs, without its run context (which a replay rebuilds)."""
    return [_jsonable(c) for c in cache_key if not isinstance(c, RunContext)]


def _jsonable(value: Any) -> Any:
    # Objects without a JSON form are named by type: a repr could hold an address,
    # which would differ on every run and fail every replay.
    return _messages.stable(
        to_jsonable_python(value, fallback=lambda v: type(v).__qualname__, serialize_unknown=False)
    )


async def run_body(body: Callable[[], Awaitable[object]], where: str) -> Any:
    """The unit's body, its Pydantic AI exceptions classified for tether's retry policy."""
    try:
        return await body()
    except errors.TetherError:
        raise
    except Exception as exc:
        raise _errors.classify(exc, where=where) from exc


def usage_of(payload: Any) -> types.Usage | None:
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    return types.Usage(
        prompt_tokens=int(usage.get("input_tokens") or 0),
        completion_tokens=int(usage.get("output_tokens") or 0),
    )
