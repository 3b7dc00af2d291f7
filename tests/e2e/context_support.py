"""Shared pieces of the context e2e tests: a scripted conversation with tools, and
checks on what the stand-in server received."""

from __future__ import annotations

import json
from typing import Any

from tether import ToolContext, tool, types
from tether.context import summarize
from tether.models import openai, scripted
from tether.models.scripted import ScriptedModel


@tool
def record(n: int, ctx: ToolContext) -> str:
    """Record a number."""
    return f"recorded {n} (key {ctx.idempotency_key}) " + "padding " * 6


def is_summary_request(request: types.ModelRequest) -> bool:
    first = request.messages[0].content or "" if request.messages else ""
    return first in (summarize.SUMMARY_INSTRUCTIONS, summarize.RESUMMARY_INSTRUCTIONS)


def conversation(request: types.ModelRequest) -> scripted.Reply:
    """Every third turn calls ``record`` twice in parallel, the others once; then answers.
    A summarisation request gets a short summary naming how many messages it saw."""
    if is_summary_request(request):
        seen = (request.messages[-1].content or "").count("[message ")
        return f"The user asked for numbers to be recorded; {seen} more messages covered."
    last = request.messages[-1]
    if last.role == "user":
        turn = int((last.content or "turn 0").split()[1])
        if turn % 3 == 0:
            return ScriptedModel.calls([("record", {"n": turn}), ("record", {"n": turn + 1})])
        return ScriptedModel.call("record", n=turn)
    return "done with this turn, everything is recorded as asked"


def wire_request(body: dict[str, Any]) -> types.ModelRequest:
    """A chat-completion body as the request the server counted."""
    tools = tuple(
        types.ToolSpec(
            t["function"]["name"],
            t["function"].get("description") or "",
            t["function"].get("parameters") or {},
        )
        for t in body.get("tools") or ()
    )
    return types.ModelRequest(
        messages=tuple(openai.message_from_wire(m) for m in body["messages"]),
        tools=tools,
        max_tokens=body.get("max_tokens"),
    )


def server_would_refuse(body: dict[str, Any], window: int) -> bool:
    """The stand-in server's own rule (and vLLM's): prompt + max_tokens > window."""
    request = wire_request(body)
    prompt = scripted.estimate_tokens(request.messages, request.tools)
    return prompt + (request.max_tokens or 0) > window


def orphans(body: dict[str, Any]) -> list[str]:
    """Tool results without their call, and calls without their results, in one request."""
    problems: list[str] = []
    open_calls: set[str] = set()
    for position, m in enumerate(body["messages"]):
        if m["role"] == "tool":
            if m.get("tool_call_id") not in open_calls:
                problems.append(f"tool result at {position} has no call before it")
            open_calls.discard(m.get("tool_call_id"))
            continue
        if open_calls:
            problems.append(f"calls {sorted(open_calls)} have no results before {position}")
        open_calls = {c["id"] for c in m.get("tool_calls") or ()}
    return problems


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
