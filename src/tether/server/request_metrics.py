"""Count every request as ``tether_requests_total{route, code}``, by route TEMPLATE.

The label is the matched route's path template (``/v1/tasks/{task_id}``), never the raw
path, so ids do not explode the series; a path no route matches counts as ``unmatched``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.observe.metrics import Metrics

UNMATCHED = "unmatched"


class RequestMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        recorded = False

        async def watched(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                self.metrics.observe_request(_route(scope), message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except BaseException:
            if not recorded:
                recorded = True
                self.metrics.observe_request(_route(scope), 500)
            raise


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
