"""Refuse request bodies over a size limit with 413, before or while they are read."""

from __future__ import annotations

import asyncio
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.server import http_errors


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyTooSlow(HTTPException):
    def __init__(self, timeout: float) -> None:
        super().__init__(
            408,
            f"the request body stopped arriving for {timeout:g}s; send it whole, then retry",
            headers={"Connection": "close"},
        )


_DRAIN_MAX = 1 << 20
"""A declared body over the limit by no more than this is read and dropped before the 413,
and the connection stays open: a server that closes its socket with the body still
unread makes the kernel reset the connection, and the client may then see "connection
reset" instead of the 413 (seen under CPU load). A larger one is refused at once."""


class BodyLimit:
    """ASGI middleware: a declared ``Content-Length`` over the limit is refused at once;
    a chunked body is counted as it arrives and refused when it crosses the limit. Each
    piece of the body must arrive within ``body_timeout`` seconds of the last (408)."""

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout: float = 15.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            drained = declared - self.max_bytes <= _DRAIN_MAX and await self._drained(receive)
            await _refuse(send, self.max_bytes, close=not drained)
            return
        seen = 0
        complete = False

        async def counted() -> Message:
            nonlocal seen, complete
            if complete:  # after the body, receive() waits for the disconnect: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                raise BodyTooSlow(self.body_timeout) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        await self.app(scope, counted, send)

    async def _drained(self, receive: Receive) -> bool:
        """Read and drop the request's body; False when it stopped arriving (each piece
        within ``body_timeout``, as any body) or the client went away."""
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                return False
            if message["type"] != "http.request":
                return False
            if not message.get("more_body", False):
                return True


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int, *, close: bool) -> None:
    payload = json.dumps(
        http_errors.body("ContentTooLarge", f"the request body is larger than {limit} bytes")
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *([(b"connection", b"close")] if close else []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
