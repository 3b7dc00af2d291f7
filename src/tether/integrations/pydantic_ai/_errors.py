"""Pydantic AI's exceptions in tether's taxonomy (where, retryable), at the boundary.

Inside a step (a model request, a tool call) the step's retry policy acts on the
answer; around the whole run, an error ends the task with a classified error. Control
flow a tool raises on purpose (``ModelRetry``, ``CallDeferred``, ``ApprovalRequired``)
never gets here: the durable builder journals it as a value and Pydantic AI handles it.

==========================================  ==============================================
Pydantic AI                                 tether
==========================================  ==============================================
``ModelHTTPError`` 429                      ``RateLimited`` (retryable, ``Retry-After``)
``ModelHTTPError`` 408                      ``ModelTimeout`` (retryable)
``ModelHTTPError`` 5xx                      ``ServerError`` (retryable)
``ModelHTTPError`` other 4xx                ``ModelRejected``
``ModelRateLimitError`` (no status)         ``RateLimited`` (retryable)
``ModelTimeoutError``, ``ModelRequestTimeout``  ``ModelTimeout`` (retryable)
``ModelConnectionError``                    ``ModelConnectionError`` (retryable)
``ModelUnavailableError``/``ModelServerError``  ``ServerError`` (retryable)
``ModelContextWindowExceededError``         ``ContextOverflow``
other ``ModelAPIError``                     ``ModelRejected``
``OutputTokenLimitExceeded``                ``OutputTruncated``
``UnexpectedModelBehavior``                 ``ModelProtocolError``
``UsageLimitExceeded``                      ``MaxStepsExceeded``
``ToolRetryError``                          ``ToolFailed``
``UserError``                               ``InvalidInput``
anything else                               ``retry.classify`` (by where it ran)
==========================================  ==============================================
"""

from __future__ import annotations

from pydantic_ai import exceptions as pai

from tether import errors, retry


def classify(exc: BaseException, *, where: str) -> errors.TetherError:
    """``exc`` as a classified tether error (raised ``from`` it by the caller)."""
    if isinstance(exc, errors.TetherError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, pai.ModelAPIError):
        return _model_api(exc, text)
    if isinstance(exc, pai.OutputTokenLimitExceeded):
        return errors.OutputTruncated(
            f"{text}; raise the model's max_tokens setting or ask for a shorter answer",
            retryable=False,
        )
    if isinstance(exc, pai.UnexpectedModelBehavior):
        return errors.ModelProtocolError(
            f"{text}; the model answered outside what the agent accepts"
        )
    if isinstance(exc, pai.UsageLimitExceeded):
        return errors.MaxStepsExceeded(f"{text}; raise the agent's usage_limits or fix the prompt")
    if isinstance(exc, pai.ToolRetryError):
        return errors.ToolFailed(f"{text}; the tool asked for more retries than it allows")
    if isinstance(exc, pai.UserError):
        return errors.InvalidInput(f"Pydantic AI refused the agent or its run: {text}")
    return retry.classify(exc, where=where)


def _model_api(exc: pai.ModelAPIError, text: str) -> errors.TetherError:
    after = exc.retry_after
    status = exc.status_code if isinstance(exc, pai.ModelHTTPError) else None
    if isinstance(exc, pai.ModelContextWindowExceededError):
        return errors.ContextOverflow(f"{text}; shorten the history or use a larger model")
    if status == 429 or isinstance(exc, pai.ModelRateLimitError):
        return errors.RateLimited(text, retry_after=after)
    if status == 408 or isinstance(exc, pai.ModelTimeoutError | pai.ModelRequestTimeout):
        return errors.ModelTimeout(text, retry_after=after)
    if (status is not None and status >= 500) or isinstance(
        exc, pai.ModelServerError | pai.ModelUnavailableError
    ):
        return errors.ServerError(text, retry_after=after)
    if isinstance(exc, pai.ModelConnectionError):
        return errors.ModelConnectionError(text, retry_after=after)
    return errors.ModelRejected(f"{text}; the same request will not succeed when tried again")
