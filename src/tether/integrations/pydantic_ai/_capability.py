"""``TetherDurability``: the Pydantic AI capability that makes an agent a tether agent.

Built on Pydantic AI's public durable-backend builder (``BaseDurabilityCapability``):
the builder wraps the agent's model, toolsets and capability operations and routes
every durable unit to the backend, which runs it as one journaled tether step
(``_backend``). Outside a tether task the capability is transparent: the agent runs as
a plain Pydantic AI agent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic_ai.durable_exec import (
    JSON_CODEC,
    BaseDurabilityCapability,
    DurabilityEngineSpec,
    DurableOperationBackend,
)
from pydantic_ai.durable_exec._operation_backend import in_durable_unit
from pydantic_ai.models import Model
from pydantic_ai.tools import AgentDepsT, DeferredToolRequests, DeferredToolResults, RunContext

from tether import errors, retry, types
from tether.integrations.pydantic_ai import _approvals, _backend, _run


@dataclass(init=False, kw_only=True)
class TetherDurability(BaseDurabilityCapability[AgentDepsT]):
    """Run this agent's model requests, tool calls, MCP calls and compactions as
    journaled tether steps when the agent runs as a tether task.

    ``Agent(..., name="support", capabilities=[TetherDurability()])``, then
    ``runtime.register(agent)`` or ``tether run file.py:agent "…"``.

    ``context_window`` (default: the model profile's) is what the session's reported
    input tokens are measured against; at ``warn_at`` of it a ``context.pressure``
    event fires. ``model_retry``, ``tool_retry`` and ``retry_budget`` are the task's
    retry settings, as on tether's ``Agent``. ``deps(task)`` builds the run's ``deps``
    from the task record (at every run of the task, a resumed one too, so it must build
    the same deps from the same task).

    A tool with ``requires_approval=True`` (or one raising ``ApprovalRequired``) waits
    for ``tether approve`` / ``tether deny`` as a durable wait, holding no worker.
    """

    engine_spec = DurabilityEngineSpec(
        engine_name="tether",
        durable_unit_noun="step",
        durable_unit_plural="steps",
        durable_container_noun="task",
        codec=JSON_CODEC,
        serialization_failure=lambda exc: errors.WorkflowFailed(
            f"a Pydantic AI result cannot be journaled as JSON: {exc}"
        ),
        wrapped_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        toolset_lifecycles={
            "function": "enter-always",
            "mcp": "enter-in-durable-unit",
            "dynamic": "enter-never",
        },
        # A step's index is its place in the task; tool calls started together would
        # take indexes in whatever order they reach the journal, and a replay (which
        # does not wait) would number them differently.
        sequential_tools_in_durable_context=True,
        journal_discovery=True,
    )

    def __init__(
        self,
        *,
        models: Mapping[str, Model] | None = None,
        name: str | None = None,
        context_window: int | None = None,
        warn_at: float = 0.8,
        model_retry: retry.RetryPolicy | None = None,
        tool_retry: retry.RetryPolicy | None = None,
        retry_budget: int | None = 20,
        deps: Callable[[types.TaskRecord], Any] | None = None,
    ) -> None:
        super().__init__(models=models, name=name)
        if not 0 < warn_at <= 1:
            raise errors.InvalidInput(f"warn_at must be in (0, 1], not {warn_at}")
        self.deps = deps
        self.context_window = context_window
        self.warn_at = warn_at
        defaults = retry.Retries()
        self.retries = retry.Retries(
            model=model_retry or defaults.model,
            tool=tool_retry or defaults.tool,
            custom=defaults.custom,
            budget=retry_budget,
        )
        self._backend = _backend.TetherBackend(_run.CURRENT.get)

    @property
    def in_durable_context(self) -> bool:
        # Inside a step (a tool running a sub-agent) the step itself is the journal
        # entry: nested units run inline.
        return _run.CURRENT.get() is not None and not in_durable_unit()

    def get_durable_operation_backend(self) -> DurableOperationBackend[Any]:
        return self._backend

    def get_default_run_id(self) -> str | None:
        run = _run.CURRENT.get()
        return run.next_run_id() if run is not None and self.in_durable_context else None

    def get_default_conversation_id(self, run_id: str) -> str | None:
        run = _run.CURRENT.get()
        return run.ctx.session_id if run is not None else None

    async def get_run_start_time(self, run_id: str) -> datetime | None:
        run = _run.CURRENT.get()
        if run is None:
            return None
        return datetime.fromtimestamp(run.ctx.task.created_at, UTC)

    async def handle_deferred_tool_calls(
        self, ctx: RunContext[AgentDepsT], *, requests: DeferredToolRequests
    ) -> DeferredToolResults | None:
        """Calls awaiting approval wait for a person through tether (``_approvals``);
        outside a task (or inside a step) Pydantic AI's own handling stays."""
        run = _run.CURRENT.get()
        if run is None or not self.in_durable_context:
            return None
        return await _approvals.resolve(run, requests)
