"""A task's events as Server-Sent Events: ``id:`` is the event's seq, so a client that
reconnects with ``Last-Event-ID`` resumes exactly after the last event it saw.

The stream reads the store's event log (the single source of truth, whichever worker
or instance wrote it), so it works the same behind a load balancer. It ends:

- when the task has ended and every event up to its end was sent: ``stream.end`` with
  the final status;
- when this server drains, or the stream reached its maximum age: ``stream.reconnect``,
  and the client resumes with ``Last-Event-ID`` (here or on another instance).

Neither closing event has an ``id:``, so ``Last-Event-ID`` stays the last real event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse

from tether import errors, types
from tether.observe import events
from tether.server.config import ServerConfig
from tether.server.lifecycle import Lifecycle
from tether.store.base import Store

END = "stream.end"
RECONNECT = "stream.reconnect"
BATCH = 500
RETRY_MS = 1000
_TERMINAL = frozenset({events.TASK_COMPLETED, events.TASK_FAILED, events.TASK_CANCELLED})


# One event on the wire, as OpenAPI 3.2 describes Server-Sent Events; ``data`` is the
# JSON text of the stored event (``{task_id, seq, event, at, step, data}``), or of the
# closing event (``{task_id, status}`` / ``{task_id, last_event_id}``).
EVENT_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes]) -> None:
        super().__init__(
            content,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


def frame(data: dict[str, Any], *, event: str, event_id: int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str))
    return ("\n".join(lines) + "\n\n").encode()


async def stream(
    store: Store,
    lifecycle: Lifecycle,
    config: ServerConfig,
    task_id: str,
    tenant: str,
    after_seq: int,
) -> AsyncIterator[bytes]:
    after = after_seq
    started = last_sent = time.monotonic()
    yield f"retry: {RETRY_MS}\n\n".encode()
    try:
        while True:
            batch = await store.list_events(task_id, tenant=tenant, after_seq=after, limit=BATCH)
            for ev in batch:
                yield frame(ev.to_public(), event=ev.name, event_id=ev.seq)
                after = ev.seq
            if batch:
                last_sent = time.monotonic()
            if len(batch) == BATCH:
                continue
            if batch and batch[-1].name in _TERMINAL:
                yield frame({"task_id": task_id, "status": batch[-1].name[5:]}, event=END)
                return
            if not batch:
                task = await store.get_task(task_id, tenant=tenant)
                if task.status in types.FINAL_STATUSES:
                    # its last events were written with its final status: read them now
                    rest = await store.list_events(task_id, tenant=tenant, after_seq=after)
                    for ev in rest:
                        yield frame(ev.to_public(), event=ev.name, event_id=ev.seq)
                    yield frame({"task_id": task_id, "status": task.status}, event=END)
                    return
            now = time.monotonic()
            if lifecycle.closing.is_set() or now - started >= config.sse_max_seconds:
                yield frame({"task_id": task_id, "last_event_id": after}, event=RECONNECT)
                return
            if now - last_sent >= config.sse_keepalive:
                yield b": keepalive\n\n"
                last_sent = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lifecycle.closing.wait(), config.sse_poll_interval)
    except errors.StoreUnavailable:
        yield frame({"task_id": task_id, "last_event_id": after}, event=RECONNECT)
