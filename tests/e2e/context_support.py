"""Shared pieces of the context e2e tests: a scripted conversation with tools, and
checks on what the stand-in server received."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tether import Agent, ContextPolicy, OpenAIModel, Runtime, ToolContext, tool, types
from tether.context import summarize
from tether.models import openai, scripted
from tether.models.scripted import ScriptedModel
from tether.testing import StandInModelServer


@tool
def record(n: int, ctx: ToolContext) -> str:
    """Record a number."""
    return f"recorded {n} (key {ctx.idempotency_key}) " + "padding " * 6


def is_summary_request(request: types.ModelRequest) -> bool:
    first = request.messages[0].content or "" if request.messages else ""
    return first in (summarize.SUMMARY_INSTRUCTIONS, summarize.RESUMMARY_INSTRUCTIONS)


def growing(request: types.ModelRequest) -> scripted.Reply:
    """Like ``conversation``, but folding appends to the summary (it only grows) and
    re-summarising cuts it short."""
    if is_summary_request(request):
        text = request.messages[-1].content or ""
        if request.messages[0].content == summarize.RESUMMARY_INSTRUCTIONS:
            return "Condensed: numbers were recorded."
        prior = text.split("Current summary:\n", 1)[1].split("\n\nNew messages:", 1)[0]
        seen = text.count("[message ")
        kept = "" if prior == "(no summary yet)" else prior + " "
        return kept + f"Then {seen} more messages recorded numbers as the user asked."
    return conversation(request)


def truncating(request: types.ModelRequest) -> scripted.Reply:
    """Like ``conversation``, but every summary is cut off by its token limit."""
    if is_summary_request(request):
        return ScriptedModel.truncated("The user asked for")
    return conversation(request)


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


class Collect:
    """An observer that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_event(self, event: Any) -> None:
        self.events.append(event)

    def named(self, name: str) -> list[Any]:
        return [e for e in self.events if e.name == name]


@dataclass
class Conversation:
    results: list[Any]
    bodies: list[dict[str, Any]]
    session: types.SessionRecord
    messages: list[types.StoredMessage]
    memory: list[Any]
    seen: Collect


def make_agent(base_url: str, window: int, policy: ContextPolicy) -> Agent:
    model = OpenAIModel(
        base_url=base_url, model="any", context_window=window, max_output_tokens=256
    )
    return Agent(
        "recorder",
        model,
        instructions="Record the numbers the user gives, then say done.",
        tools=[record],
        context=policy,
    )


def converse(
    db: str,
    policy: ContextPolicy,
    turns: int,
    *,
    window: int,
    counter_window: int | None = None,
    stop_on_failure: bool = False,
    growing_summary: bool = False,
    inputs: list[str] | None = None,
    truncate_summaries: bool = False,
) -> Conversation:
    """``turns`` user turns in one session, one task each, against a stand-in server
    that enforces ``window``; the agent believes the window is ``counter_window``."""
    seen = Collect()
    results: list[Any] = []
    script = growing if growing_summary else conversation
    if truncate_summaries:
        script = truncating
    with StandInModelServer(script, context_window=window) as server:
        agent = make_agent(server.base_url, counter_window or window, policy)
        with Runtime(store=f"sqlite:///{db}?synchronous=normal", observers=[seen]) as runtime:
            runtime.register(agent)
            session: str | None = None
            texts = inputs or [f"turn {turn}" for turn in range(1, turns + 1)]
            for text in texts:
                task = runtime.submit("recorder", text, session=session)
                session = task.session_id
                result = runtime.run(task.id)
                results.append(result)
                if stop_on_failure and result.status != "completed":
                    break
            assert session is not None
            sid = session
            record_ = runtime.run_on_store(lambda s: s.get_session(sid))
            messages = runtime.run_on_store(lambda s: s.list_messages(sid))
            memory = runtime.run_on_store(lambda s: s.list_memory(sid))
        bodies = server.requests
    return Conversation(results, bodies, record_, messages, memory, seen)
