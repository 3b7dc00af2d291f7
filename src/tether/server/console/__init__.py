"""The operator console: server-rendered pages under ``/console/`` in the API's process,
reading the same store with the same tenant scoping. ``install(app)`` mounts it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from tether.server.console import access, actions_waits, routes, session

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI, *, secret: bytes | None = None) -> None:
    """Mount the console's routes and static files; ``secret`` signs its session cookies
    (default: ``TETHER_CONSOLE_SECRET``, else random per process)."""
    app.state.tether_console = session.Signer(secret)
    app.include_router(routes.router)
    app.include_router(actions_waits.router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    app.add_exception_handler(access.ConsoleError, access.error_page)
    app.add_exception_handler(access.SignInRequired, access.sign_in_redirect)
