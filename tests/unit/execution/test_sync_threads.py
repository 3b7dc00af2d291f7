"""The sync tool pool: real threads, bounded, counting the calls it had to give up."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable

import pytest

from tether.execution.threads import SyncThreads

_seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


async def _until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_a_given_up_call_is_abandoned_until_it_returns_and_exhausts_the_pool() -> None:
    release, entered = threading.Event(), threading.Event()

    def blocked() -> str:
        entered.set()
        release.wait(30)
        return "late"

    async def main() -> None:
        pool = SyncThreads(1)
        job = asyncio.ensure_future(pool.run(blocked))
        await _until(entered.is_set, "the call to start")
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert (pool.abandoned, pool.busy, pool.exhausted) == (1, 1, True)
        release.set()
        await _until(lambda: pool.abandoned == 0, "the thread to come back")
        assert not pool.exhausted
        # the same thread serves the next call; results and errors come back
        assert await pool.run(lambda: 42) == 42
        with pytest.raises(ZeroDivisionError):
            await pool.run(lambda: 1 / 0)

    try:
        asyncio.run(main())
    finally:
        release.set()


def test_a_call_given_up_before_it_started_never_runs() -> None:
    release, entered = threading.Event(), threading.Event()
    ran: list[str] = []

    def first() -> None:
        entered.set()
        release.wait(30)

    async def main() -> None:
        pool = SyncThreads(1)
        head = asyncio.ensure_future(pool.run(first))
        await _until(entered.is_set, "the first call to start")
        queued = asyncio.ensure_future(pool.run(lambda: ran.append("second")))
        await asyncio.sleep(0)
        queued.cancel()
        await asyncio.gather(queued, return_exceptions=True)
        release.set()
        await head
        assert await pool.run(lambda: "third") == "third"
        assert pool.abandoned == 0

    try:
        asyncio.run(main())
    finally:
        release.set()
    assert ran == []


def test_calls_see_the_callers_context_and_run_on_daemon_threads_up_to_the_bound() -> None:
    names: set[str] = set()
    gate = threading.Barrier(3, timeout=10)

    def work() -> str:
        names.add(threading.current_thread().name)
        assert threading.current_thread().daemon
        return _seen.get()

    async def main() -> None:
        pool = SyncThreads(2, name="bounded")
        _seen.set("mine")
        assert await pool.run(work) == "mine"

        def meet() -> None:
            names.add(threading.current_thread().name)
            gate.wait()

        # two calls meet in two threads; a third waits for a free one (the bound)
        both = [asyncio.ensure_future(pool.run(meet)) for _ in range(2)]
        third = asyncio.ensure_future(pool.run(work))
        await asyncio.to_thread(gate.wait)
        await asyncio.gather(*both)
        assert await third == "mine"

    asyncio.run(main())
    assert names == {"bounded-1", "bounded-2"}


def test_idle_threads_end_and_the_pool_starts_new_ones() -> None:
    async def main() -> None:
        pool = SyncThreads(2, name="idle", idle_exit=0.05)

        def name() -> str:
            return threading.current_thread().name

        assert await pool.run(name) == "idle-1"
        await _until(lambda: pool.threads == 0, "the idle thread to end")
        assert not [t for t in threading.enumerate() if t.name.startswith("idle-")]
        assert await pool.run(name) == "idle-2"  # a fresh thread

    asyncio.run(main())
