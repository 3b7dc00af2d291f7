"""The worker's own threads for sync tools: bounded, counted, never waited for at exit.

A sync tool runs in a thread so the event loop keeps going. A thread cannot be
killed: when its step is timed out, handed over or released, the call goes on until
the function returns (if ever). Such a thread is *abandoned*: counted until it comes
back. asyncio's default executor would let these pile up unseen until every sync tool
of the worker waits for a thread, and Python would wait for them at exit; this pool
is bounded (``ExecutionSettings.sync_tool_threads``), reports its abandoned threads,
says when it is *exhausted* (every thread abandoned: no sync tool can start until a
restart), and its threads are daemons, so a worker can always exit. A thread idle for
``idle_exit`` seconds ends, so pools of short-lived workers (``Runtime.run``) leave none.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Job:
    call: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    state: str = "queued"
    """queued, running, skipped (cancelled before it ran), abandoned, done."""
    result: Any = None
    error: BaseException | None = field(default=None)


class SyncThreads:
    """A bounded pool of daemon threads for sync tools, with an abandoned-thread count."""

    def __init__(self, size: int, *, name: str = "tether-tool", idle_exit: float = 5.0) -> None:
        if size < 1:
            raise ValueError("a sync tool pool needs at least one thread")
        self.size = size
        self._name = name
        self._idle_exit = idle_exit
        self._started = 0
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._threads = 0
        self._idle = 0
        self._waiting = 0
        self._running = 0
        self._abandoned = 0

    @property
    def abandoned(self) -> int:
        """Threads still running a call whose step was given up (timed out, released)."""
        return self._abandoned

    @property
    def busy(self) -> int:
        """Threads running a call, abandoned or not."""
        return self._running

    @property
    def exhausted(self) -> bool:
        """Every thread is abandoned: no sync tool can start here until one comes back."""
        return self._abandoned >= self.size

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in a pool thread (with this task's context variables) and await it.
        Cancelling the await abandons the call if it has started, skips it if not."""
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        job = _Job(functools.partial(ctx.run, fn, *args, **kwargs), loop, loop.create_future())
        with self._lock:
            self._waiting += 1
            start = self._waiting > self._idle and self._threads < self.size
            if start:
                self._threads += 1
                self._started += 1
                name = f"{self._name}-{self._started}"
        if start:
            threading.Thread(target=self._serve, name=name, daemon=True).start()
        self._jobs.put(job)
        try:
            value: T = await job.future
            return value
        except asyncio.CancelledError:
            with self._lock:
                if job.state == "queued":
                    job.state = "skipped"
                elif job.state == "running":
                    job.state = "abandoned"
                    self._abandoned += 1
            raise

    @property
    def threads(self) -> int:
        """Threads alive now (idle ones end after ``idle_exit`` seconds)."""
        return self._threads

    def _serve(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=self._idle_exit)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if self._waiting > self._idle:
                        continue  # a call was queued counting on this thread
                    self._threads -= 1
                    return
            with self._lock:
                self._idle -= 1
                self._waiting -= 1
                if job.state == "skipped":
                    continue
                job.state = "running"
                self._running += 1
            try:
                job.result = job.call()
            except BaseException as exc:  # handed to the awaiting task, not raised here
                job.error = exc
            with self._lock:
                self._running -= 1
                if job.state == "abandoned":
                    self._abandoned -= 1
                    continue
                job.state = "done"
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                job.loop.call_soon_threadsafe(_settle, job)


def _settle(job: _Job) -> None:
    if job.future.done():
        return
    if job.error is not None:
        job.future.set_exception(job.error)
    else:
        job.future.set_result(job.result)
