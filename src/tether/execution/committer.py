"""Group commit: steps of many tasks that finish together share one store transaction.

A step is never reported done before its commit: each caller awaits its own result.
While one batch is being written, new commits queue up and go in the next batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tether import errors, types
from tether.store.base import Store


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
        self._flusher: asyncio.Task[None] | None = None
        self._on_commit_seconds = on_commit_seconds
        self._retry_unavailable = retry_unavailable

    async def commit(self, commit: types.StepCommit) -> types.CommitResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[types.CommitResult] = loop.create_future()
        self._pending.append((commit, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        # Awaited bare, not shielded: a caller cancelled meanwhile cancels only its own
        # future (the batch skips a done future) and its step is written all the same.
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._write([c for c, _ in batch])
            except BaseException as exc:  # the whole batch failed: every caller hears why
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _write(
        self, commits: list[types.StepCommit]
    ) -> list[types.CommitResult | BaseException]:
        delay = 0.05
        for attempt in range(self._retry_unavailable + 1):
            started = time.perf_counter()
            try:
                results = await self._store.commit_steps(commits)
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
