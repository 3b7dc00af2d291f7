"""The FastAPI application: routes, error shapes, body limit and request metrics."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from fastapi import FastAPI

from tether.server import (
    console,
    http_errors,
    routes_ops,
    routes_sessions,
    routes_signals,
    routes_tasks,
)
from tether.server.body_limit import BodyLimit
from tether.server.request_metrics import RequestMetrics
from tether.server.state import ServerState


def _version() -> str:
    try:
        return metadata.version("tether")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0"


def create_app(state: ServerState) -> FastAPI:
    app = FastAPI(
        title="tether",
        version=_version(),
        description="Durable AI agents over HTTP. Every call under /v1 needs "
        "`Authorization: Bearer <API key>` and sees only that key's tenant.",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.tether = state
    _document_agents(app, sorted(state.agents))
    app.include_router(routes_sessions.router)
    app.include_router(routes_tasks.router)
    app.include_router(routes_signals.router)
    app.include_router(routes_ops.router)
    http_errors.install(app)
    console.install(app)
    # outermost last: metrics see every answer, the 413s of the body limit included
    app.add_middleware(
        BodyLimit, max_bytes=state.config.max_body_bytes, body_timeout=state.config.body_timeout
    )
    app.add_middleware(RequestMetrics, metrics=state.metrics)
    return app


def _document_agents(app: FastAPI, agents: list[str]) -> None:
    """Name this server's agents in the OpenAPI (as examples of ``SessionCreate.agent``)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            agent = schema["components"]["schemas"]["SessionCreate"]["properties"]["agent"]
            agent["examples"] = agents
            agent["description"] = f"A registered agent's name: one of {', '.join(agents)}."
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]
