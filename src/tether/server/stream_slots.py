"""A cap on the event streams one API key holds open at once.

One key held 1,100 streams, each polling the store. Past ``per_key`` open streams a
new one is refused with 429 and ``Retry-After``; a slot is given back when its stream
ends, however it ends (the client hung up, the task ended, the server drained).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from starlette.exceptions import HTTPException

RETRY_AFTER_SECONDS = 5


class StreamSlots:
    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._open: Counter[str] = Counter()

    def open_for(self, key_id: str) -> int:
        return self._open[key_id]

    def take(self, key_id: str) -> None:
        """Hold one slot for ``key_id``, or raise the 429 that refuses the stream."""
        if self._open[key_id] >= self.per_key:
            raise HTTPException(
                429,
                f"this API key already has {self.per_key} event streams open, the most it may "
                "hold; close one, or retry after the Retry-After delay",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self._open[key_id] += 1

    def give_back(self, key_id: str) -> None:
        self._open[key_id] -= 1
        if self._open[key_id] <= 0:
            del self._open[key_id]

    @contextlib.contextmanager
    def held(self, key_id: str) -> Iterator[None]:
        try:
            yield
        finally:
            self.give_back(key_id)
