"""Is a lease's holder still at work? Asked before a worker takes a lease back.

A restarted worker takes its earlier incarnation's leases back at once, without
waiting for them to expire. That is safe only when the earlier incarnation has really
stopped: two live workers once shared an id, and the second took the first's in-flight
tasks, so four tool steps ran in both at once. So the answer comes from facts:

- each incarnation names its host and process (``"{uuid}-{host}-{pid}"``): one of this
  host whose process has ended is gone; one of this process is gone unless a worker
  here still runs the task;
- otherwise (another host, an id from an older tether) the lease is watched: a holder
  that renews within a renewal period and a half is alive; one that does not is gone.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
import uuid
from typing import Any

from tether import errors, types
from tether.execution.settings import ExecutionSettings
from tether.store.base import Store

HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]

running_here: dict[str, asyncio.Future[Any]] = {}
"""The run of each task some worker of this process is running now: a task claimed
again here while its earlier run has not ended starts only after that run."""


def new_incarnation() -> str:
    """A fresh incarnation of a worker in this process: ``"{uuid8}-{host}-{pid}"``."""
    return f"{uuid.uuid4().hex[:8]}-{HOST_TAG}-{os.getpid()}"


def _where(lease_owner: str) -> tuple[str, int] | None:
    """``(host tag, pid)`` of the incarnation in a lease owner ``"{id}/{incarnation}.{n}"``."""
    incarnation = lease_owner.rpartition("/")[2].partition(".")[0]
    parts = incarnation.split("-")
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def known_verdict(lease_owner: str, task_id: str) -> bool | None:
    """True: the holder has certainly stopped; False: it certainly still runs the task;
    None: this process cannot tell (another host, an older owner format)."""
    where = _where(lease_owner)
    if where is None or where[0] != HOST_TAG:
        return None
    pid = where[1]
    if pid == os.getpid():
        run = running_here.get(task_id)
        return run is None or run.done() or run.get_loop().is_closed()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a live process of another user
        return False
    return False


async def holder_stopped(store: Store, task: types.TaskRecord, settings: ExecutionSettings) -> bool:
    """Whether ``task``'s lease holder has stopped renewing (see the module docstring)."""
    lease_owner = task.lease_owner
    if lease_owner is None or task.status != "running":
        return False
    known = known_verdict(lease_owner, task.id)
    if known is not None:
        return known
    seen = task.lease_expires_at
    deadline = time.monotonic() + settings.renew_every * 1.5 + settings.poll_interval
    while True:
        if seen is None or seen <= types.now():
            return True
        if time.monotonic() >= deadline:
            return True
        await asyncio.sleep(min(settings.poll_interval, max(0.0, seen - types.now())) or 0.01)
        try:
            fresh = await store.get_task(task.id)
        except errors.StoreUnavailable:
            return False
        if fresh.status != "running" or fresh.lease_owner != lease_owner:
            return False  # it ended, or someone else has it now
        if fresh.lease_expires_at != seen:
            return False  # renewed: its holder is alive
