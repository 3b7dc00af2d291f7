"""The running task an Agents SDK run journals into, and its step kinds.

``Scope`` is bound (a context variable) while the workflow's ``Runner.run`` runs, so
the SDK's own tasks see it. Each of its ``*_step`` methods is one journaled step whose
value is plain JSON, decoded the same way whether it ran now or is replayed: the SDK
sees the same objects either way, so the next request is the same too.

Inside a running step (a guardrail that runs an agent of its own, say) there is no
active scope: what the step calls is part of that step.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from agents.exceptions import ToolTimeoutError
from agents.guardrail import GuardrailFunctionOutput
from agents.items import ModelResponse
from agents.tool import (
    FunctionTool,
    default_tool_timeout_error_message,
    maybe_invoke_function_tool_failure_error_function,
)
from agents.tool_context import ToolContext as SdkToolContext

from tether import errors, retry, tools, types
from tether.context.ledger import Ledger
from tether.execution.context import Heartbeat, StepCodec, StepSpec, TaskRun
from tether.execution.fingerprint import fingerprint
from tether.integrations.openai_agents import codec, failures
from tether.observe import events

if TYPE_CHECKING:
    from tether.integrations.openai_agents.model import JournaledProvider

T = TypeVar("T")
_CURRENT: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "tether_openai_agents_scope", default=None
)
RESPONSE_KEY = "openai_agents_response"


@dataclasses.dataclass(frozen=True, slots=True)
class ContextSettings:
    """What the model's context holds, for the session's token accounting."""

    window: int = 128_000
    reserve_output: int = 4_096
    warn_at: float = 0.8

    @property
    def budget(self) -> int:
        return max(1, self.window - self.reserve_output)


def active() -> Scope | None:
    """The scope to journal into: None outside a task, and inside a running step."""
    scope = _CURRENT.get()
    if scope is None:
        return None
    try:
        tools.current_step()
    except errors.NotInStep:
        return scope
    return None


class Scope:
    """One task's run: its context, the durable copies of its agents, and its steps."""

    def __init__(self, ctx: TaskRun, context: ContextSettings) -> None:
        self.ctx = ctx
        self.context = context
        self.clones: dict[int, Any] = {}
        """id(original agent) -> its durable copy (and each copy -> itself)."""
        self.keep: list[Any] = []
        """The originals, alive as long as the scope, so their ids stay theirs."""
        self.model_timeout: float | None = None
        """The run config's ``ModelSettings.timeout``, applied inside model steps."""
        self.provider: JournaledProvider | None = None
        """The run's (journaled) model provider, once ``graph.run_config`` made it."""
        self._serial = asyncio.Lock()

    async def _step(
        self, spec: StepSpec[T], execute: Callable[[int, Heartbeat], Awaitable[T]]
    ) -> T:
        """``ctx.run_step``, one at a time: steps the SDK starts together (its
        guardrails) get their indexes and commit in the order they were started."""
        async with self._serial:
            return await self.ctx.run_step(spec, execute)

    def bind(self) -> contextvars.Token[Scope | None]:
        return _CURRENT.set(self)

    @staticmethod
    def unbind(token: contextvars.Token[Scope | None]) -> None:
        _CURRENT.reset(token)

    # ---- model -----------------------------------------------------------------

    async def model_step(
        self,
        name: str,
        call: Callable[[], Awaitable[ModelResponse]],
        request: dict[str, Any],
        items: int,
        timeout: float | None = None,
    ) -> ModelResponse:
        """One model call. ``timeout`` (``ModelSettings.timeout``, taken off the settings
        the SDK sees so it never cancels a step half-way) bounds each attempt."""
        ctx = self.ctx

        async def execute(attempt: int, beat: Heartbeat) -> types.ModelResponse:
            try:
                response = await call()
            except Exception as exc:
                raise _translated(exc) from exc
            carried = _carrier(response, name)
            self._maybe_pressure(carried)
            return carried

        spec: StepSpec[types.ModelResponse] = StepSpec(
            "model",
            name,
            {"model": name, "items": items},
            ctx.retries.model,
            where="model",
            fingerprint=fingerprint("model", name, request),
            timeout=self.model_timeout or timeout,
            codec=StepCodec(
                encode=lambda r: r.to_dict(),
                decode=types.ModelResponse.from_dict,
                session_state=self._ledger,
            ),
            completed_data=lambda r: self._completed_data(r, name),
            started_data={"model": name},
        )
        carried = await self._step(spec, execute)
        raw = carried.message.raw
        return codec.decode_response(raw[RESPONSE_KEY])

    def _usage_numbers(self, response: types.ModelResponse) -> tuple[int | None, float | None]:
        reported = response.usage.prompt_tokens if response.usage else None
        if not reported:
            return None, None
        return reported, round(reported / self.context.budget, 4)

    def _maybe_pressure(self, response: types.ModelResponse) -> None:
        reported, utilisation = self._usage_numbers(response)
        if reported is None or utilisation is None:
            return
        before = Ledger.from_dict(self.ctx.session_state)
        if utilisation >= self.context.warn_at and not before.pressure:
            self.ctx.emitter.emit(
                events.CONTEXT_PRESSURE,
                step=self.ctx.step_index - 1,
                tokens=reported,
                limit=self.context.budget,
                window=self.context.window,
                utilisation=utilisation,
                warn_at=self.context.warn_at,
            )

    def _ledger(self, response: types.ModelResponse) -> dict[str, Any] | None:
        """The session's context bookkeeping after this call, from the tokens it used."""
        reported, utilisation = self._usage_numbers(response)
        if reported is None or utilisation is None:
            return None
        ledger = Ledger.from_dict(self.ctx.session_state)
        last = {
            "estimated": reported,
            "raw_estimate": reported,
            "reported": reported,
            "budget": self.context.budget,
            "window": self.context.window,
            "utilisation": utilisation,
            "counter": "usage reported by the model (Agents SDK)",
        }
        pressure = utilisation >= self.context.warn_at
        return dataclasses.replace(ledger, pressure=pressure, last=last).to_dict()

    def _completed_data(self, response: types.ModelResponse, name: str) -> dict[str, Any]:
        usage = response.usage
        return {
            "model": name,
            "finish_reason": response.finish_reason,
            "usage": usage.to_dict() if usage else None,
            "context_tokens": usage.prompt_tokens if usage else None,
            "context_limit": self.context.window,
        }

    # ---- tools -----------------------------------------------------------------

    async def tool_step(
        self,
        tool: FunctionTool,
        sdk_ctx: SdkToolContext[Any],
        arguments: str,
        invoke: Callable[[SdkToolContext[Any], str], Awaitable[Any]],
        *,
        formats_failures: bool,
        timeout: float | None,
    ) -> Any:
        """One tool call. With ``formats_failures`` (a ``@function_tool``), ``invoke``
        raises and the tool's failure function turns the journaled error into what the
        model reads, after tether's retries, the same way on every replay. ``timeout``
        is the tool's own ``timeout_seconds``, enforced inside the step (the SDK's copy
        of the tool has none, so it never cancels a step half-way), with the tool's
        ``timeout_behavior`` after tether's retries."""
        ctx = self.ctx
        adapter = tool._output_type_adapter

        async def execute(attempt: int, beat: Heartbeat) -> dict[str, Any]:
            try:
                result = await invoke(sdk_ctx, arguments)
            except Exception as exc:
                raise _translated(exc, where="tool") from exc
            if adapter is not None and not isinstance(result, str):
                return {"json": adapter.dump_python(result, mode="json", by_alias=True)}
            return {"value": codec.encode_value(result)}

        spec: StepSpec[dict[str, Any]] = StepSpec(
            "tool",
            tool.name,
            {"call_id": sdk_ctx.tool_call_id, "arguments": arguments},
            ctx.retries.tool,
            where="tool",
            timeout=timeout or ctx.settings.tool_timeout,
            on_failure=lambda err: {"error": errors.error_record(err)},
            started_data={"tool_call_id": sdk_ctx.tool_call_id},
        )
        recorded = await self._step(spec, execute)
        if "error" in recorded:
            err = errors.error_from_dict(recorded["error"])
            if timeout is not None and isinstance(err, errors.ToolTimeout):
                return await _timed_out(tool, sdk_ctx, timeout, err)
            message = (
                await maybe_invoke_function_tool_failure_error_function(
                    function_tool=tool, context=sdk_ctx, error=err
                )
                if formats_failures
                else None
            )
            if message is None:
                raise err
            return message
        if "json" in recorded:
            return recorded["json"]
        return codec.decode_value(recorded["value"])

    # ---- guardrails and handoffs -------------------------------------------------

    async def guardrail_step(
        self, name: str, inputs: Any, run: Callable[[], Awaitable[GuardrailFunctionOutput]]
    ) -> GuardrailFunctionOutput:
        async def execute(attempt: int, beat: Heartbeat) -> dict[str, Any]:
            try:
                out = await run()
            except Exception as exc:
                raise _translated(exc) from exc
            return {
                "output_info": codec.encode_value(out.output_info),
                "tripwire_triggered": bool(out.tripwire_triggered),
            }

        spec: StepSpec[dict[str, Any]] = StepSpec("custom", name, inputs, self.ctx.retries.custom)
        recorded = await self._step(spec, execute)
        return GuardrailFunctionOutput(
            output_info=codec.decode_value(recorded["output_info"]),
            tripwire_triggered=bool(recorded["tripwire_triggered"]),
        )

    async def handoff_step(
        self, name: str, arguments: str | None, run: Callable[[], Awaitable[str]]
    ) -> str:
        """A handoff's own callback (``on_handoff``), run once; answers the target's name."""

        async def execute(attempt: int, beat: Heartbeat) -> str:
            try:
                return await run()
            except Exception as exc:
                raise _translated(exc) from exc

        spec: StepSpec[str] = StepSpec("custom", name, {"arguments": arguments}, retry.NO_RETRY)
        return await self._step(spec, execute)


async def _timed_out(
    tool: FunctionTool, sdk_ctx: SdkToolContext[Any], timeout: float, err: errors.TetherError
) -> Any:
    """What the SDK does when a tool runs past its ``timeout_seconds``."""
    exc = ToolTimeoutError(tool_name=tool.name, timeout_seconds=timeout)
    if tool.timeout_behavior == "raise_exception":
        raise exc from err
    if tool.timeout_error_function is not None:
        message = tool.timeout_error_function(sdk_ctx, exc)
        return await message if inspect.isawaitable(message) else message
    return default_tool_timeout_error_message(tool_name=tool.name, timeout_seconds=timeout)


def _translated(exc: Exception, where: str = "model") -> errors.TetherError:
    found = failures.translate(exc)
    if found is not None:
        if where == "tool" and isinstance(found, errors.ModelProtocolError):
            return errors.InvalidToolArguments(found.detail)
        return found
    return retry.classify(exc, where=where)


def _carrier(response: ModelResponse, name: str) -> types.ModelResponse:
    """The SDK's response inside a tether ``ModelResponse``: readable text and tool
    calls, the token usage the journal and the session count, and the exact JSON."""
    encoded = codec.encode_response(response)
    texts: list[str] = []
    calls: list[types.ToolCall] = []
    for item in encoded["output"]:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or ():
                text = part.get("text", part.get("refusal")) if isinstance(part, dict) else None
                if isinstance(text, str):
                    texts.append(text)
        elif item.get("type") == "function_call":
            calls.append(
                types.ToolCall(
                    id=str(item.get("call_id", "")),
                    name=str(item.get("name", "")),
                    arguments=str(item.get("arguments", "")),
                )
            )
    usage = response.usage
    return types.ModelResponse(
        message=types.Message(
            role="assistant",
            content="".join(texts) if texts else None,
            tool_calls=tuple(calls),
            raw={RESPONSE_KEY: encoded},
        ),
        finish_reason="tool_calls" if calls else "stop",
        usage=types.Usage(usage.input_tokens, usage.output_tokens),
        model=name,
    )
