"""Group commit: steps of many tasks that finish together, and the ends of tasks
(``finish``), share one store transaction (``Store.commit_batch``).

A step or a task's end is never reported done before its commit: each caller awaits
its own result. While one batch is being written, new commits queue up and go in the
next batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from tether import errors, types
from tether.store.base import BatchResults, Finish, Store


class Committer:
    def __init__(
        self,
        store: Store,
        *,
        on_commit_seconds: Callable[[float], None] | None = None,
        retry_unavailable: int = 8,
    ) -> None:
        self._store = store
        self._pending: list[tuple[types.StepCommit, asyncio.Future[types.CommitResult]]] = []
        self._ends: list[tuple[Finish, asyncio.Future[types.TaskRecord]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._on_commit_seconds = on_commit_seconds
        self._retry_unavailable = retry_unavailable

    async def commit(self, commit: types.StepCommit) -> types.CommitResult:
        future: asyncio.Future[types.CommitResult] = self._loop_future()
        self._pending.append((commit, future))
        self._flush_soon()
        # Awaited bare, not shielded: a caller cancelled meanwhile cancels only its own
        # future (the batch skips a done future) and its step is written all the same.
        return await future

    async def finish(self, finish: Finish) -> types.TaskRecord:
        """End a task (``Store.finish_task``) in the next batch; ``LeaseLost`` when it
        was fenced off. Returns once the end is committed."""
        future: asyncio.Future[types.TaskRecord] = self._loop_future()
        self._ends.append((finish, future))
        self._flush_soon()
        return await future

    def _loop_future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    def _flush_soon(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending or self._ends:
            batch, self._pending = self._pending, []
            ends, self._ends = self._ends, []
            futures: list[asyncio.Future[Any]] = [f for _, f in batch]
            futures += [f for _, f in ends]
            try:
                steps, finished = await self._write([c for c, _ in batch], [e for e, _ in ends])
            except BaseException as exc:  # the whole batch failed: every caller hears why
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for future, result in zip(futures, [*steps, *finished], strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _write(self, commits: list[types.StepCommit], ends: list[Finish]) -> BatchResults:
        delay = 0.05
        for attempt in range(self._retry_unavailable + 1):
            started = time.perf_counter()
            try:
                results = await self._store.commit_batch(commits, ends)
            except errors.StoreUnavailable:
                if attempt == self._retry_unavailable:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if self._on_commit_seconds is not None:
                self._on_commit_seconds(time.perf_counter() - started)
            return results
        raise AssertionError("unreachable")  # pragma: no cover
