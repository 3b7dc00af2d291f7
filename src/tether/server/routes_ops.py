"""Operations: ``/healthz`` (the process is up), ``/readyz`` (store reachable and not
draining), ``/metrics`` (Prometheus text). No API key: load balancers and scrapers call them."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from tether import errors
from tether.execution import waiting_gauge
from tether.server import schemas
from tether.server.auth import State

_log = logging.getLogger("tether.server")

router = APIRouter(tags=["operations"])

_READY_TIMEOUT = 2.0
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


@router.get(
    "/healthz", response_model=schemas.Health, operation_id="healthz", summary="The process is up"
)
async def healthz() -> schemas.Health:
    return schemas.Health(status="ok")


@router.get(
    "/readyz",
    response_model=schemas.Readiness,
    operation_id="readyz",
    responses={503: {"model": schemas.Readiness, "description": "Draining, or store down."}},
    summary="Ready for traffic: the store answers and the server is not draining",
)
async def readyz(state: State) -> JSONResponse:
    if state.lifecycle.draining:
        return _readiness(503, "draining", "the server is draining: send traffic elsewhere")
    if state.saturated():
        return _readiness(
            503,
            "saturated",
            "every sync tool thread of a worker here runs a call that was given up; it claims "
            "no tasks: restart this process (SIGTERM drains it)",
        )
    try:
        await asyncio.wait_for(state.store.schema_version(), _READY_TIMEOUT)
    except (errors.TetherError, TimeoutError) as exc:
        # unauthenticated: the store's URL, host, user and database stay in the log
        why = exc.message if isinstance(exc, errors.TetherError) else "no answer in time"
        _log.warning("readyz.store_unavailable", extra={"error": why})
        return _readiness(503, "unavailable", "store unavailable")
    return _readiness(200, "ready", None)


def _readiness(code: int, status: str, detail: str | None) -> JSONResponse:
    return JSONResponse({"status": status, "detail": detail}, status_code=code)


@router.get(
    "/metrics",
    response_class=Response,
    operation_id="metrics",
    responses={200: {"content": {_PROMETHEUS: {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics",
)
async def metrics(state: State) -> Response:
    # tasks_waiting comes from the store; a store down or slow still lets metrics out
    with contextlib.suppress(errors.TetherError, TimeoutError):
        await asyncio.wait_for(waiting_gauge.refresh(state.store, state.metrics), _READY_TIMEOUT)
    return Response(state.metrics.render(), media_type=_PROMETHEUS)
