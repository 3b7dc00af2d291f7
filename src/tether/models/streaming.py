"""Token streaming: a model's text as it is made, to whoever runs the step.

``deltas_to(sink)`` sets, for the code inside it (a model step), where text pieces go;
a streaming model calls ``emit(text)`` for each. Nothing else is kept: the step's
result is the complete response, assembled by ``Assembler`` from the chunks of an
OpenAI-compatible stream (``chat.completion.chunk`` objects). A stream that ends
without a ``finish_reason`` was cut off: ``StreamInterrupted`` (retryable), never a
short answer.
"""

from __future__ import annotations

import contextvars
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tether import errors, types

Sink = Callable[[str], None]

_sink: contextvars.ContextVar[Sink | None] = contextvars.ContextVar(
    "tether_model_deltas", default=None
)


class deltas_to:
    """Send the text pieces of the code inside (a model step) to ``sink``. A class
    rather than a generator context manager: every model step enters one."""

    __slots__ = ("_sink", "_token")

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def __enter__(self) -> None:
        self._token = _sink.set(self._sink)

    def __exit__(self, *exc: object) -> None:
        _sink.reset(self._token)


def emit(text: str) -> None:
    """Hand one piece of answer text to the running step's sink, if any."""
    sink = _sink.get()
    if sink is not None and text:
        sink(text)


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Assembler:
    """The complete response from the chunks of one stream."""

    default_model: str
    content: list[str] = field(default_factory=list)
    calls: dict[int, _Call] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: types.Usage | None = None
    model: str = ""
    done: bool = False

    def feed_line(self, line: str) -> None:
        """One line of the server-sent event stream."""
        if not line.startswith("data:"):
            return  # comments, event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise errors.ModelProtocolError(
                f"the model's stream sent a line that is not JSON: {data[:200]!r}"
            ) from exc
        self.feed(chunk)

    def feed(self, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            raise errors.ModelProtocolError(f"the model's stream sent {chunk!r}, not an object")
        if "error" in chunk:
            # vLLM and llama.cpp report a failure met mid-stream as a data line.
            raise errors.ServerError(f"the model's stream failed: {chunk['error']}")
        if isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = types.Usage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                self.content.append(text)
                emit(text)
            for position, raw in enumerate(delta.get("tool_calls") or ()):
                self._call_delta(raw, position)
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]

    def _call_delta(self, raw: Any, position: int) -> None:
        if not isinstance(raw, dict):
            return
        index = raw.get("index", position)
        call = self.calls.setdefault(index if isinstance(index, int) else position, _Call())
        if isinstance(raw.get("id"), str) and raw["id"]:
            call.id = raw["id"]
        function = raw.get("function") or {}
        if isinstance(function.get("name"), str) and function["name"]:
            call.name = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call.arguments += arguments
        elif isinstance(arguments, dict):  # whole, as an object (Ollama)
            call.arguments = json.dumps(arguments)

    def response(self, url: str) -> types.ModelResponse:
        if self.finish_reason is None:
            raise errors.StreamInterrupted(
                f"the stream from {url} ended after {sum(map(len, self.content))} characters "
                "without a finish_reason; tether asks again (the partial answer is dropped)"
            )
        calls = tuple(
            types.ToolCall(
                id=c.id or uuid.uuid4().hex[:9], name=c.name, arguments=c.arguments.strip() or "{}"
            )
            for i, c in sorted(self.calls.items())
        )
        text = "".join(self.content)
        return types.ModelResponse(
            message=types.Message(role="assistant", content=text or None, tool_calls=calls),
            finish_reason=self.finish_reason,
            usage=self.usage,
            model=self.model or self.default_model,
        )
