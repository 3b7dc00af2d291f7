"""Every ``Model.get_response`` of a run is one journaled ``model`` step.

``JournaledModel`` wraps whatever model an agent uses (an instance on the agent, or
the one a ``ModelProvider`` returns for a name: ``JournaledProvider``); outside a
tether task, or inside another step (a guardrail that runs an agent), it passes the
call through unchanged. Streaming (``stream_response``) is passed through unjournaled.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelProvider, ModelTracing
from agents.tool import Tool
from openai.types.responses.response_prompt_param import ResponsePromptParam

from tether.integrations.openai_agents import codec, scope

if TYPE_CHECKING:
    from agents.retry import ModelRetryAdvice, ModelRetryAdviceRequest


def model_name(model: Model | str | None) -> str:
    if isinstance(model, str):
        return model
    name = getattr(model, "model", None)
    return name if isinstance(name, str) and name else type(model).__name__


class JournaledModel(Model):
    """``inner``, with each ``get_response`` a journaled step of the running task."""

    def __init__(
        self, inner: Model, name: str | None = None, *, timeout: float | None = None
    ) -> None:
        self.inner = inner
        self.name = name or model_name(inner)
        self.timeout = timeout
        """The agent's ``ModelSettings.timeout``, applied inside the step."""

    def __getattr__(self, attr: str) -> Any:
        # the SDK probes models for optional hooks (prompt cache keys, …): answer as inner
        return getattr(self.inner, attr)

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        async def call() -> ModelResponse:
            return await self.inner.get_response(
                system_instructions,
                input,
                model_settings,
                tools,
                output_schema,
                handoffs,
                tracing,
                previous_response_id=previous_response_id,
                conversation_id=conversation_id,
                prompt=prompt,
            )

        running = scope.active()
        if running is None:
            return await call()
        request = {
            "instructions": system_instructions,
            "input": codec.to_json(input),
            "settings": _settings(model_settings),
            "tools": sorted(getattr(t, "name", type(t).__name__) for t in tools),
            "handoffs": sorted(h.tool_name for h in handoffs),
            "output_schema": output_schema.json_schema()
            if output_schema is not None and not output_schema.is_plain_text()
            else None,
            "previous_response_id": previous_response_id,
            "conversation_id": conversation_id,
            "prompt": codec.to_json(prompt),
        }
        items = len(input) if isinstance(input, list) else 1
        return await running.model_step(self.name, call, request, items, self.timeout)

    def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        return self.inner.stream_response(
            system_instructions,
            input,
            model_settings,
            tools,
            output_schema,
            handoffs,
            tracing,
            previous_response_id=previous_response_id,
            conversation_id=conversation_id,
            prompt=prompt,
        )

    def get_retry_advice(self, request: ModelRetryAdviceRequest) -> ModelRetryAdvice | None:
        return self.inner.get_retry_advice(request)

    async def close(self) -> None:
        await self.inner.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        await self.inner._cleanup_on_run_end(owner)


class JournaledProvider(ModelProvider):
    """A ``ModelProvider`` whose models are ``JournaledModel``s of ``inner``'s."""

    def __init__(self, inner: ModelProvider) -> None:
        self.inner = inner

    def get_model(self, model_name: str | None) -> Model:
        model = self.inner.get_model(model_name)
        if isinstance(model, JournaledModel):
            return model
        return JournaledModel(model, model_name or None)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _settings(settings: ModelSettings) -> Any:
    """The settings as JSON, less the prompt cache key the SDK generates per run."""
    data = settings.to_json_dict()
    extra = data.get("extra_args")
    if isinstance(extra, dict) and "prompt_cache_key" in extra:
        data["extra_args"] = {k: v for k, v in extra.items() if k != "prompt_cache_key"}
    return json.loads(json.dumps(data, default=str))
