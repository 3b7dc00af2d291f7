"""The durable copy of an agent and everything it reaches, built per task.

The user's agent is never changed: each task runs a copy (``Agent.clone``) whose model
is a ``JournaledModel``, whose function tools journal each call, whose guardrails run
before the model (``run_in_parallel=False``, so the journal's order is fixed) and are
journaled, and whose handoffs lead to durable copies too. Agents used as tools run
their nested ``Runner.run`` through ``DurableRunner``, which the integration installs
as the SDK's default runner: inside a task it runs the durable copy of the nested
agent (so its model and tool calls are steps too), elsewhere it changes nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from typing import Any

from agents import Agent, RunConfig
from agents.guardrail import GuardrailFunctionOutput, InputGuardrail, OutputGuardrail
from agents.handoffs import Handoff
from agents.models.interface import Model
from agents.result import RunResult, RunResultStreaming
from agents.run import AgentRunner, get_default_agent_runner, set_default_agent_runner
from agents.run_config import ToolExecutionConfig
from agents.run_context import RunContextWrapper
from agents.tool import FunctionTool, Tool
from agents.tool_context import ToolContext as SdkToolContext

from tether.integrations.openai_agents import codec, scope
from tether.integrations.openai_agents.model import JournaledModel, JournaledProvider


def durable(running: scope.Scope, agent: Agent[Any]) -> Agent[Any]:
    """The durable copy of ``agent`` for this task (one per agent, cycles included)."""
    found = running.clones.get(id(agent))
    if found is not None:
        return found  # type: ignore[no-any-return]
    changes: dict[str, Any] = {}
    settings = agent.model_settings
    timeout = settings.timeout
    if timeout is not None:
        # the step enforces it: an SDK timeout would cancel a step half-way
        settings = dataclasses.replace(settings, timeout=None)
        changes["model_settings"] = settings
    if isinstance(agent.model, Model) and not isinstance(agent.model, JournaledModel):
        changes["model"] = JournaledModel(agent.model, timeout=timeout)
        changes["model_settings"] = settings
    elif timeout is not None and running.provider is not None:
        name = agent.model if isinstance(agent.model, str) else None
        if name is not None or agent.model is None:
            changes["model"] = JournaledModel(
                running.provider.inner.get_model(name), name, timeout=timeout
            )
    clone = agent.clone(**changes)
    running.keep.append(agent)
    running.clones[id(agent)] = clone
    running.clones[id(clone)] = clone
    clone.tools = [_tool(t) for t in agent.tools]
    clone.handoffs = [_handoff(running, h) for h in agent.handoffs]
    clone.input_guardrails = [_input_guardrail(g) for g in agent.input_guardrails]
    clone.output_guardrails = [_output_guardrail(g) for g in agent.output_guardrails]
    return clone


def run_config(running: scope.Scope, given: RunConfig | None) -> RunConfig:
    """``given`` (or the default) with journaled models and guardrails, function tools
    one at a time in the model's order, and the session as the trace group."""
    config = given if given is not None else RunConfig()
    provider = config.model_provider
    if not isinstance(provider, JournaledProvider):
        provider = JournaledProvider(provider)
    running.provider = provider
    settings = config.model_settings
    if settings is not None and settings.timeout is not None:
        running.model_timeout = settings.timeout
        settings = dataclasses.replace(settings, timeout=None)
    model = config.model
    if isinstance(model, Model) and not isinstance(model, JournaledModel):
        model = JournaledModel(model)
    before = config.tool_execution
    execution = ToolExecutionConfig(
        max_function_tool_concurrency=1,
        pre_approval_tool_input_guardrails=before.pre_approval_tool_input_guardrails
        if before is not None
        else False,
    )
    return dataclasses.replace(
        config,
        model_provider=provider,
        model=model,
        model_settings=settings,
        tool_execution=execution,
        input_guardrails=[_input_guardrail(g) for g in config.input_guardrails or ()],
        output_guardrails=[_output_guardrail(g) for g in config.output_guardrails or ()],
        group_id=config.group_id or running.ctx.session_id,
    )


# ---- tools ----------------------------------------------------------------------


def _tool(tool: Tool) -> Tool:
    if not isinstance(tool, FunctionTool) or tool._is_agent_tool:
        # an agent used as a tool runs its own journaled steps (DurableRunner); hosted
        # tools run inside the model call; other local tools are not journaled
        return tool
    if getattr(tool.on_invoke_tool, "__tether_journaled__", False):
        return tool
    original = tool.on_invoke_tool
    timeout = tool.timeout_seconds
    # A @function_tool's invoker turns exceptions into text for the model; inside a
    # step the bare function runs, so tether's retries come first and the text is
    # made from the journaled error.
    bare = getattr(original, "_invoke_tool_impl", None)

    async def invoke(ctx: SdkToolContext[Any], arguments: str) -> Any:
        running = scope.active()
        if running is None:
            return await original(ctx, arguments)
        return await running.tool_step(
            tool,
            ctx,
            arguments,
            bare or original,
            formats_failures=bare is not None,
            timeout=timeout,
        )

    invoke.__tether_journaled__ = True  # type: ignore[attr-defined]
    journaled = copy.copy(tool)
    journaled.on_invoke_tool = invoke
    journaled.timeout_seconds = None  # enforced inside the step
    return journaled


# ---- handoffs ---------------------------------------------------------------------


def _handoff(running: scope.Scope, target: Agent[Any] | Handoff[Any, Any]) -> Any:
    if isinstance(target, Agent):
        return durable(running, target)
    original = target.on_invoke_handoff
    ref = target._agent_ref

    async def invoke(ctx: RunContextWrapper[Any], arguments: str) -> Agent[Any]:
        current = scope.active()
        if current is None:
            return await original(ctx, arguments)  # type: ignore[no-any-return]
        reached: list[Agent[Any]] = []

        async def call() -> str:
            reached.append(await original(ctx, arguments))
            return str(reached[0].name)

        await current.handoff_step(f"handoff:{target.tool_name}", arguments, call)
        found = reached[0] if reached else (ref() if ref is not None else None)
        if not isinstance(found, Agent):
            found = await original(ctx, arguments)
        return durable(current, found)

    return dataclasses.replace(target, on_invoke_handoff=invoke)


# ---- guardrails ---------------------------------------------------------------------


async def _outcome(value: Any) -> GuardrailFunctionOutput:
    out = await value if inspect.isawaitable(value) else value
    if not isinstance(out, GuardrailFunctionOutput):
        raise TypeError(f"a guardrail returned {type(out).__name__}, not GuardrailFunctionOutput")
    return out


def _input_guardrail(guardrail: InputGuardrail[Any]) -> InputGuardrail[Any]:
    if getattr(guardrail.guardrail_function, "__tether_journaled__", False):
        return guardrail
    fn = guardrail.guardrail_function
    name = guardrail.get_name()

    async def check(ctx: RunContextWrapper[Any], agent: Agent[Any], data: Any) -> Any:
        running = scope.active()
        if running is None:
            return await _outcome(fn(ctx, agent, data))
        return await running.guardrail_step(
            f"input_guardrail:{name}",
            {"agent": agent.name, "input": codec.to_json(data)},
            lambda: _outcome(fn(ctx, agent, data)),
        )

    check.__tether_journaled__ = True  # type: ignore[attr-defined]
    return dataclasses.replace(
        guardrail, guardrail_function=check, name=name, run_in_parallel=False
    )


def _output_guardrail(guardrail: OutputGuardrail[Any]) -> OutputGuardrail[Any]:
    if getattr(guardrail.guardrail_function, "__tether_journaled__", False):
        return guardrail
    fn = guardrail.guardrail_function
    name = guardrail.get_name()

    async def check(ctx: RunContextWrapper[Any], agent: Agent[Any], output: Any) -> Any:
        running = scope.active()
        if running is None:
            return await _outcome(fn(ctx, agent, output))
        return await running.guardrail_step(
            f"output_guardrail:{name}",
            {"agent": agent.name, "output": codec.encode_value(output)},
            lambda: _outcome(fn(ctx, agent, output)),
        )

    check.__tether_journaled__ = True  # type: ignore[attr-defined]
    return dataclasses.replace(guardrail, guardrail_function=check, name=name)


# ---- the runner -------------------------------------------------------------------------


class DurableRunner(AgentRunner):
    """The SDK's runner, running durable copies while a tether task's scope is active."""

    def __init__(self, inner: AgentRunner) -> None:
        self.inner = inner

    async def run(self, starting_agent: Any, input: Any, **kwargs: Any) -> RunResult:
        running = scope.active()
        if running is not None:
            starting_agent = durable(running, starting_agent)
            kwargs["run_config"] = run_config(running, kwargs.get("run_config"))
        return await self.inner.run(starting_agent, input, **kwargs)

    def run_sync(self, starting_agent: Any, input: Any, **kwargs: Any) -> RunResult:
        return self.inner.run_sync(starting_agent, input, **kwargs)

    def run_streamed(self, starting_agent: Any, input: Any, **kwargs: Any) -> RunResultStreaming:
        return self.inner.run_streamed(starting_agent, input, **kwargs)


def runner() -> DurableRunner:
    """The SDK's default runner, made a ``DurableRunner`` once per process."""
    current = get_default_agent_runner()
    if isinstance(current, DurableRunner):
        return current
    installed = DurableRunner(current)
    set_default_agent_runner(installed)
    return installed
