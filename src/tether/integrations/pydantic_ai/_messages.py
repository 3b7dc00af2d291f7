"""Pydantic AI messages ⇄ tether session messages, both ways without loss.

A session holds tether ``Message``s: role, content and tool calls, what ``tether sessions
show`` and ``/v1/sessions/{id}/messages`` print. Pydantic AI thinks in ``ModelMessage``s
(a request of parts, a response of parts), which do not map one to one: one request
may carry several tool results, and the first request of a task carries the task's
input, which tether already stored as the session's user message.

So the messages one step writes form a *group*: readable tether messages, one per part
worth reading, and on the group's last message ``raw = {"pydantic_ai": [...]}``, the
exact JSON of the Pydantic AI messages the group stands for (only their parts not in the
session yet), with ``"covers": [seq]`` naming the plain user message (the task's input)
that JSON already holds. The group's other messages carry ``{"pydantic_ai": None}``: a
later message speaks for them. Reading a session back takes the JSON where there is
some and rebuilds plain messages (another agent's, or an input no step answered yet)
from their role and content.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic_ai import messages as pai

from tether import types

KEY = "pydantic_ai"
"""The key of a message's ``raw`` that holds Pydantic AI JSON."""

_VOLATILE = frozenset({"timestamp", "run_id", "conversation_id"})
"""Fields a re-run fills in anew (the clock, the run's ids): left out of fingerprints."""


def dump(messages: Sequence[pai.ModelMessage]) -> list[dict[str, Any]]:
    """The JSON of Pydantic AI messages, as the journal and the session keep it."""
    out: list[dict[str, Any]] = pai.ModelMessagesTypeAdapter.dump_python(
        list(messages), mode="json"
    )
    return out


def load(data: Sequence[Any]) -> list[pai.ModelMessage]:
    return pai.ModelMessagesTypeAdapter.validate_python(list(data))


def stable(data: Any) -> Any:
    """``data`` without the fields a re-run fills in anew, for a step's fingerprint."""
    if isinstance(data, dict):
        return {k: stable(v) for k, v in data.items() if k not in _VOLATILE}
    if isinstance(data, list):
        return [stable(v) for v in data]
    return data


# ---- tether -> Pydantic AI ---------------------------------------------------------


def history(stored: Sequence[types.StoredMessage]) -> list[pai.ModelMessage]:
    """The session's messages as Pydantic AI's ``message_history``."""
    covered: set[int] = set()
    for m in stored:
        raw = ours(m.message)
        if raw is not None:
            covered.update(int(seq) for seq in raw.get("covers") or ())
    out: list[pai.ModelMessage] = []
    for m in stored:
        raw = ours(m.message)
        if raw is not None:
            if raw[KEY] is not None:
                out.extend(load(raw[KEY]))
        elif m.seq not in covered:
            out.append(_plain(m))
    return out


def ours(message: types.Message) -> dict[str, Any] | None:
    """The message's Pydantic AI ``raw``, or None (a plain message, another framework's)."""
    raw = message.raw
    return raw if isinstance(raw, dict) and KEY in raw else None


def _plain(stored: types.StoredMessage) -> pai.ModelMessage:
    """A message no Pydantic AI step wrote (tether's own agent's, or a user's input)."""
    m = stored.message
    at = datetime.fromtimestamp(stored.created_at, UTC) if stored.created_at else None
    content = m.content or ""
    if m.role == "assistant":
        parts: list[pai.ModelResponsePart] = [pai.TextPart(content)] if content else []
        parts.extend(pai.ToolCallPart(c.name, c.arguments, tool_call_id=c.id) for c in m.tool_calls)
        return pai.ModelResponse(parts, timestamp=at) if at else pai.ModelResponse(parts)
    part: pai.ModelRequestPart
    if m.role == "system":
        part = pai.SystemPromptPart(content)
    elif m.role == "tool":
        part = pai.ToolReturnPart(m.name or "tool", content, tool_call_id=m.tool_call_id or "")
    else:
        part = pai.UserPromptPart(content, timestamp=at) if at else pai.UserPromptPart(content)
    return pai.ModelRequest([part], timestamp=at)


# ---- Pydantic AI -> tether ---------------------------------------------------------


def group(
    new: Sequence[pai.ModelMessage],
    *,
    input_text: str | None = None,
    input_seq: int | None = None,
) -> list[types.Message]:
    """The tether messages for ``new`` (Pydantic AI messages holding only parts not in
    the session yet). A user prompt equal to ``input_text`` is the task's input, already
    in the session at ``input_seq``: it gets no message of its own, and the group's JSON
    says it covers that seq."""
    readable: list[types.Message] = []
    covers: list[int] = []
    for message in new:
        if isinstance(message, pai.ModelResponse):
            readable.append(_assistant(message))
            continue
        for part in message.parts:
            if (
                input_seq is not None
                and not covers
                and isinstance(part, pai.UserPromptPart)
                and part.content == input_text
            ):
                covers.append(input_seq)
                continue
            view = _request_part(part)
            if view is not None:
                readable.append(view)
    if not readable:
        # Every part was the input or unreadable: one message still carries the JSON.
        readable.append(types.Message(role="user", content=None))
    raw: dict[str, Any] = {KEY: dump(new)}
    if covers:
        raw["covers"] = covers
    head = [_with_raw(m, {KEY: None}) for m in readable[:-1]]
    return [*head, _with_raw(readable[-1], raw)]


def _with_raw(message: types.Message, raw: dict[str, Any]) -> types.Message:
    return types.Message(
        role=message.role,
        content=message.content,
        tool_calls=message.tool_calls,
        tool_call_id=message.tool_call_id,
        name=message.name,
        raw=raw,
    )


def _assistant(response: pai.ModelResponse) -> types.Message:
    texts = [p.content for p in response.parts if isinstance(p, pai.TextPart)]
    calls = tuple(
        types.ToolCall(id=p.tool_call_id, name=p.tool_name, arguments=p.args_as_json_str())
        for p in response.parts
        if isinstance(p, pai.ToolCallPart)
    )
    return types.Message(role="assistant", content="".join(texts) or None, tool_calls=calls)


def _request_part(part: Any) -> types.Message | None:
    if isinstance(part, pai.SystemPromptPart):
        return types.Message(role="system", content=part.content)
    if isinstance(part, pai.UserPromptPart):
        return types.Message(role="user", content=_text(part.content))
    if isinstance(part, pai.ToolReturnPart):
        return types.Message(
            role="tool",
            content=part.model_response_str(),
            tool_call_id=part.tool_call_id,
            name=part.tool_name,
        )
    if isinstance(part, pai.RetryFeedbackPart):
        return types.Message(role="user", content=part.model_response())
    return None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Iterable):
        return "".join(c if isinstance(c, str) else f"[{type(c).__name__}]" for c in content)
    return json.dumps(content, default=str)


def new_parts(
    messages: Sequence[pai.ModelMessage], seen: set[int], keep: list[object]
) -> list[pai.ModelMessage]:
    """The messages of ``messages`` with only the parts not ``seen`` yet (by identity),
    marking them seen; ``keep`` holds the parts so their ids stay theirs."""
    out: list[pai.ModelMessage] = []
    for message in messages:
        fresh = [p for p in message.parts if id(p) not in seen]
        if not fresh:
            continue
        for p in fresh:
            seen.add(id(p))
            keep.append(p)
        if isinstance(message, pai.ModelResponse) or len(fresh) == len(message.parts):
            out.append(message)
        else:
            out.append(_replace_parts(message, fresh))
    return out


def mark_seen(messages: Sequence[pai.ModelMessage], seen: set[int], keep: list[object]) -> None:
    new_parts(messages, seen, keep)


def _replace_parts(message: pai.ModelRequest, parts: list[Any]) -> pai.ModelRequest:
    return dataclasses.replace(message, parts=parts)
