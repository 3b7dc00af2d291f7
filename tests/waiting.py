"""Waiting for something another process or thread will do: poll until it holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None], *, what: str, timeout: float = 30.0, poll: float = 0.1
) -> T:
    """``check()``'s first truthy value; an ``AssertionError`` naming ``what`` after
    ``timeout`` seconds without one."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)
