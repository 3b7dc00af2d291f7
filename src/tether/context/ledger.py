"""The session's context ledger: where every message is, kept in the session state.

Compaction always takes the oldest messages, so the session splits at one seq:
every message with ``seq <= folded_upto`` is out of the request, either in the
summary's recorded sources or in vector memory (``placement`` says which, from the
recorded seq ranges); every later message is in the request. The ledger also keeps
the summary, the counter's calibration, the last request's numbers, the pressure
flag and the recent compaction history.

The ledger is stored with the steps that change it. A resumed task replays from its
first step, so the ledger also keeps the state the running task started from
(``task``), and a replay starts from that, never from a later state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from tether.context.counting import Calibration

VERSION = 1
HISTORY = 20
"""Compactions kept in the ledger (all of them are in the journal and the events)."""

Placement = Literal["request", "summary", "memory"]


@dataclass(frozen=True, slots=True)
class Summary:
    text: str
    sources: tuple[tuple[int, int], ...]
    """Seq ranges (inclusive) of the messages folded into the text."""
    generation: int = 1
    """How many summarize steps wrote it (folds and re-summaries)."""

    @property
    def messages(self) -> int:
        return sum(b - a + 1 for a, b in self.sources)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "sources": [list(r) for r in self.sources],
            "generation": self.generation,
            "messages": self.messages,
        }

    @staticmethod
    def from_dict(data: dict[str, Any] | None) -> Summary | None:
        if not data:
            return None
        return Summary(
            text=str(data["text"]),
            sources=tuple((int(a), int(b)) for a, b in data.get("sources", ())),
            generation=int(data.get("generation", 1)),
        )


def add_range(ranges: tuple[tuple[int, int], ...], lo: int, hi: int) -> tuple[tuple[int, int], ...]:
    """Append ``[lo, hi]``, merging with the last range when they touch."""
    if ranges and ranges[-1][1] + 1 >= lo:
        return (*ranges[:-1], (ranges[-1][0], max(ranges[-1][1], hi)))
    return (*ranges, (lo, hi))


def _within(ranges: tuple[tuple[int, int], ...], seq: int) -> bool:
    return any(a <= seq <= b for a, b in ranges)


@dataclass(frozen=True, slots=True)
class Ledger:
    folded_upto: int = 0
    summary: Summary | None = None
    memory: tuple[tuple[int, int], ...] = ()
    """Seq ranges moved into vector memory."""
    calibration: Calibration = field(default_factory=Calibration)
    pressure: bool = False
    last: dict[str, Any] = field(default_factory=dict)
    compactions: tuple[dict[str, Any], ...] = ()
    compactions_total: int = 0
    task: dict[str, Any] | None = None

    # ---- where messages are ----------------------------------------------------

    def placement(self, seq: int) -> Placement:
        if seq > self.folded_upto:
            return "request"
        if self.summary is not None and _within(self.summary.sources, seq):
            return "summary"
        if _within(self.memory, seq):
            return "memory"
        raise AssertionError(f"message {seq} is folded but recorded nowhere")  # pragma: no cover

    @property
    def memory_messages(self) -> int:
        return sum(b - a + 1 for a, b in self.memory)

    # ---- changes ----------------------------------------------------------------

    def folded_into_summary(self, text: str, lo: int, hi: int) -> Ledger:
        prior = self.summary
        sources = add_range(prior.sources if prior else (), lo, hi)
        generation = (prior.generation if prior else 0) + 1
        return replace(
            self, folded_upto=max(self.folded_upto, hi), summary=Summary(text, sources, generation)
        )

    def resummarized(self, text: str) -> Ledger:
        assert self.summary is not None
        return replace(
            self,
            summary=Summary(text, self.summary.sources, self.summary.generation + 1),
        )

    def moved_to_memory(self, lo: int, hi: int) -> Ledger:
        memory = add_range(self.memory, lo, hi)
        return replace(self, folded_upto=max(self.folded_upto, hi), memory=memory)

    def compacted(self, record: dict[str, Any]) -> Ledger:
        history = (*self.compactions, record)[-HISTORY:]
        return replace(self, compactions=history, compactions_total=self.compactions_total + 1)

    # ---- the task's starting point ---------------------------------------------

    def for_task(self, task_id: str) -> Ledger:
        """The ledger a task starts from: for a task that already wrote the ledger
        (a resumed run), the state recorded before its first write."""
        if self.task and self.task.get("id") == task_id and "start" in self.task:
            return Ledger.from_dict(self.task["start"])
        return replace(self, task=None)

    def stamped(self, task_id: str, start: Ledger | dict[str, Any]) -> Ledger:
        """This ledger as written by ``task_id``, which started from ``start`` (or from
        ``start.start_record()``, which a task run makes once for its many writes)."""
        record = start.start_record() if isinstance(start, Ledger) else start
        return replace(self, task={"id": task_id, "start": record})

    def start_record(self) -> dict[str, Any]:
        """This ledger as a task's starting point is recorded (``stamped``)."""
        return replace(self, task=None).to_dict()

    # ---- JSON ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": VERSION,
            "folded_upto": self.folded_upto,
            "summary": self.summary.to_dict() if self.summary else None,
            "memory": {"sources": [list(r) for r in self.memory], "messages": self.memory_messages},
            "calibration": self.calibration.to_dict(),
            "pressure": self.pressure,
            "last": dict(self.last),
            "compactions": list(self.compactions),
            "compactions_total": self.compactions_total,
        }
        if self.task is not None:
            out["task"] = self.task
        return out

    @staticmethod
    def from_dict(data: dict[str, Any] | None) -> Ledger:
        if not data:
            return Ledger()
        memory = data.get("memory") or {}
        return Ledger(
            folded_upto=int(data.get("folded_upto", 0)),
            summary=Summary.from_dict(data.get("summary")),
            memory=tuple((int(a), int(b)) for a, b in memory.get("sources", ())),
            calibration=Calibration.from_dict(data.get("calibration")),
            pressure=bool(data.get("pressure", False)),
            last=dict(data.get("last") or {}),
            compactions=tuple(data.get("compactions") or ()),
            compactions_total=int(data.get("compactions_total", 0)),
            task=data.get("task"),
        )
