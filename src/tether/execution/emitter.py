"""One place where a running task's events are made, observed and queued for storage.

Observers (metrics, logs, traces) hear each event at once. The stored log receives
events with the next step commit (one transaction, in order) or with the next lease
renewal, so recording events costs no extra write per step.
"""

from __future__ import annotations

from typing import Any

from tether import types
from tether.observe import events


class Emitter:
    def __init__(self, task: types.TaskRecord, observers: events.Observer, worker: str) -> None:
        self.task = task
        self.worker = worker
        self._observers = observers
        self._pending: list[types.NewEvent] = []

    def emit(
        self,
        name: str,
        *,
        step: int | None = None,
        kind: str | None = None,
        step_name: str | None = None,
        attempt: int | None = None,
        **data: Any,
    ) -> None:
        event = events.TaskEvent(
            name=name,
            tenant=self.task.tenant,
            session_id=self.task.session_id,
            task_id=self.task.id,
            agent=self.task.agent,
            step=step,
            step_kind=kind,
            step_name=step_name,
            attempt=attempt,
            worker=self.worker,
            data=data,
        )
        self._observers.on_event(event)
        if name not in events.EPHEMERAL:
            self._pending.append(event.stored())

    def take(self) -> tuple[types.NewEvent, ...]:
        """Hand the queued events to a write; they are the caller's to store now."""
        out, self._pending = tuple(self._pending), []
        return out

    def give_back(self, taken: tuple[types.NewEvent, ...]) -> None:
        """A write that failed returns its events so the next one stores them, in order."""
        self._pending[:0] = taken
