"""Where a Pydantic AI agent's sync tools run under tether: one daemon thread per call.

Pydantic AI runs a sync tool in a worker thread and, by default, waits for that thread
even when the step is cancelled. A draining worker that hands a step over (or loses
its lease) must stop waiting at once, and exit within its grace period whatever the
tool does; the tool's late result is fenced off. So the calls run here: an awaiting
step can be cancelled, and a daemon thread never holds the process open at exit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class DaemonThreads(Executor):
    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=run, name="tether-pydantic-ai-sync", daemon=True).start()
        return future


THREADS = DaemonThreads()
