"""One place where a running task's events are made, observed and queued for storage.

Observers (metrics, logs, traces) hear each event at once. The stored log receives
events with the next step commit (one transaction, in order) or with the next lease
renewal, so recording events costs no extra write per step.
"""

from __future__ import annotations

import dataclasses
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
        if name in events.EPHEMERAL:
            return
        stored = event.stored()
        last = self._pending[-1] if self._pending else None
        if (
            name == events.MODEL_DELTA
            and last is not None
            and last.name == name
            and last.step == step
            and last.data.get("attempt") == stored.data.get("attempt")
        ):
            # Streamed text waiting for the next write is stored as one event, not one
            # a token; observers have heard every piece already.
            stored = dataclasses.replace(
                last, data={**last.data, "text": last.data["text"] + stored.data["text"]}
            )
            self._pending[-1] = stored
            return
        self._pending.append(stored)

    def take(self) -> tuple[types.NewEvent, ...]:
        """Hand the queued events to a write; they are the caller's to store now."""
        out, self._pending = tuple(self._pending), []
        return out

    def give_back(self, taken: tuple[types.NewEvent, ...]) -> None:
        """A write that failed returns its events so the next one stores them, in order."""
        self._pending[:0] = taken
