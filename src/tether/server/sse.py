"""A task's events as Server-Sent Events: ``id:`` is the event's seq, so a client that
reconnects with ``Last-Event-ID`` resumes exactly after the last event it saw.

The stream reads the store's event log (the single source of truth, whichever worker
or instance wrote it), so it works the same behind a load balancer. It ends:

- when the task has ended and every event up to its end was sent: ``stream.end`` with
  the final status;
- when this server drains, or the stream reached its maximum age: ``stream.reconnect``,
  and the client resumes with ``Last-Event-ID`` (here or on another instance);
- when its API key was revoked: ``stream.revoked``, at the next event or keep-alive.

Neither closing event has an ``id:``, so ``Last-Event-ID`` stays the last real event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from tether import errors, types
from tether.observe import events
from tether.server.config import ServerConfig
from tether.server.lifecycle import Lifecycle
from tether.store.base import Store

END = "stream.end"
RECONNECT = "stream.reconnect"
REVOKED = "stream.revoked"
AUTH_RECHECK_SECONDS = 1.0
"""A stream re-checks its API key before sending events at most this often, and at every
keep-alive: a revoked key's stream ends there."""
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

    def __init__(
        self, content: AsyncIterator[bytes], on_close: Callable[[], None] = lambda: None
    ) -> None:
        super().__init__(
            content,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream; ``on_close`` runs however the stream ends, even before it began."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


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
    authorized: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[bytes]:
    after = after_seq
    started = last_sent = checked = time.monotonic()
    yield f"retry: {RETRY_MS}\n\n".encode()

    async def revoked() -> bool:
        nonlocal checked
        checked = time.monotonic()
        return authorized is not None and not await authorized()

    try:
        while True:
            batch = await store.list_events(task_id, tenant=tenant, after_seq=after, limit=BATCH)
            if batch and time.monotonic() - checked >= AUTH_RECHECK_SECONDS and await revoked():
                yield frame(
                    {"task_id": task_id, "message": "the API key was revoked"}, event=REVOKED
                )
                return
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
                if await revoked():
                    yield frame(
                        {"task_id": task_id, "message": "the API key was revoked"}, event=REVOKED
                    )
                    return
                yield b": keepalive\n\n"
                last_sent = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lifecycle.closing.wait(), config.sse_poll_interval)
    except errors.StoreUnavailable:
        yield frame({"task_id": task_id, "last_event_id": after}, event=RECONNECT)
