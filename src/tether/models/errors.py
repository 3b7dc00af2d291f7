"""Translate what an OpenAI-compatible endpoint does wrong into tether errors.

httpx stops here: ``translate`` is the one context manager that turns every httpx
exception into a ``tether.errors.ModelError`` (chained with ``from``), and
``raise_for_status`` turns a non-2xx answer into one. Nothing above ``models/``
ever sees httpx.

    httpx.TimeoutException           -> ModelTimeout          (retryable)
    httpx.UnsupportedProtocol        -> ModelRejected         (base_url has no http(s) scheme)
    other httpx.TransportError       -> ModelConnectionError  (retryable: refused, reset, cut off)
    other httpx errors               -> ModelProtocolError
    HTTP 429                         -> RateLimited           (retryable, ``retry_after`` set)
    a body naming a context overflow -> ContextOverflow       (any status >= 400 but 429)
    a body naming a setup refusal    -> ModelRejected         (llama.cpp without --jinja…)
    HTTP 5xx                         -> ServerError           (retryable)
    other HTTP 4xx                   -> ModelRejected

A context overflow is recognised by a case-insensitive match of the response body
against ``CONTEXT_OVERFLOW_PHRASES``, which collects what the common servers say.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import json
import math
import time
from collections.abc import Iterator

import httpx

from tether import errors

CONTEXT_OVERFLOW_PHRASES: tuple[str, ...] = (
    # vLLM and OpenAI: "This model's maximum context length is 8192 tokens. However, ..."
    "maximum context length",
    # OpenAI's error code
    "context_length_exceeded",
    # vLLM (newer): "The prompt (N tokens) is longer than the maximum model length of M"
    "maximum model length",
    # llama.cpp server: "the request exceeds the available context size, try increasing it"
    "exceeds the available context size",
    # llama.cpp server's error type
    "exceed_context_size_error",
    # Ollama: "the input length exceeds the context length"
    "exceeds the context length",
    # LiteLLM and other proxies
    "context length exceeded",
)
"""Phrases (lower case) that mark an error body as "the request does not fit the context"."""

SETUP_ERROR_PHRASES: tuple[str, ...] = (
    # llama.cpp server started without --jinja, asked for tools: a 500 no retry mends
    "requires --jinja",
    # llama.cpp server: a tool definition its template engine cannot read
    "failed to parse tools",
    # vLLM started without --enable-auto-tool-choice / --tool-call-parser
    "enable-auto-tool-choice",
    # llama-cpp-python's server answers a request body it cannot validate with a 500
    "'loc': ('body',",
)
"""Phrases (lower case) of a server's answer, 5xx included, that mean its setup refuses
this request: retrying cannot help, so the error is ``ModelRejected``."""

_MAX_DETAIL = 300


def is_context_overflow(body: str) -> bool:
    """Whether an error body says the request exceeded the model's context length."""
    text = body.lower()
    return any(phrase in text for phrase in CONTEXT_OVERFLOW_PHRASES)


def parse_retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP-date) or ``retry-after-ms``.

    Returns None when the server gave no usable hint; never a negative number."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        with contextlib.suppress(ValueError):
            value = float(millis)
            if math.isfinite(value):
                return max(0.0, value / 1000.0)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def server_message(response: httpx.Response) -> str:
    """The human part of an error body: OpenAI's ``error.message``, vLLM's ``message``,
    Ollama's ``error`` string, FastAPI's ``detail``, else the start of the raw text."""
    text = response.text
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    found: object = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            found = err.get("message")
        elif isinstance(err, str):
            found = err
        if found is None:
            found = data.get("message") or data.get("detail")
    message = found if isinstance(found, str) and found else text.strip()
    if not message:
        return "(empty body)"
    return message if len(message) <= _MAX_DETAIL else message[:_MAX_DETAIL] + "…"


def raise_for_status(response: httpx.Response, url: str) -> None:
    """Raise the tether error for a non-2xx answer; return for a 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return
    said = f"POST {url} answered {status} {response.reason_phrase}".rstrip()
    detail = server_message(response)
    if status == 429:
        retry_after = parse_retry_after(response.headers)
        wait = "with backoff" if retry_after is None else f"after {retry_after:g}s (Retry-After)"
        raise errors.RateLimited(
            f"{said}: {detail}. The endpoint is rate limiting; tether retries {wait}. "
            "Lower the concurrency or raise the endpoint's rate limit if this persists.",
            retry_after=retry_after,
        )
    if status >= 400 and is_context_overflow(response.text):
        raise errors.ContextOverflow(
            f"{said}: {detail}. The request does not fit the model's context window: "
            "set context_window to the server's real limit, lower max_output_tokens, "
            "or use a ContextPolicy that compacts (summarize or memory)."
        )
    if status >= 400 and any(p in response.text.lower() for p in SETUP_ERROR_PHRASES):
        raise errors.ModelRejected(
            f"{said}: {detail}. The model server is not set up for this request (tools or "
            "tool_choice); retrying will not help: see docs/models.md for the server's flags."
        )
    if status >= 500:
        raise errors.ServerError(
            f"{said}: {detail}. The model server failed; tether retries with backoff. "
            "Check the server's logs if this persists."
        )
    if status in (401, 403):
        raise errors.ModelRejected(
            f"{said}: {detail}. Check the API key (OpenAIModel(api_key=...)) and that it "
            "may use this model."
        )
    if status == 404:
        raise errors.ModelRejected(
            f"{said}: {detail}. Check base_url (it usually ends in /v1) and the model name."
        )
    if 400 <= status < 500:
        raise errors.ModelRejected(
            f"{said}: {detail}. The endpoint refused this request and retrying it unchanged "
            "will not help; check the model name and the request's parameters."
        )
    raise errors.ModelProtocolError(
        f"{said}: {detail}. Expected a 2xx chat completion; check that base_url points at "
        "an OpenAI-compatible API."
    )


@contextlib.contextmanager
def translate(url: str, timeout: float) -> Iterator[None]:
    """Turn any httpx exception raised in the block into the matching tether error."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise errors.ModelTimeout(
            f"POST {url} did not answer within {timeout:g}s ({type(exc).__name__}); "
            "tether retries. Raise OpenAIModel(timeout=...) if the model is just slow."
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise errors.ModelRejected(
            f"POST {url} cannot be sent: {exc}. base_url must start with http:// or https://."
        ) from exc
    except httpx.TransportError as exc:
        raise errors.ModelConnectionError(
            f"POST {url} failed: {type(exc).__name__}: {exc or 'connection lost'}. "
            "Check that the model server is running and reachable; tether retries."
        ) from exc
    except httpx.InvalidURL as exc:
        raise errors.ModelRejected(f"{url} is not a valid URL: {exc}; fix base_url.") from exc
    except httpx.HTTPError as exc:
        raise errors.ModelProtocolError(
            f"POST {url} failed: {type(exc).__name__}: {exc}. "
            "Check that base_url points at an OpenAI-compatible API."
        ) from exc
