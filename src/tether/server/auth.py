"""Bearer API keys: each request's key maps to exactly one tenant, or the request is 401."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from tether.server import keys
from tether.server.state import ServerState, get_state

bearer = HTTPBearer(
    auto_error=False,
    description="An API key made by `tether keys create --tenant T`; it scopes every call "
    "to that tenant.",
)

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tether"'}
_MAX_KEY_CHARS = 512


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers=_CHALLENGE)


async def tenant_of(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    state: Annotated[ServerState, Depends(get_state)],
) -> str:
    """The tenant of the request's API key."""
    if credentials is None or not credentials.credentials:
        raise _unauthorized("missing API key: send `Authorization: Bearer <key>`")
    secret = credentials.credentials
    if len(secret) > _MAX_KEY_CHARS:
        raise _unauthorized("unknown or revoked API key")
    found = await state.store.find_api_key(keys.hash_key(secret))
    if found is None:
        raise _unauthorized(
            "unknown or revoked API key; make one with `tether keys create --tenant T`"
        )
    if found.operator:
        raise _unauthorized(
            "an operator key signs in to the console (/console/); the API needs a tenant key: "
            "`tether keys create --tenant T`"
        )
    request.state.tenant = found.tenant
    request.state.api_key = found
    return found.tenant


Tenant = Annotated[str, Depends(tenant_of)]
State = Annotated[ServerState, Depends(get_state)]
