"""Readiness and drain as the routes see them: one flag and one event per process."""

from __future__ import annotations

import asyncio


class Lifecycle:
    """``draining`` turns ``/readyz`` to 503; ``closing`` tells open event streams to end
    cleanly (``stream.reconnect``) so their clients resume elsewhere."""

    def __init__(self) -> None:
        self.draining = False
        self.closing = asyncio.Event()

    def begin_drain(self) -> None:
        self.draining = True
        self.closing.set()
