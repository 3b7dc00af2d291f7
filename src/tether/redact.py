"""The one place credentials are taken out of text before anyone sees it.

A store URL can carry a password three ways: in its userinfo
(``postgresql://user:pw@host/db``), in a query option (``?password=pw``,
``?sslpassword=pw``, ``?passfile=/path``) and, when libpq keyword syntax is used, as
``password=pw`` or ``password='p w'``. ``url`` redacts one URL; ``text`` redacts every
such form inside any text (a message, a log line), so each output path (CLI lines,
error messages, log records) runs through here and no path can forget one form.
"""

from __future__ import annotations

import re
import urllib.parse

MASK = "***"

SECRET_KEYS = frozenset({"password", "passfile", "sslpassword"})
"""Connection options whose value is a secret (or says where one is kept)."""

# scheme://user:secret@ — as urlsplit reads it: the secret runs to the last '@' of the
# authority (before '/', '?', '#'), so an unencoded '@' inside a password is covered.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#:@]*):(?P<secret>[^\s/?#]*)@")
# password=secret in a query string (?…&password=…) or a libpq keyword string.
_KEYWORD = re.compile(
    r"(?P<head>(?<![A-Za-z0-9_])(?:" + "|".join(sorted(SECRET_KEYS)) + r")\s*=\s*)"
    r"(?P<secret>'(?:[^'\\]|\\.)*'|[^\s&'\"]*)",
    re.IGNORECASE,
)


def url(value: str) -> str:
    """The URL with every credential replaced by ``***`` (userinfo and query options)."""
    return text(value)


def text(value: str) -> str:
    """``value`` with every credential form replaced by ``***``."""
    if "@" in value:
        value = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", value)
    if "=" in value:
        value = _KEYWORD.sub(lambda m: f"{m['head']}{MASK}", value)
    return value


def secrets_in(value: str) -> list[str]:
    """The credentials a store URL (or libpq keyword string) carries, for tests and
    for checking that an output does not contain them."""
    found: list[str] = []
    parts = urllib.parse.urlsplit(value) if "://" in value else None
    if parts is not None:
        if parts.password:
            found.append(urllib.parse.unquote(parts.password))
        for key, val in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            if key.lower() in SECRET_KEYS and val:
                found.append(val)
    else:
        for m in _KEYWORD.finditer(value):
            if m["secret"]:
                found.append(m["secret"].strip("'"))
    return found
