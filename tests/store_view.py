"""The test's own view of a store, from synchronous test code: open, call, close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tether.store import Store, open_store

T = TypeVar("T")


def call_with_store(url: str, fn: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store at ``url``, await ``fn`` on it, close it, and give back its result."""

    async def main() -> T:
        store = open_store(url)
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())
