"""``CachedCounter``: one task's token counts, each message counted once.

An agent counts its whole request before every model turn, and the request grows by
a message or two a turn: counting it from scratch makes a turn O(history). The
shipped counters (``EstimateCounter``, ``TokenizerCounter``) count a request as a sum
over its messages (``counting.structured_count``), scaled at the end, so their count
can be kept incrementally:

- each message's share is counted once and remembered (by the message object: the
  cache holds it, so its identity cannot be reused while remembered);
- the running sums of the last long request are kept, so a request that starts with
  the very same message objects (the agent's next request) costs only its new
  messages, plus a C-speed identity check of the prefix.

The result is exactly the wrapped counter's ``count``. Any other counter (a user's
own ``TokenCounter``) is asked every time, as before. A ``CachedCounter`` belongs to
one task run (its ``ContextPlanner``) and dies with it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

from tether import types
from tether.context import counting

_STRUCTURED = (counting.EstimateCounter, counting.TokenizerCounter)
"""Counters whose ``count`` is ``scale(structured_count(text_tokens, …))``; a subclass
may override any part of that, so only these exact types are counted incrementally."""


class CachedCounter:
    def __init__(self, counter: counting.TokenCounter) -> None:
        self.counter = counter
        self.name = counter.name
        self._text_tokens: Callable[[str], int] | None = None
        self._scale: Callable[[int], int] | None = None
        if type(counter) in _STRUCTURED:
            self._text_tokens = counter.text_tokens  # type: ignore[attr-defined]
            self._scale = counter.scale  # type: ignore[attr-defined]
        self._units: dict[int, tuple[types.Message, int]] = {}
        """id(message) → (the message, its share): the message is held, so its id stays its own."""
        self._tools: tuple[Sequence[types.ToolSpec], int] | None = None
        self._seq: list[types.Message] = []
        """The last request counted that was at least as long as the one before."""
        self._sums: list[int] = [0]
        """``_sums[i]`` is the share of ``_seq[:i]``."""

    def __repr__(self) -> str:
        return f"CachedCounter({self.counter!r})"

    @property
    def incremental(self) -> bool:
        """Whether counts are kept incrementally (a shipped counter) or asked each time."""
        return self._scale is not None

    def count(self, messages: Sequence[types.Message], tools: Sequence[types.ToolSpec] = ()) -> int:
        if self._scale is None:
            return self.counter.count(messages, tools)
        total = counting.REPLY_OVERHEAD + self._tools_units(tools) + self._messages_units(messages)
        return self._scale(total)

    def message_units(self, message: types.Message) -> int:
        """One message's share of a count (before scaling), counted once."""
        assert self._text_tokens is not None
        key = id(message)
        hit = self._units.get(key)
        if hit is not None and hit[0] is message:
            return hit[1]
        units = counting.message_units(self._text_tokens, message)
        self._units[key] = (message, units)
        return units

    def _tools_units(self, tools: Sequence[types.ToolSpec]) -> int:
        assert self._text_tokens is not None
        known = self._tools
        if known is not None and (
            known[0] is tools
            or (len(known[0]) == len(tools) and all(map(operator.is_, known[0], tools)))
        ):
            return known[1]
        units = counting.tools_units(self._text_tokens, tools)
        self._tools = (tools, units)
        return units

    def _messages_units(self, messages: Sequence[types.Message]) -> int:
        seq, sums = self._seq, self._sums
        n, known = len(messages), len(seq)
        shared = min(n, known)
        if not all(map(operator.is_, messages, seq)):  # compares the first ``shared``
            shared = next(i for i in range(shared) if messages[i] is not seq[i])
        if shared == n:
            return sums[n]
        running = sums[shared]
        grown: list[int] = []
        for message in messages[shared:]:
            running += self.message_units(message)
            grown.append(running)
        if n >= known:  # the new longest request: later ones will extend it
            self._seq = list(messages)
            del sums[shared + 1 :]
            sums.extend(grown)
        return running
