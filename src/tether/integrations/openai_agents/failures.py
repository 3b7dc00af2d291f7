"""The Agents SDK's and the openai client's exceptions, in tether's error taxonomy.

    openai.RateLimitError / HTTP 429      -> RateLimited            (model, retryable, Retry-After)
    openai.APIStatusError, overflow body  -> ContextOverflow        (model)
    openai.APIStatusError 5xx             -> ServerError            (model, retryable)
    openai.APIStatusError other 4xx       -> ModelRejected          (model)
    openai.APITimeoutError                -> ModelTimeout           (model, retryable)
    openai.APIConnectionError             -> ModelConnectionError   (model, retryable)
    agents ModelTimeoutError              -> ModelTimeout           (model, retryable)
    agents ModelBehaviorError             -> ModelProtocolError     (model)
    agents ModelRefusalError              -> ModelRejected          (model)
    agents MaxTurnsExceeded               -> MaxStepsExceeded       (agent)
    agents Input…TripwireTriggered        -> InvalidInput           (input: the input was refused)
    agents Output…TripwireTriggered       -> WorkflowFailed         (agent: the answer was refused)
    agents ToolTimeoutError               -> ToolTimeout            (tool, retryable)
    agents UserError                      -> WorkflowFailed         (agent: fix the agent's setup)
    other agents AgentsException          -> WorkflowFailed         (agent)

tether errors pass as they are, also when the SDK wrapped one (a tool's journaled
failure comes back as ``UserError("Error running tool …")`` caused by it); anything else
is left to ``retry.classify``.
"""

from __future__ import annotations

from typing import Any, cast

import openai
from agents import exceptions as sdk

from tether import errors
from tether.models import errors as model_errors


def translate(exc: BaseException) -> errors.TetherError | None:
    """The tether error for ``exc``, or None when it is neither the SDK's nor openai's."""
    if isinstance(exc, errors.TetherError):
        return exc
    wrapped = _tether_cause(exc)
    if wrapped is not None:
        return wrapped
    if isinstance(exc, openai.APIError):
        return _openai(exc)
    if isinstance(exc, sdk.AgentsException):
        return _agents(exc)
    return None


def _tether_cause(exc: BaseException) -> errors.TetherError | None:
    seen: set[int] = set()
    cause = exc.__cause__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, errors.TetherError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__
    return None


def _openai(exc: openai.APIError) -> errors.TetherError:
    text = f"{type(exc).__name__}: {exc.message}"
    if isinstance(exc, openai.APITimeoutError):
        return errors.ModelTimeout(f"the model call timed out ({text}); tried again with backoff")
    if isinstance(exc, openai.APIConnectionError):
        return errors.ModelConnectionError(
            f"the model endpoint could not be reached ({text}); tried again with backoff"
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = exc.response.text if exc.response is not None else ""
        if status == 429:
            return errors.RateLimited(
                f"the model endpoint answered 429 ({text})",
                # the client's headers have the same get() as the ones the parser reads
                retry_after=model_errors.parse_retry_after(cast(Any, exc.response.headers)),
            )
        if model_errors.is_context_overflow(f"{body} {exc.message}"):
            return errors.ContextOverflow(
                f"the model endpoint refused the request as longer than its context ({text}); "
                "shorten the conversation or use a model with a larger window"
            )
        if status >= 500:
            return errors.ServerError(f"the model endpoint answered {status} ({text})")
        return errors.ModelRejected(
            f"the model endpoint answered {status} ({text}); check the model name, key and request"
        )
    return errors.ModelProtocolError(f"the model call failed: {text}")


def _agents(exc: sdk.AgentsException) -> errors.TetherError:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, sdk.ModelTimeoutError):
        return errors.ModelTimeout(f"{text}; tried again with backoff")
    if isinstance(exc, sdk.ModelBehaviorError):
        return errors.ModelProtocolError(
            f"the model did something the agent cannot use ({text}); check the tools it is "
            "offered and the instructions"
        )
    if isinstance(exc, sdk.ModelRefusalError):
        return errors.ModelRejected(f"the model refused to answer ({text})")
    if isinstance(exc, sdk.MaxTurnsExceeded):
        return errors.MaxStepsExceeded(
            f"{text}; raise max_turns (OpenAIAgentsWorkflow(agent, max_turns=…)) or change the "
            "instructions so the agent finishes"
        )
    if isinstance(exc, sdk.InputGuardrailTripwireTriggered):
        name = exc.guardrail_result.guardrail.get_name()
        return errors.InvalidInput(f"input guardrail {name!r} refused the input ({text})")
    if isinstance(exc, sdk.ToolInputGuardrailTripwireTriggered):
        return errors.InvalidInput(f"a tool input guardrail refused the call ({text})")
    if isinstance(exc, sdk.OutputGuardrailTripwireTriggered):
        name = exc.guardrail_result.guardrail.get_name()
        return errors.WorkflowFailed(f"output guardrail {name!r} refused the answer ({text})")
    if isinstance(exc, sdk.ToolOutputGuardrailTripwireTriggered):
        return errors.WorkflowFailed(f"a tool output guardrail refused a result ({text})")
    if isinstance(exc, sdk.ToolTimeoutError):
        return errors.ToolTimeout(f"{text}; raise the tool's timeout_seconds or make it faster")
    if isinstance(exc, sdk.UserError):
        return errors.WorkflowFailed(f"the Agents SDK refused the agent's setup ({text})")
    return errors.WorkflowFailed(text)
