"""Property tests of the context manager over random conversations (parallel tool
calls included): every request fits, a tool call is never separated from its results,
the system prompt and the summary are never dropped, and every message of the session
is at every step in the request, in the summary's sources or in memory — as recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether import types
from tether.context import memory, summarize
from tether.context.embedders import HashedEmbedder
from tether.context.ledger import Ledger
from tether.context.planner import ContextPlanner
from tether.context.policy import ContextPolicy
from tether.context.window import Entry
from tether.models.scripted import ScriptedModel, estimate_tokens
from tether.store import vectors
from tether.store.base import MemoryItem

WINDOW = 700
SYSTEM = types.Message(role="system", content="You are a careful assistant.")
TOOLS = (types.ToolSpec("lookup", "Look a thing up.", {"type": "object"}),)


class Steps:
    """The journal a task lends the manager, run in memory: each step runs once."""

    task_id = "task-1"
    replaying = False

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.steps: list[tuple[str, str]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def step(
        self,
        kind: str,
        name: str,
        inputs: Any,
        execute: Callable[[], Awaitable[dict[str, Any]]],
        state: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> dict[str, Any]:
        out = await execute()
        if state is not None:
            self.state = state(out)
        self.steps.append((kind, name))
        return out

    def emit(self, name: str, **data: Any) -> None:
        self.events.append((name, data))


class ListMemory:
    """A session memory kept in a list, searched with the store's own top-k."""

    def __init__(self) -> None:
        self.items: dict[int, memory.Memory] = {}

    async def add(self, items: Sequence[memory.Memory]) -> None:
        for i in items:
            self.items[i.seq] = i

    async def search(self, vector: Sequence[float], k: int) -> list[tuple[memory.Memory, float]]:
        stored = [MemoryItem(i.seq, i.role, i.text, i.vector) for i in self.items.values()]
        hits = vectors.top_k("s", stored, vector, k)
        return [(self.items[h.item.seq], h.score) for h in hits]


def summarizer(request: types.ModelRequest) -> str:
    seen = (request.messages[-1].content or "").count("[message ")
    return f"Earlier: {seen} messages about lookups."


words = st.text(alphabet="abcdefghij ", min_size=20, max_size=240)
turn = st.tuples(
    words,  # the user's text
    st.lists(st.lists(st.tuples(words, words), min_size=1, max_size=3), max_size=3),
    words,  # the final answer
)


async def converse(strategy: str, turns: list[Any]) -> tuple[Steps, ListMemory]:
    policy = ContextPolicy(strategy=strategy, keep_recent=2)  # type: ignore[arg-type]
    budget = policy.resolve(WINDOW, 200)
    steps, mem = Steps(), ListMemory()
    history: list[Entry] = []
    model = ScriptedModel(summarizer)

    async def ask() -> None:
        manager = ContextPlanner(
            policy=policy,
            budget=budget,
            system=[SYSTEM],
            tools=TOOLS,
            journal=steps,
            session_state=steps.state,
            complete=model.complete,
            summarizer="scripted",
            memory_access=mem,
            embedder=HashedEmbedder(32),
        )
        prepared = await manager.prepare(history)
        check(prepared.messages, history, Ledger.from_dict(steps.state), mem, budget.budget)
        usage = types.Usage(estimate_tokens(prepared.messages, TOOLS), 1)
        reply = types.ModelResponse(types.Message(role="assistant", content="ok"), usage=usage)
        steps.state = prepared.observe(reply)

    def add(message: types.Message) -> None:
        history.append(Entry(len(history) + 1, message))

    for user, rounds, answer in turns:
        add(types.Message(role="user", content=user))
        for calls in rounds:
            await ask()
            seq = len(history) + 1
            ids = [f"c{seq}_{i}" for i in range(len(calls))]
            add(
                types.Message(
                    role="assistant",
                    tool_calls=tuple(
                        types.ToolCall(i, "lookup", f'{{"q": "{q}"}}')
                        for i, (q, _) in zip(ids, calls, strict=True)
                    ),
                )
            )
            for i, (_, result) in zip(ids, calls, strict=True):
                add(types.Message(role="tool", content=result, tool_call_id=i, name="lookup"))
        await ask()
        add(types.Message(role="assistant", content=answer))
    return steps, mem


def check(
    request: Sequence[types.Message],
    history: Sequence[Entry],
    ledger: Ledger,
    mem: ListMemory,
    budget: int,
) -> None:
    assert estimate_tokens(request, TOOLS) <= budget
    assert request[0] == SYSTEM
    position = 1
    if ledger.summary is not None:
        assert request[1].role == "system"
        assert (request[1].content or "").startswith("Summary of the earlier conversation")
        assert ledger.summary.text in (request[1].content or "")
        position = 2
    if ledger.memory:
        assert (request[position].content or "").startswith(
            f"{ledger.memory_messages} earlier messages were moved to memory"
        )
        position += 1
    live = [e for e in history if e.seq > ledger.folded_upto]
    assert list(request[position:]) == [e.message for e in live]
    # a tool call is never separated from its results
    answered: set[str] = set()
    for m in request:
        if m.role == "tool":
            assert m.tool_call_id in answered
        answered |= {c.id for c in m.tool_calls}
    calls = {c.id for m in request for c in m.tool_calls}
    results = {m.tool_call_id for m in request if m.role == "tool"}
    assert calls == results
    # every message is somewhere, and the ledger says where
    for e in history:
        where = ledger.placement(e.seq)
        if where == "memory":
            assert e.seq in mem.items
        elif where == "summary":
            assert e.seq not in mem.items


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(turn, min_size=6, max_size=25))
def test_summarize_keeps_the_invariants(turns: list[Any]) -> None:
    steps, mem = asyncio.run(converse("summarize", turns))
    assert not mem.items
    compacted = [d for name, d in steps.events if name == "context.compacted"]
    assert len(compacted) == sum(1 for kind, _ in steps.steps if kind == "summarize")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(turn, min_size=6, max_size=25))
def test_memory_keeps_the_invariants(turns: list[Any]) -> None:
    steps, mem = asyncio.run(converse("memory", turns))
    ledger = Ledger.from_dict(steps.state)
    assert sorted(mem.items) == list(range(1, ledger.folded_upto + 1))
    assert ledger.summary is None


def test_a_long_conversation_compacts_and_pins_the_summary() -> None:
    turns = [
        (f"question {n} " + "abc " * 40, [[("q", "result " * 30)] * 2], "fine") for n in range(30)
    ]
    steps, _ = asyncio.run(converse("summarize", turns))
    ledger = Ledger.from_dict(steps.state)
    assert ledger.summary is not None and ledger.folded_upto > 0
    assert ("summarize", "summarize") in steps.steps
    assert ledger.summary.sources == ((1, ledger.folded_upto),)
    assert summarize.SUMMARY_INSTRUCTIONS
