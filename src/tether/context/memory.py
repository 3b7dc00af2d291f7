"""The ``memory`` strategy's pieces: what is stored for a message, and what is recalled.

The oldest messages move, one item per message, into the session's vector memory
(the store's ``memory`` table), and each step the messages most similar to the
conversation's newest turn are recalled into a pinned message. ``MemoryAccess`` is
how the agent hands this package the store's memory (this package does not import
the store).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tether.context.summarize import render
from tether.context.window import Entry

QUERY_MESSAGES = 2
"""The newest live messages whose text makes the recall query."""


@dataclass(frozen=True, slots=True)
class Memory:
    """One message as stored in vector memory."""

    seq: int
    role: str
    text: str
    vector: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Recalled:
    seq: int
    role: str
    text: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "role": self.role, "text": self.text, "score": self.score}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Recalled:
        seq, role, text = int(data["seq"]), str(data["role"]), str(data["text"])
        return Recalled(seq, role, text, float(data["score"]))


class MemoryAccess(Protocol):
    """A session's vector memory, as the agent provides it (fenced by its lease)."""

    async def add(self, items: Sequence[Memory]) -> None:
        """Store the items; adding a seq already stored replaces it (re-runs are safe)."""
        ...

    async def search(self, vector: Sequence[float], k: int) -> list[tuple[Memory, float]]:
        """The ``k`` most similar items, best first, with their cosine similarity."""
        ...


def memory_text(entry: Entry) -> str:
    """What is stored (and later recalled) for one message: its transcript line."""
    return render(entry).split(": ", 1)[1]


def query_text(live: Sequence[Entry]) -> str:
    """The recall query: the newest messages' text."""
    return "\n".join(memory_text(e) for e in live[-QUERY_MESSAGES:])
