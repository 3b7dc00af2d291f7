"""Every failure becomes the contract's error object, ``{"error": {type, error_class,
retryable, message}}``, with the status code its class implies.

``NotFound`` and ``UnknownAgent`` are 404 (another tenant's object is never 403: it
does not exist for this key), ``InvalidInput`` and request validation 422, ``Conflict``
409, ``StoreUnavailable`` 503 with ``Retry-After``; anything unexpected is logged and 500.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tether import errors
from tether.server import schemas

_log = logging.getLogger("tether.server")

_STATUS: tuple[tuple[type[errors.TetherError], int], ...] = (
    (errors.NotFound, 404),
    (errors.UnknownAgent, 404),
    (errors.Conflict, 409),
    (errors.InputError, 422),
    (errors.StoreUnavailable, 503),
)

_HTTP_CLASSES = {
    400: "BadRequest",
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    413: "ContentTooLarge",
    408: "RequestTimeout",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
}

# Documented on every route of the API, so the OpenAPI names each way a call can fail.
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": schemas.ErrorBody, "description": "Missing, unknown or revoked API key."},
    404: {"model": schemas.ErrorBody, "description": "No such object for this tenant."},
    422: {"model": schemas.ErrorBody, "description": "The request is invalid; see message."},
    503: {"model": schemas.ErrorBody, "description": "The store is unreachable; retry."},
}


def as_json(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """The same error responses, declared as JSON for a route whose success is not JSON."""
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    return {
        code: {"description": r["description"], "content": {"application/json": {"schema": ref}}}
        for code, r in responses.items()
    }


WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **RESPONSES,
    413: {"model": schemas.ErrorBody, "description": "The request body is too large."},
}


def body(
    error_class: str, message: str, *, where: str = "input", retryable: bool = False
) -> dict[str, Any]:
    return {
        "error": {
            "type": where,
            "error_class": error_class,
            "retryable": retryable,
            "message": message,
        }
    }


def status_of(exc: errors.TetherError) -> int:
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            return code
    return 503 if exc.retryable else 500


def _respond(
    code: int, content: dict[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(content, status_code=code, headers=dict(headers or {}))


STORE_UNAVAILABLE = "the store is unavailable; retry after the Retry-After delay"


async def _tether_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.TetherError)
    code = status_of(exc)
    if code < 500:
        return _respond(code, {"error": exc.to_dict()})
    # A server-side failure's message names the store (URL, host, user, database): it
    # goes to the log; the client learns only what happened and whether to retry.
    _log.warning(
        "http.server_error",
        extra={"method": request.method, "path": request.url.path, "error": exc.message},
    )
    public = {**exc.to_dict(), "message": _public_message(request, exc, code)}
    headers = {"Retry-After": "1"} if code == 503 else None
    return _respond(code, {"error": public}, headers)


def _public_message(request: Request, exc: errors.TetherError, code: int) -> str:
    if isinstance(exc, errors.StoreUnavailable):
        return STORE_UNAVAILABLE
    if code == 503:
        return "the server cannot answer now; retry after the Retry-After delay"
    return (
        f"the server failed on {request.method} {request.url.path} "
        f"({exc.error_class}); see the server log"
    )


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "request"


MAX_PROBLEMS = 10
MAX_PROBLEM_CHARS = 200


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """One 422 of bounded size, however many problems (or however long) the request had."""
    assert isinstance(exc, RequestValidationError)
    found = exc.errors()
    problems = [
        f"{_location(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}"[:MAX_PROBLEM_CHARS]
        for e in itertools.islice(found, MAX_PROBLEMS)
    ]
    if len(found) > MAX_PROBLEMS:
        problems.append(f"and {len(found) - MAX_PROBLEMS} more")
    message = "invalid request: " + "; ".join(problems) if problems else "invalid request"
    return _respond(422, body("InvalidInput", message))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:  # a body that is not even text: invalid input, as any other
        return _respond(422, body("InvalidInput", f"invalid request: {exc.detail}"))
    error_class = _HTTP_CLASSES.get(exc.status_code, f"HTTP{exc.status_code}")
    message = str(exc.detail) if exc.detail else error_class
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}; see /openapi.json"
    return _respond(exc.status_code, body(error_class, message), exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _log.exception("http.unhandled", extra={"method": request.method, "path": request.url.path})
    return _respond(
        500,
        body(
            "InternalError",
            f"the server failed on {request.method} {request.url.path} "
            f"({type(exc).__name__}); see the server log",
            where="infra",
        ),
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.TetherError, _tether_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
