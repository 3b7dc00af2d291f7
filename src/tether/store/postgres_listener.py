"""Wake-ups for idle workers: ``LISTEN`` on one dedicated connection, ``NOTIFY`` on writes.

Every write that can make a task claimable (submit, release, finish, cancel of a
queued task, expire) sends ``NOTIFY tether_work`` in its transaction; the listener
hears it when that transaction commits, on every machine, within milliseconds. The
listening connection is opened on the first wait and kept by a background task that
reconnects with backoff when the server goes away; while it is down, a wait simply
lasts its timeout, so workers fall back to polling and never fail for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg

from tether import errors
from tether.store import migrations
from tether.store import postgres_connection as connection

_log = logging.getLogger("tether.store.postgres")

_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0


class Listener:
    def __init__(self, conninfo: str, url: str) -> None:
        self._conninfo = conninfo
        self._url = url
        self._heard = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.listening = asyncio.Event()
        """Set while the ``LISTEN`` connection is up (tests wait on it)."""

    async def wait(self, timeout: float) -> bool:
        """True when a notice came since the last wait or within ``timeout`` seconds."""
        self._ensure_started()
        if not self._heard.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heard.wait(), timeout)
        heard = self._heard.is_set()
        self._heard.clear()
        return heard

    def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._loop is loop:
            return
        self._heard = asyncio.Event()
        self.listening = asyncio.Event()
        self._loop = loop
        self._task = loop.create_task(self._listen_forever(), name="tether-pg-listener")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None or task.done():
            return
        if self._loop is not asyncio.get_running_loop():  # its loop has gone: nothing to await
            task.cancel()
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _listen_forever(self) -> None:
        delay = _BACKOFF_FIRST
        while True:
            try:
                await self._listen_once()
            except psycopg.Error as exc:
                self.listening.clear()
                err = errors.StoreUnavailable(
                    f"PostgreSQL store {migrations.redact(self._url)}: the LISTEN connection "
                    f"was lost ({type(exc).__name__}: {str(exc).strip() or 'closed'}); "
                    f"reconnecting in {delay:.1f}s, idle workers poll meanwhile"
                )
                _log.warning("store.listen_lost", extra={"error": err.to_dict()})
                self._heard.set()  # wake waiters: work may have arrived while deaf
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
            else:
                delay = _BACKOFF_FIRST

    async def _listen_once(self) -> None:
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        try:
            await conn.execute(f"LISTEN {connection.WORK_CHANNEL}")
            self.listening.set()
            async for _ in conn.notifies():
                self._heard.set()
        finally:
            self.listening.clear()
            with contextlib.suppress(psycopg.Error):
                await conn.close()
