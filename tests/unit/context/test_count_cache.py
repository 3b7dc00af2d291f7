from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tether import types
from tether.context.count_cache import CachedCounter
from tether.context.counting import EstimateCounter, TokenizerCounter

TINY = Path(__file__).parents[2] / "fixtures" / "tokenizer" / "tiny-bpe.json"
TOOLS = (types.ToolSpec(name="note", description="Write a note.", parameters={"type": "object"}),)


def msg(i: int, role: str = "user") -> types.Message:
    return types.Message(role=role, content=f"message number {i} " * (i % 7 + 1))


class CountingTexts:
    """Counts how many texts the wrapped counter is asked to count."""

    def __init__(self, counter: EstimateCounter) -> None:
        self.calls = 0
        inner = counter.text_tokens

        def text_tokens(text: str) -> int:
            self.calls += 1
            return inner(text)

        counter.text_tokens = text_tokens  # type: ignore[method-assign]


# A pool of message objects; a request is a list of indexes into it, so that requests
# share objects the way an agent's successive requests do.
pool = [msg(i, ("user", "assistant", "tool")[i % 3]) for i in range(30)]
requests = st.lists(st.lists(st.integers(0, 29), max_size=30), max_size=12)


@settings(max_examples=200, deadline=None)
@given(requests, st.floats(0, 1))
def test_cached_count_equals_the_counters_count(reqs: list[list[int]], margin: float) -> None:
    plain = EstimateCounter(margin)
    cached = CachedCounter(EstimateCounter(margin))
    grown: list[types.Message] = []
    for idx in reqs:
        request = [pool[i] for i in idx]
        assert cached.count(request, TOOLS) == plain.count(request, TOOLS)
        assert cached.count(request) == plain.count(request)
        grown.extend(request)  # an agent's history: each request extends the last
        assert cached.count(grown, TOOLS) == plain.count(grown, TOOLS)


def test_an_extended_request_counts_only_its_new_messages() -> None:
    counter = EstimateCounter()
    texts = CountingTexts(counter)
    cached = CachedCounter(counter)
    assert cached.incremental
    history = [msg(i) for i in range(100)]
    first = cached.count(history, TOOLS)
    asked = texts.calls
    assert asked >= 200  # content and name of each message, the tool's texts
    history += [msg(100), msg(101)]
    assert cached.count(history, TOOLS) == EstimateCounter().count(history, TOOLS) > first
    assert texts.calls - asked == 4  # two new messages: content and name each
    # the same request again, a prefix of it, one message alone: nothing new to count
    asked = texts.calls
    cached.count(tuple(history), TOOLS)
    cached.count(history[:10], TOOLS)
    cached.count([history[50]], TOOLS)
    assert texts.calls == asked
    # a request that replaces its head (a new summary) recounts only the new head
    summary = types.Message(role="system", content="summary of what came before")
    assert cached.count([summary, *history[1:]], TOOLS) == EstimateCounter().count(
        [summary, *history[1:]], TOOLS
    )
    assert texts.calls - asked == 2


def test_equal_but_distinct_messages_are_counted_by_content() -> None:
    cached = CachedCounter(EstimateCounter())
    for n in range(50):  # transient objects: an id may be reused once one is freed
        m = types.Message(role="user", content="x" * n)
        assert cached.count([m]) == EstimateCounter().count([m])


def test_tokenizer_counter_is_counted_incrementally_and_exactly() -> None:
    plain = TokenizerCounter(TINY)
    cached = CachedCounter(plain)
    assert cached.incremental and cached.name == plain.name
    history: list[types.Message] = []
    for i in range(20):
        history.append(msg(i))
        assert cached.count(history, TOOLS) == plain.count(history, TOOLS)


class OwnCounter:
    """A user's counter: not a sum over messages as far as tether knows."""

    name = "own"

    def __init__(self) -> None:
        self.calls = 0

    def count(self, messages: Sequence[types.Message], tools: Sequence[types.ToolSpec] = ()) -> int:
        self.calls += 1
        return 7 * len(messages) + len(tools)


def test_any_other_counter_is_asked_every_time() -> None:
    own = OwnCounter()
    cached = CachedCounter(own)
    assert not cached.incremental
    history = [msg(i) for i in range(5)]
    assert cached.count(history, TOOLS) == 36
    assert cached.count(history, TOOLS) == 36
    assert own.calls == 2


class MarginCounter(EstimateCounter):
    """A subclass may change how it counts: it is asked every time."""

    def count(self, messages: Sequence[types.Message], tools: Sequence[types.ToolSpec] = ()) -> int:
        return super().count(messages, tools) + 1000


def test_a_subclass_of_a_shipped_counter_is_asked_every_time() -> None:
    cached = CachedCounter(MarginCounter())
    assert not cached.incremental
    assert cached.count([msg(1)]) == EstimateCounter().count([msg(1)]) + 1000
