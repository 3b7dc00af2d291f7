"""Who may see a console page: the signed-in viewer, the CSRF check of each POST, and the
console's own error pages (HTML, not the API's JSON)."""

from __future__ import annotations

from urllib.parse import parse_qs, quote

from fastapi import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tether import errors
from tether.server.console import html, session
from tether.server.state import ServerState, get_state

_MAX_FORM_BYTES = 4096


class ConsoleError(Exception):
    """Answered as an HTML page with this status and one clear line."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def signer(request: Request) -> session.Signer:
    found: session.Signer = request.app.state.tether_console
    return found


async def viewer_of(request: Request) -> tuple[session.Viewer, session.Signed]:
    """The signed-in viewer; ``SignInRequired`` when the cookie is missing, forged,
    expired, or its key was revoked since."""
    sign = signer(request)
    signed = sign.read(request.cookies.get(session.COOKIE))
    if signed is None:
        raise SignInRequired(request.url.path)
    state: ServerState = get_state(request)
    key = await state.store.find_api_key(signed.key_hash)
    if key is None:
        raise SignInRequired(request.url.path)
    viewer = session.Viewer(
        tenant=None if key.operator else key.tenant,
        operator=key.operator,
        csrf=sign.csrf(signed),
        key_prefix=key.prefix,
    )
    return viewer, signed


async def viewer(request: Request) -> session.Viewer:
    return (await viewer_of(request))[0]


async def form(request: Request) -> dict[str, str]:
    """A small urlencoded form's fields (first value of each)."""
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise ConsoleError(413, f"the form is larger than {_MAX_FORM_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConsoleError(400, "the form is not UTF-8 text") from exc
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


async def checked_post(request: Request) -> tuple[session.Viewer, dict[str, str]]:
    """A state-changing POST: signed in, same origin, and carrying the session's token."""
    found, signed = await viewer_of(request)
    fields = await form(request)
    if not session.same_origin(request) or not signer(request).csrf_ok(signed, fields.get("csrf")):
        raise ConsoleError(
            403, "refused: this form's CSRF token is missing or wrong; reload the page and retry"
        )
    return found, fields


async def error_page(request: Request, exc: Exception) -> Response:
    """The error in one line, under the nav when the viewer is signed in."""
    assert isinstance(exc, ConsoleError)
    try:
        found: session.Viewer | None = (await viewer_of(request))[0]
    except (SignInRequired, errors.TetherError):
        found = None
    body = html.tag("p", exc.message, class_="error") + html.tag(
        "p", html.link("/console/", "Back to the overview")
    )
    return HTMLResponse(html.page(f"Error {exc.code}", body, found), status_code=exc.code)


def sign_in_redirect(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    response = RedirectResponse(f"/console/login?next={quote(exc.next_path)}", status_code=303)
    if session.COOKIE in request.cookies:
        session.clear_cookie(response)
    return response
