"""Where a saver's store lives: an event loop of its own, or the running task's loop.

A store's connections belong to one event loop (psycopg's pool, SQLite's connection
thread). A ``TetherSaver(url)`` opens its store on a private loop thread, so its
synchronous methods work from any thread and its async ones from any loop; a saver
made for a running task uses the worker's store on the worker's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from tether import errors

T = TypeVar("T")


class Portal:
    """One event loop; coroutines are sent to it, and awaited or waited for."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._thread: threading.Thread | None = None
        if loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=loop.run_forever, name="tether-langgraph", daemon=True
            )
            self._thread.start()
        self.loop = loop

    def _here(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal's loop and wait for it (from any other thread)."""
        if self._here():
            coro.close()
            raise errors.InvalidInput(
                "a TetherSaver's synchronous methods cannot run on the event loop its store "
                "lives on (they would wait on themselves); use the async ones: "
                "graph.ainvoke / graph.astream"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._here():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        """Stop the private loop (a borrowed loop is its owner's to stop)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()
