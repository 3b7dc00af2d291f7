"""Task events: one shape for everything that happens to a task, fanned out to observers.

The execution layer builds a ``TaskEvent`` for every step started/completed/retrying/
failed, recovery, lease loss, context pressure/compaction, truncation and task end;
it persists it with the task (the store's event log) and hands it to every
``Observer`` (metrics, logs, traces). Observers must not raise or block.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from tether import types

# The stable event names (contract for `tether tasks events` and the SSE stream).
TASK_SUBMITTED = "task.submitted"
TASK_STARTED = "task.started"
TASK_RECOVERED = "task.recovered"
TASK_COMPLETED = "task.completed"
TASK_FAILED = "task.failed"
TASK_CANCELLED = "task.cancelled"
TASK_RELEASED = "task.released"
STEP_STARTED = "step.started"
STEP_COMPLETED = "step.completed"
STEP_REPLAYED = "step.replayed"
STEP_RETRYING = "step.retrying"
STEP_FAILED = "step.failed"
STEP_STUCK = "step.stuck"
LEASE_LOST = "lease.lost"
CONTEXT_PRESSURE = "context.pressure"
CONTEXT_COMPACTED = "context.compacted"
OUTPUT_TRUNCATED = "output.truncated"
PROMPT_TRUNCATED = "prompt.truncated"
"""The server counted far fewer prompt tokens than tether (``counted``, ``reported``)."""
MODEL_DELTA = "model.delta"
"""A piece of a model step's answer text as it streams (``text``, ``attempt``)."""
TASK_WAITING = "task.waiting"
TASK_WOKE = "task.woke"
SIGNAL_RECEIVED = "signal.received"
TOOL_APPROVAL_REQUESTED = "tool.approval_requested"
CHECKPOINT_REFUSED = "checkpoint.refused"
"""A LangGraph checkpoint write of a worker whose lease was taken over (fenced)."""

# Events that are only observed, not written to the task's stored log: replays happen
# on every resume and would grow the log with each recovery.
EPHEMERAL = frozenset({STEP_REPLAYED})


@dataclass(frozen=True, slots=True)
class TaskEvent:
    name: str
    tenant: str
    session_id: str
    task_id: str
    agent: str
    step: int | None = None
    step_kind: str | None = None
    step_name: str | None = None
    attempt: int | None = None
    worker: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=types.now)

    def stored(self) -> types.NewEvent:
        data = dict(self.data)
        if self.step_kind is not None:
            data.setdefault("kind", self.step_kind)
        if self.step_name is not None:
            data.setdefault("name", self.step_name)
        if self.attempt is not None:
            data.setdefault("attempt", self.attempt)
        if self.worker is not None:
            data.setdefault("worker", self.worker)
        return types.NewEvent(name=self.name, data=data, step=self.step, at=self.at)


class Observer(Protocol):
    def on_event(self, event: TaskEvent) -> None: ...


_log = logging.getLogger("tether.observe")


class Observers:
    """Fan-out to many observers; one that raises is logged and skipped, never fatal."""

    def __init__(self, observers: list[Observer] | None = None) -> None:
        self._observers: list[Observer] = list(observers or [])

    def add(self, observer: Observer) -> None:
        self._observers.append(observer)

    def on_event(self, event: TaskEvent) -> None:
        for observer in self._observers:
            try:
                observer.on_event(event)
            except Exception:  # an observer must never break a task
                _log.exception(
                    "observer.failed",
                    extra={"observer": repr(observer), "event_name": event.name},
                )
