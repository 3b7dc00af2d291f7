"""Read deadlines for clients that send a request slowly or never finish it.

uvicorn closes idle keep-alive connections, but a connection that sent part of its
headers (or part of its body) is held open for as long as the client likes: 400
half-sent requests stayed open after 30 s. Headers must arrive completely within
``header_timeout`` of the connection's first byte (or of the previous response); each
piece of a body must arrive within ``body_timeout`` of the last (``body_limit`` reads
it), else the request is answered 408 and the connection closed.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

_log = logging.getLogger("tether.server")


class HeaderDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers are late."""

    header_timeout: float = 10.0

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._awaiting_headers():
            if self._header_timer is None:
                self._arm()
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle now: uvicorn's keep-alive timeout takes over

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _awaiting_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self._awaiting_headers() and not self.transport.is_closing():
            _log.warning(
                "http.header_timeout",
                extra={"client": self.client, "header_timeout": self.header_timeout},
            )
            self.transport.close()


def protocol(header_timeout: float) -> type[HeaderDeadlineH11]:
    """The protocol class uvicorn should use (``uvicorn.Config(http=...)``)."""
    return type("HeaderDeadlineH11", (HeaderDeadlineH11,), {"header_timeout": header_timeout})
