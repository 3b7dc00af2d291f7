"""ScriptedModel: a deterministic model for tests, benchmarks and the offline demo.

Its reply is a pure function of the request, so a replayed task sees exactly the
answer it saw the first time. The script is either a callable
``(ModelRequest) -> Reply`` or a sequence of replies; with a sequence, the reply
used is the one at index "number of assistant messages after the last user
message", so every user turn replays the script from its start, and past the end
the last reply repeats.

A ``Reply`` is a ``str`` (a final answer), a ``ModelResponse`` (used as is), or
one of the helpers ``ScriptedModel.call(name, **arguments)``,
``ScriptedModel.calls([...])`` and ``ScriptedModel.truncated(text)``.

Token counts come from ``estimate_tokens``: not a tokenizer, a documented
deterministic estimate (about four characters a token) that is cheap to compute.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from tether import errors, types

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4
"""Tokens added per message (role and separators)."""
TOOL_CALL_OVERHEAD = 4
"""Tokens added per tool call inside a message."""
TOOL_OVERHEAD = 8
"""Tokens added per tool definition offered to the model."""
REPLY_OVERHEAD = 3
"""Tokens added once per request (the assistant reply's priming)."""


def text_tokens(text: str | None) -> int:
    """``ceil(len(text) / 4)``; 0 for None or empty text."""
    if not text:
        return 0
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def _message_tokens(message: types.Message) -> int:
    total = MESSAGE_OVERHEAD + text_tokens(message.content) + text_tokens(message.name)
    for call in message.tool_calls:
        total += TOOL_CALL_OVERHEAD + text_tokens(call.name) + text_tokens(call.arguments)
    return total


def estimate_tokens(messages: Iterable[types.Message], tools: Iterable[types.ToolSpec] = ()) -> int:
    """Estimated prompt tokens of a request.

    ``REPLY_OVERHEAD`` + for each message ``MESSAGE_OVERHEAD`` + ceil(len/4) of its
    content and name + for each of its tool calls ``TOOL_CALL_OVERHEAD`` + ceil(len/4)
    of the name and of the arguments text; + for each tool ``TOOL_OVERHEAD`` +
    ceil(len/4) of its name, its description and its parameters as compact JSON
    with sorted keys."""
    total = REPLY_OVERHEAD
    for message in messages:
        total += _message_tokens(message)
    for tool in tools:
        schema = json.dumps(tool.parameters, sort_keys=True, separators=(",", ":"))
        total += (
            TOOL_OVERHEAD
            + text_tokens(tool.name)
            + text_tokens(tool.description)
            + text_tokens(schema)
        )
    return total


def completion_tokens(message: types.Message) -> int:
    """Estimated tokens of an answer: ceil(len/4) of its content, and of each tool
    call's name and arguments; at least 1."""
    total = text_tokens(message.content)
    for call in message.tool_calls:
        total += text_tokens(call.name) + text_tokens(call.arguments)
    return max(1, total)


@dataclass(frozen=True, slots=True)
class ToolCallsReply:
    """A scripted answer that calls tools: ``(name, arguments JSON text)`` pairs."""

    calls: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class TruncatedReply:
    """A scripted answer cut off by the token limit (finish_reason "length")."""

    text: str


Reply: TypeAlias = "str | types.ModelResponse | ToolCallsReply | TruncatedReply"
Script: TypeAlias = "Callable[[types.ModelRequest], Reply] | Sequence[Reply]"


def _arguments_text(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def reply_index(messages: Sequence[types.Message]) -> int:
    """The number of assistant messages after the last user message."""
    count = 0
    for message in reversed(messages):
        if message.role == "user":
            break
        if message.role == "assistant":
            count += 1
    return count


def tool_call_id(
    messages: Sequence[types.Message], position: int, name: str, assistants: int | None = None
) -> str:
    """A tool call id that depends only on the request and the call's position:
    a hash of the message count, the assistant-message count (``assistants``, counted
    here when not given), the last message and the position, so ids do not repeat
    within a conversation."""
    last = messages[-1] if messages else None
    if assistants is None:
        assistants = sum(1 for m in messages if m.role == "assistant")
    key = "|".join(
        (
            str(len(messages)),
            str(assistants),
            last.role if last else "",
            (last.content or "") if last else "",
            (last.tool_call_id or "") if last else "",
            str(position),
            name,
        )
    )
    return "call_" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


class RequestCounts:
    """``estimate_tokens`` and the assistant-message count of requests, in O(messages
    new since an earlier request of the same conversation).

    An agent's next request repeats the previous one's messages (the same objects) and
    adds a few: the counts of that prefix are carried on instead of counting the whole
    history again, so the model's own time per call stays flat as a session grows (a
    benchmark's instant model is not what it measures). A conversation is known by the
    identity of its first message: the entry holds its messages, so that identity is not
    reused while it is kept; the least recently used of ``size`` entries is dropped.
    Any request that does not extend a known one is counted from its start: the counts
    are the same either way."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._known: dict[int, tuple[tuple[types.Message, ...], int, int]] = {}
        self._tools: dict[int, tuple[Sequence[types.ToolSpec], int]] = {}
        self._lock = threading.Lock()

    def messages(self, messages: Sequence[types.Message]) -> tuple[int, int]:
        """(tokens of ``messages`` as ``estimate_tokens`` counts them, without the
        request's ``REPLY_OVERHEAD``; how many are assistant messages)."""
        held = tuple(messages)
        if not held:
            return 0, 0
        key = id(held[0])
        with self._lock:
            known = self._known.pop(key, None)
        start, tokens, assistants = 0, 0, 0
        if known is not None:
            prefix, known_tokens, known_assistants = known
            if len(prefix) <= len(held) and all(map(operator.is_, prefix, held)):
                start, tokens, assistants = len(prefix), known_tokens, known_assistants
        for message in held[start:]:
            tokens += _message_tokens(message)
            assistants += message.role == "assistant"
        with self._lock:
            self._known[key] = (held, tokens, assistants)
            if len(self._known) > self._size:
                del self._known[next(iter(self._known))]
        return tokens, assistants

    def tools(self, tools: Sequence[types.ToolSpec]) -> int:
        """Tokens of the tools offered (``estimate_tokens`` without messages or overhead),
        reused while the same sequence of tools (the same object: an agent's task run
        offers one) is offered."""
        key = id(tools)
        with self._lock:
            known = self._tools.get(key)
        if known is not None and known[0] is tools:
            return known[1]
        tokens = estimate_tokens((), tools) - REPLY_OVERHEAD
        with self._lock:
            self._tools[key] = (tools, tokens)
            if len(self._tools) > self._size:
                del self._tools[next(iter(self._tools))]
        return tokens


class ScriptedModel:
    """A deterministic Model whose answers follow a script (see the module docstring).

    A single reply given as the script is the same as a one-item sequence."""

    def __init__(
        self,
        script: Script | Reply,
        *,
        name: str = "scripted",
        context_window: int = 8192,
        max_output_tokens: int = 1024,
    ) -> None:
        if isinstance(script, str | types.ModelResponse | ToolCallsReply | TruncatedReply):
            script = (script,)
        if not callable(script):
            script = tuple(script)
            if not script:
                raise errors.InvalidInput(
                    f"ScriptedModel {name!r}: the script is empty; give at least one reply."
                )
            for position, item in enumerate(script):
                _check_reply(item, name, f"script[{position}]")
        self._script = script
        self._counts = RequestCounts()
        self.name = name
        self.context_window = context_window
        self.max_output_tokens = max_output_tokens

    def __repr__(self) -> str:
        return f"ScriptedModel(name={self.name!r})"

    @staticmethod
    def call(name: str, /, **arguments: Any) -> ToolCallsReply:
        """A reply that calls one tool with these arguments."""
        return ToolCallsReply(((name, json.dumps(arguments)),))

    @staticmethod
    def calls(
        items: Iterable[ToolCallsReply | tuple[str, dict[str, Any] | str]],
    ) -> ToolCallsReply:
        """A reply that calls several tools at once. Each item is a ``call(...)`` or a
        ``(name, arguments)`` pair; arguments given as a ``str`` are sent verbatim
        (to script invalid JSON, say)."""
        out: list[tuple[str, str]] = []
        for item in items:
            if isinstance(item, ToolCallsReply):
                out.extend(item.calls)
            else:
                tool_name, arguments = item
                out.append((tool_name, _arguments_text(arguments)))
        if not out:
            raise errors.InvalidInput("ScriptedModel.calls needs at least one call.")
        return ToolCallsReply(tuple(out))

    @staticmethod
    def truncated(text: str = "This answer was cut off") -> TruncatedReply:
        """A reply cut off by its token limit (finish_reason ``"length"``)."""
        return TruncatedReply(text)

    def _choose(self, request: types.ModelRequest) -> Reply:
        script = self._script
        if callable(script):
            try:
                chosen = script(request)
            except errors.TetherError:
                raise
            except Exception as exc:
                raise errors.ModelProtocolError(
                    f"ScriptedModel {self.name!r}: the script raised "
                    f"{type(exc).__name__}: {exc}; fix the script function."
                ) from exc
            if not isinstance(chosen, str | types.ModelResponse | ToolCallsReply | TruncatedReply):
                raise errors.ModelProtocolError(
                    f"ScriptedModel {self.name!r}: the script returned a "
                    f"{type(chosen).__name__}; {_REPLY_KINDS}."
                )
            return chosen
        assert isinstance(script, tuple)
        replies: tuple[Reply, ...] = script
        return replies[min(reply_index(request.messages), len(replies) - 1)]

    def reply(self, request: types.ModelRequest) -> types.ModelResponse:
        """The answer to ``request``: the same request always gets the same answer."""
        chosen = self._choose(request)
        tokens, assistants = self._counts.messages(request.messages)
        prompt = REPLY_OVERHEAD + tokens + self._counts.tools(request.tools)
        if isinstance(chosen, types.ModelResponse):
            response = chosen
            if response.usage is None:
                usage = types.Usage(prompt, completion_tokens(response.message))
                response = dataclasses.replace(response, usage=usage)
            if not response.model:
                response = dataclasses.replace(response, model=self.name)
            return response
        finish = "stop"
        if isinstance(chosen, str):
            message = types.Message(role="assistant", content=chosen)
        elif isinstance(chosen, TruncatedReply):
            message = types.Message(role="assistant", content=chosen.text)
            finish = "length"
        else:
            message = types.Message(
                role="assistant",
                content=None,
                tool_calls=tuple(
                    types.ToolCall(
                        id=tool_call_id(request.messages, position, tool_name, assistants),
                        name=tool_name,
                        arguments=arguments,
                    )
                    for position, (tool_name, arguments) in enumerate(chosen.calls)
                ),
            )
            finish = "tool_calls"
        return types.ModelResponse(
            message=message,
            finish_reason=finish,
            usage=types.Usage(prompt, completion_tokens(message)),
            model=self.name,
        )

    async def complete(self, request: types.ModelRequest) -> types.ModelResponse:
        return self.reply(request)

    async def aclose(self) -> None:
        return None


def _check_reply(item: object, model: str, where: str) -> None:
    if not isinstance(item, str | types.ModelResponse | ToolCallsReply | TruncatedReply):
        raise errors.InvalidInput(
            f"ScriptedModel {model!r}: {where} is a {type(item).__name__}; {_REPLY_KINDS}."
        )


_REPLY_KINDS = (
    "a reply is a str, a ModelResponse, ScriptedModel.call(...), "
    "ScriptedModel.calls([...]) or ScriptedModel.truncated(...)"
)
