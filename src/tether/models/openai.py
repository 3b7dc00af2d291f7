"""OpenAIModel: a Model that speaks the OpenAI-compatible chat-completions API.

Works with vLLM, the llama.cpp server, Ollama and OpenAI itself: one
``POST {base_url}/chat/completions`` per call, no streaming. The wire format
(messages, tools, tool calls) is converted here in both directions so the
stand-in server in ``tether.testing`` reads exactly what this client writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from typing import Any, Literal

import httpx

from tether import errors, types
from tether.models import errors as http_errors
from tether.models import streaming

_log = logging.getLogger("tether.models.openai")


def message_to_wire(message: types.Message) -> dict[str, Any]:
    """One message as the chat-completions API expects it."""
    content = message.content
    if content is None and message.role == "assistant":
        # An assistant turn that only calls tools: llama-cpp-python's server refuses a
        # null content (422), Ollama and older vLLM templates mishandle it; "" is read
        # the same way by every server tether names.
        content = ""
    out: dict[str, Any] = {"role": message.role, "content": content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def tool_to_wire(tool: types.ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def new_call_id() -> str:
    """An id for a tool call the server sent without one (some llama.cpp builds): nine
    letters and digits, the one form Mistral's templates accept besides any other's.
    The answer is journaled, so a replay sees the same id."""
    return uuid.uuid4().hex[:9]


WINDOW_FIELDS: tuple[str, ...] = ("max_model_len", "context_length", "max_context_length")
"""Where servers publish a model's context length in ``GET /models`` entries."""


def published_window(listing: Any, model: str) -> int | None:
    """The context length ``listing`` (a ``/models`` body) gives ``model`` (or its only
    entry, for servers that serve one model under any name)."""
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        return None
    entries = [e for e in data if isinstance(e, dict)]
    mine = [e for e in entries if e.get("id") == model] or (entries if len(entries) == 1 else [])
    for entry in mine:
        for key in WINDOW_FIELDS:
            value = entry.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def tool_choice_to_wire(choice: str) -> str | dict[str, Any]:
    """``auto``/``required``/``none`` as they are; a tool's name as the named form."""
    if choice in types.TOOL_CHOICE_MODES:
        return choice
    return {"type": "function", "function": {"name": choice}}


StructuredOutput = Literal["json_schema", "json_object", "tool"]


def response_format_to_wire(output_schema: dict[str, Any], how: StructuredOutput) -> Any:
    """The ``response_format`` asking for JSON matching ``{"name", "schema"}``:
    OpenAI's ``json_schema`` form, or ``json_object`` with a ``schema`` (llama-cpp-python's
    server knows only that one)."""
    if how == "json_object":
        return {"type": "json_object", "schema": output_schema["schema"]}
    return {
        "type": "json_schema",
        "json_schema": {"name": output_schema["name"], "schema": output_schema["schema"]},
    }


def _tool_call_from_wire(data: Any, position: int) -> types.ToolCall:
    if not isinstance(data, dict):
        raise ValueError(f"tool_calls[{position}] is not an object")
    function = data.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ValueError(f"tool_calls[{position}] has no function name")
    arguments = function.get("arguments")
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        # A call without arguments comes as null or "" from some servers; sent back in
        # the history, "" breaks the servers that parse it (llama.cpp's --jinja).
        arguments = "{}"
    elif not isinstance(arguments, str):
        # Some servers (older Ollama) send the arguments as an object.
        arguments = json.dumps(arguments)
    call_id = data.get("id")
    return types.ToolCall(
        id=call_id if isinstance(call_id, str) and call_id else new_call_id(),
        name=function["name"],
        arguments=arguments,
    )


def message_from_wire(data: Any) -> types.Message:
    """Parse one wire message; raises ValueError when it is not a chat message."""
    if not isinstance(data, dict):
        raise ValueError("message is not an object")
    role = data.get("role")
    if role not in ("system", "user", "assistant", "tool"):
        raise ValueError(f"unknown message role {role!r}")
    content = data.get("content")
    if isinstance(content, list):
        # Content parts: keep the text ones.
        content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    elif content is not None and not isinstance(content, str):
        raise ValueError("message content is neither text nor null")
    raw_calls = data.get("tool_calls") or ()
    if not isinstance(raw_calls, list | tuple):
        raise ValueError("tool_calls is not a list")
    tool_call_id = data.get("tool_call_id")
    name = data.get("name")
    return types.Message(
        role=role,
        content=content,
        tool_calls=tuple(_tool_call_from_wire(c, i) for i, c in enumerate(raw_calls)),
        tool_call_id=tool_call_id if isinstance(tool_call_id, str) else None,
        name=name if isinstance(name, str) else None,
    )


def response_from_wire(body: Any, default_model: str) -> types.ModelResponse:
    """Parse a chat completion body; raises ValueError when it is not one."""
    if not isinstance(body, dict):
        raise ValueError("the body is not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("the body has no choices")
    choice = choices[0]
    message = message_from_wire(choice.get("message"))
    if message.role != "assistant":
        raise ValueError(f"choices[0].message has role {message.role!r}, not 'assistant'")
    finish = choice.get("finish_reason")
    usage = body.get("usage")
    parsed_usage: types.Usage | None = None
    if isinstance(usage, dict):
        parsed_usage = types.Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
    model = body.get("model")
    return types.ModelResponse(
        message=message,
        finish_reason=finish if isinstance(finish, str) and finish else "stop",
        usage=parsed_usage,
        model=model if isinstance(model, str) and model else default_model,
    )


class OpenAIModel:
    """A chat model behind an OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama, OpenAI).

    The httpx client is created lazily, one per event loop (a Runtime's background
    loop and a worker's loop each get their own); ``aclose`` closes the current
    loop's client. A finish_reason of ``"length"`` is returned as is.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        context_window: int = 8192,
        max_output_tokens: int = 1024,
        timeout: float = 60.0,
        headers: dict[str, str] | None = None,
        structured_output: StructuredOutput = "json_schema",
        stream: bool = False,
        stream_usage: bool = True,
        check_window: bool = True,
        max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
    ) -> None:
        if context_window <= 0 or max_output_tokens <= 0:
            raise errors.InvalidInput(
                f"OpenAIModel {model!r}: context_window ({context_window}) and "
                f"max_output_tokens ({max_output_tokens}) must be positive."
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = model
        self.context_window = context_window
        self.max_output_tokens = max_output_tokens
        self.timeout = timeout
        self.structured_output: StructuredOutput = structured_output
        """How an ``output_type`` is asked for: ``response_format`` ``json_schema`` (OpenAI,
        vLLM, Ollama, LM Studio, llama.cpp), ``json_object`` with a schema
        (llama-cpp-python), or ``tool``: a final-answer tool (any server with tools)."""
        self.stream = stream
        """Ask for the answer as a stream: its text reaches the step's ``model.delta``
        events as it is made; the step still records only the complete response."""
        self.stream_usage = stream_usage
        """Send ``stream_options.include_usage`` (token counts at the stream's end)."""
        self._headers = dict(headers or {})
        if api_key is not None:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.max_tokens_field = max_tokens_field
        """OpenAI's reasoning models refuse ``max_tokens`` and take
        ``max_completion_tokens``; llama-cpp-python knows only ``max_tokens``."""
        self.check_window = check_window
        """Read the server's context length from ``GET /models`` before the first call
        and log ``model.window_mismatch`` when it differs from ``context_window``."""
        self.server_window: int | None = None
        """The context length the server publishes (vLLM's ``max_model_len``), once read."""
        self._window_checked = False
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def __repr__(self) -> str:
        return f"OpenAIModel(base_url={self.base_url!r}, model={self.model!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_clients"] = {}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def request_body(self, request: types.ModelRequest) -> dict[str, Any]:
        """The JSON body sent for ``request``."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [message_to_wire(m) for m in request.messages],
            self.max_tokens_field: (
                request.max_tokens if request.max_tokens is not None else self.max_output_tokens
            ),
        }
        if request.tools:
            body["tools"] = [tool_to_wire(t) for t in request.tools]
        if request.tools and request.tool_choice is not None:
            body["tool_choice"] = tool_choice_to_wire(request.tool_choice)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.output_schema is not None and self.structured_output != "tool":
            body["response_format"] = response_format_to_wire(
                request.output_schema, self.structured_output
            )
        return body

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                # Clients of loops that have ended cannot be awaited any more; forget them.
                for old in [old for old in self._clients if old.is_closed()]:
                    del self._clients[old]
                client = httpx.AsyncClient(
                    timeout=httpx.Timeout(self.timeout), headers=self._headers
                )
                self._clients[loop] = client
            return client

    async def complete(self, request: types.ModelRequest) -> types.ModelResponse:
        body = self.request_body(request)
        client = self._client()
        if self.check_window and not self._window_checked:
            self._window_checked = True
            await self.read_server_window(client)
        if self.stream:
            return await self._complete_streaming(client, body)
        with http_errors.translate(self.url, self.timeout):
            response = await client.post(self.url, json=body)
            http_errors.raise_for_status(response, self.url)
            try:
                return response_from_wire(response.json(), self.model)
            except (ValueError, TypeError) as exc:
                raise errors.ModelProtocolError(
                    f"POST {self.url} answered {response.status_code} with a body that is not "
                    f"a chat completion ({exc}): {response.text[:200]!r}. Check that base_url "
                    "points at an OpenAI-compatible API."
                ) from exc

    async def read_server_window(self, client: httpx.AsyncClient | None = None) -> int | None:
        """The context length the server publishes for this model in ``GET /models``
        (vLLM: ``max_model_len``; others: ``context_length``, ``max_context_length``),
        or None when it publishes none or cannot say. A value that differs from
        ``context_window`` is logged as ``model.window_mismatch``: tether budgets by
        ``context_window``, so a larger one is refused or cut by the server."""
        client = client or self._client()
        url = f"{self.base_url}/models"
        try:
            response = await client.get(url)
            listing = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            _log.debug("model.window_unknown", extra={"url": url, "error": repr(exc)})
            return None
        self.server_window = published_window(listing, self.model)
        if self.server_window is not None and self.server_window != self.context_window:
            _log.warning(
                "model.window_mismatch",
                extra={
                    "model": self.model,
                    "url": url,
                    "server_window": self.server_window,
                    "context_window": self.context_window,
                    "hint": "set OpenAIModel(context_window=...) to the server's value",
                },
            )
        return self.server_window

    async def _complete_streaming(
        self, client: httpx.AsyncClient, body: dict[str, Any]
    ) -> types.ModelResponse:
        body["stream"] = True
        if self.stream_usage:
            body["stream_options"] = {"include_usage": True}
        assembler = streaming.Assembler(self.model)
        with http_errors.translate(self.url, self.timeout):
            async with client.stream("POST", self.url, json=body) as response:
                if not 200 <= response.status_code < 300:
                    await response.aread()
                    http_errors.raise_for_status(response, self.url)
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    await response.aread()
                    try:  # a server that ignores "stream" answers with one completion
                        return response_from_wire(response.json(), self.model)
                    except (ValueError, TypeError) as exc:
                        raise errors.ModelProtocolError(
                            f"POST {self.url} answered a stream request with "
                            f"{response.headers.get('content-type')!r}: {response.text[:200]!r}"
                        ) from exc
                async for line in response.aiter_lines():
                    assembler.feed_line(line)
                    if assembler.done:
                        break
        return assembler.response(self.url)

    async def aclose(self) -> None:
        """Close the running loop's client. Clients of loops running in other threads
        are closed on their loops; a client of an idle loop stays until ``aclose`` is
        awaited on that loop. Await ``aclose`` on each loop before it ends: a loop
        closed first leaves its client's sockets to the garbage collector."""
        loop = asyncio.get_running_loop()
        with self._lock:
            mine = self._clients.pop(loop, None)
            elsewhere = [
                (owner, self._clients.pop(owner))
                for owner in list(self._clients)
                if owner.is_running() or owner.is_closed()
            ]
        for owner, client in elsewhere:
            if owner.is_running():
                asyncio.run_coroutine_threadsafe(client.aclose(), owner)
        if mine is not None:
            await mine.aclose()
