"""The session's messages as the Agents SDK's input items, and back, losslessly.

A message this integration wrote keeps the SDK's item JSON in ``Message.raw`` (under
``"openai_agents"``), so turning it back gives the very item; its role, content and
tool calls are filled in too, so ``tether sessions show`` and the HTTP API read it like
any message. Messages written by someone else (the task's input, tether's own agent)
are converted by their role: user/system text, assistant text and tool calls
(``function_call`` items), tool results (``function_call_output`` items).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from tether import types

RAW_KEY = "openai_agents"


def to_items(messages: Iterable[types.Message]) -> list[dict[str, Any]]:
    """Input items for the Runner, in the session's order."""
    items: list[dict[str, Any]] = []
    for message in messages:
        raw = message.raw
        if isinstance(raw, dict) and isinstance(raw.get(RAW_KEY), dict):
            items.append(dict(raw[RAW_KEY]))
        else:
            items.extend(_items_of(message))
    return items


def _items_of(message: types.Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {
                "type": "function_call_output",
                "call_id": message.tool_call_id or "",
                "output": message.content or "",
            }
        ]
    items: list[dict[str, Any]] = []
    if message.content is not None or not message.tool_calls:
        items.append({"role": message.role, "content": message.content or ""})
    items.extend(
        {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
        for c in message.tool_calls
    )
    return items


def to_messages(items: Sequence[Any]) -> list[types.Message]:
    """One message per item, each carrying its item verbatim."""
    return [to_message(item) for item in items]


def to_message(item: Any) -> types.Message:
    data: dict[str, Any] = json.loads(json.dumps(item, default=str))
    raw = {RAW_KEY: data}
    kind = data.get("type")
    role = data.get("role")
    if kind in (None, "message") and role in ("user", "system", "developer", "assistant"):
        return types.Message(
            role="system" if role == "developer" else role,
            content=_text(data.get("content")),
            raw=raw,
        )
    if kind == "function_call":
        call = types.ToolCall(
            id=str(data.get("call_id", "")),
            name=str(data.get("name", "")),
            arguments=str(data.get("arguments", "")),
        )
        return types.Message(role="assistant", tool_calls=(call,), raw=raw)
    if kind == "function_call_output":
        output = data.get("output")
        return types.Message(
            role="tool",
            content=output if isinstance(output, str) else json.dumps(output),
            tool_call_id=str(data.get("call_id", "")),
            raw=raw,
        )
    # reasoning, hosted tool calls and other items: the item's type names it
    return types.Message(role="assistant", name=str(kind), raw=raw)


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text", part.get("refusal"))
                if isinstance(text, str):
                    parts.append(text)
        return "".join(parts)
    return str(content)
