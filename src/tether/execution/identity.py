"""Stable worker ids: the host plus the first free slot on it.

A worker restarted on the same host gets the same id back, so it takes its own
leases back at once instead of waiting for them to expire. Slots are held with an
advisory file lock that the kernel drops when the process dies, even by SIGKILL.

Slots are counted per store, keyed on the store's canonical identity
(``Store.identity()``), never on its URL's spelling: ``sqlite:///r.db`` and
``sqlite:///./r.db`` once gave two live workers the same id, and the second took the
first's in-flight tasks.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import tempfile
from collections.abc import Iterator

from tether import errors, redact
from tether.store import open_store


@contextlib.contextmanager
def worker_identity(explicit: str | None, store_key: str, *, max_slots: int = 256) -> Iterator[str]:
    """Yield ``explicit`` if given, else ``host:worker-N`` for the first free slot N.

    ``store_key`` is the store's ``identity()`` (``store_key(url)`` gets it). Slots are
    counted per store and held until the block exits (or the process dies), so workers
    started one after another on a host reuse the same ids."""
    if explicit:
        yield explicit
        return
    host = socket.gethostname()
    tag = hashlib.sha1(store_key.encode()).hexdigest()[:10]
    folder = os.path.join(tempfile.gettempdir(), "tether-slots")
    os.makedirs(folder, exist_ok=True)
    for slot in range(max_slots):
        path = os.path.join(folder, f"{tag}-{slot}.lock")
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield f"{host}:worker-{slot}"
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return
    raise errors.InfraError(
        f"all {max_slots} worker slots on {host} are taken for store "
        f"{redact.url(store_key)} (lock files in {folder}); stop some workers, "
        "or give this one an id with --worker-id"
    )


async def store_key(url: str) -> str:
    """The canonical identity of the store at ``url`` (opening, and migrating, it)."""
    store = open_store(url)
    await store.open()
    try:
        return await store.identity()
    finally:
        await store.close()
