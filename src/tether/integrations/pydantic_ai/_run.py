"""One task's run of a Pydantic AI agent: its steps, its session messages, its context.

Lives for one run of the durable function (a fresh one after a crash or a handover,
rebuilt from the journal), in a context variable the capability reads, so that one
worker can run many tasks of one agent at once.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic_ai import RunContext
from pydantic_ai import messages as pai

from tether import errors, retry, types
from tether.context.ledger import Ledger
from tether.execution import context as execution
from tether.execution.context import Heartbeat, StepCodec, StepSpec
from tether.integrations.pydantic_ai import _backend, _messages
from tether.observe import events

CURRENT: contextvars.ContextVar[TaskRun | None] = contextvars.ContextVar(
    "tether_pydantic_ai_run", default=None
)
COUNTER = "pydantic-ai usage"
"""How a Pydantic AI session's context is counted: the model's reported input tokens."""


@dataclasses.dataclass(slots=True)
class TaskRun:
    ctx: execution.TaskRun
    retries: retry.Retries
    context_window: int | None
    warn_at: float
    _seen: set[int] = dataclasses.field(default_factory=set)
    _keep: list[object] = dataclasses.field(default_factory=list)
    _input_covered: bool = False
    agent_runs: int = 0

    def know(self, messages: Sequence[pai.ModelMessage]) -> None:
        """Parts already in the session (the history handed to the agent)."""
        _messages.new_parts(messages, self._seen, self._keep)

    def next_run_id(self) -> str:
        """A run id stable across re-runs of the task: its id and the run's ordinal."""
        self.agent_runs += 1
        return f"{self.ctx.task_id}.{self.agent_runs}"

    # ---- session messages ------------------------------------------------------

    def _fresh_requests(self, messages: Sequence[pai.ModelMessage]) -> list[pai.ModelMessage]:
        """The parts the session lacks: those of the requests after the last response
        (every response is in the session already: the model step that got it wrote it)."""
        last = max(
            (i for i, m in enumerate(messages) if isinstance(m, pai.ModelResponse)), default=-1
        )
        return _messages.new_parts(messages[last + 1 :], self._seen, self._keep)

    def _input_cover(self) -> dict[str, Any]:
        """Until a step wrote the task's input into its JSON, the input's text and seq."""
        if self._input_covered:
            return {}
        return {"input_text": self.ctx.task.input, "input_seq": self.ctx.task.input_seq}

    # ---- steps -----------------------------------------------------------------

    async def model_step(
        self, name: str, body: Callable[[], Awaitable[object]], rc: RunContext[Any]
    ) -> object:
        """A model request: a ``model`` step that writes the request's new parts and the
        answer to the session, with the answer's token usage and the context's pressure."""
        new = self._fresh_requests(rc.messages)
        window = self.context_window or getattr(rc.model, "context_window", None)
        limit = int(window) if window else None
        index = self.ctx.step_index
        groups: dict[int, list[types.Message]] = {}

        async def execute(attempt: int, beat: Heartbeat) -> types.ModelResponse:
            payload = await _backend.run_body(body, "model")
            if not (isinstance(payload, dict) and payload.get("kind") == "response"):
                raise errors.ModelProtocolError(
                    f"model {name!r} answered with {type(payload).__name__}, not a response"
                )
            usage = _backend.usage_of(payload)
            self._pressure(usage, limit, index)
            answer = _messages.load([_stamped(payload, rc)])
            group = _messages.group([*new, *answer], **self._input_cover())
            response = types.ModelResponse(
                message=group[-1],
                finish_reason=str(payload.get("finish_reason") or "stop"),
                usage=usage,
                model=str(payload.get("model_name") or name),
            )
            groups[id(response)] = group
            return response

        spec: StepSpec[types.ModelResponse] = StepSpec(
            "model",
            name,
            # What it was asked: the request's new parts (not their timestamps).
            {"model": name, "new": _messages.stable(_messages.dump(new))},
            self.retries.model,
            where="model",
            codec=StepCodec(
                encode=lambda r: r.to_dict(),
                decode=types.ModelResponse.from_dict,
                messages=lambda r: groups.pop(id(r), [r.message]),
                session_state=lambda r: self._context_state(r.usage, limit),
            ),
            completed_data=lambda r: {
                "model": name,
                "finish_reason": r.finish_reason,
                "usage": r.usage.to_dict() if r.usage else None,
                "context_tokens": r.usage.prompt_tokens if r.usage else None,
                "context_limit": limit,
            },
            started_data={"model": name},
        )
        response = await self.ctx.run_step(spec, execute)
        raw = _messages.ours(response.message) or {}
        if raw.get("covers"):
            self._input_covered = True
        stored = raw.get(_messages.KEY) or []
        return stored[-1]

    async def other_step(
        self,
        kind: types.StepKind,
        name: str,
        inputs: Any,
        body: Callable[[], Awaitable[object]],
        where: str,
    ) -> object:
        """A tool call, a validation, a compaction or any other unit: its JSON result is
        the step's output."""

        async def execute(attempt: int, beat: Heartbeat) -> object:
            return await _backend.run_body(body, where)

        is_tool = kind == "tool"
        policies = {"tool": self.retries.tool, "model": self.retries.model}
        call_id = inputs.get("call_id") if is_tool and isinstance(inputs, dict) else None
        spec: StepSpec[object] = StepSpec(
            kind,
            name,
            inputs,
            policies.get(where, self.retries.custom),
            where=where,
            timeout=self.ctx.settings.tool_timeout if is_tool else None,
            started_data={"tool_call_id": call_id} if call_id else None,
        )
        return await self.ctx.run_step(spec, execute)

    async def finish(self, messages: Sequence[pai.ModelMessage]) -> None:
        """Write what the run added after its last model answer (the result of an output
        tool, say) in one last step, so the session holds the whole conversation."""
        tail = self._fresh_requests(messages)
        if not tail:
            return
        group = _messages.group(tail, **self._input_cover())
        data = _messages.stable(_messages.dump(tail))

        async def execute(attempt: int, beat: Heartbeat) -> dict[str, Any]:
            return {"messages": len(group)}

        spec: StepSpec[dict[str, Any]] = StepSpec(
            "custom",
            "pydantic_ai.messages",
            {"new": data},
            retry.NO_RETRY,
            codec=StepCodec(messages=lambda v: group),
        )
        await self.ctx.run_step(spec, execute)

    # ---- context -----------------------------------------------------------------

    def _pressure(self, usage: types.Usage | None, limit: int | None, index: int) -> None:
        if usage is None or not limit:
            return
        tokens = usage.prompt_tokens
        was = Ledger.from_dict(self.ctx.session_state).pressure
        if tokens >= self.warn_at * limit and not was:
            self.ctx.emitter.emit(
                events.CONTEXT_PRESSURE,
                step=index,
                tokens=tokens,
                limit=limit,
                window=limit,
                utilisation=round(tokens / limit, 4),
                warn_at=self.warn_at,
            )

    def _context_state(self, usage: types.Usage | None, limit: int | None) -> dict[str, Any] | None:
        """The session's context ledger after a model answer: the tokens it reported
        against the window, as ``tether sessions show`` reads them."""
        if usage is None:
            return None
        tokens = usage.prompt_tokens
        ledger = Ledger.from_dict(self.ctx.session_state)
        last = {
            "estimated": tokens,
            "raw_estimate": tokens,
            "reported": tokens,
            "budget": limit,
            "window": limit,
            "utilisation": round(tokens / limit, 4) if limit else None,
            "counter": COUNTER,
        }
        pressure = bool(limit) and tokens >= self.warn_at * (limit or 0)
        return dataclasses.replace(ledger, pressure=pressure, last=last).to_dict()


def _stamped(payload: dict[str, Any], rc: RunContext[Any]) -> dict[str, Any]:
    """The answer as the run will keep it: Pydantic AI stamps the run's ids and the
    serving model on a response after the durable unit returns it."""
    model = rc.model
    model_id = payload.get("model_id") or rc.model_id or getattr(model, "model_id", None)
    return {
        **payload,
        "run_id": payload.get("run_id") or rc.run_id,
        "conversation_id": payload.get("conversation_id") or rc.conversation_id,
        "model_id": model_id,
    }
