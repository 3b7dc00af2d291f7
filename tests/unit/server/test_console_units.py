"""The console's pure pieces: the session cookie's signature and expiry, the CSRF token,
HTML escaping, and the query parameters' checks."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from tether.server.console import html, params, session
from tether.server.console.access import ConsoleError


def test_a_cookie_holds_until_it_expires_and_only_under_its_secret() -> None:
    signer = session.Signer(b"s" * 32)
    value, signed = signer.issue("hash-1", now=1000.0)
    assert signer.read(value, now=1000.0 + session.TTL_SECONDS - 1) == signed
    assert signer.read(value, now=1000.0 + session.TTL_SECONDS + 1) is None
    assert session.Signer(b"t" * 32).read(value, now=1001.0) is None
    raw, mac = value.split(".")
    assert signer.read(raw[:-2] + "AA." + mac, now=1001.0) is None
    for broken in ("", "x", "a.b.c", "." * 2000, raw):
        assert signer.read(broken, now=1001.0) is None
    assert "hash-1" not in value  # encoded, and signed: not a plain field to edit


def test_each_session_has_its_own_csrf_token() -> None:
    signer = session.Signer(b"s" * 32)
    _, one = signer.issue("hash-1")
    _, two = signer.issue("hash-1")
    assert signer.csrf(one) != signer.csrf(two)
    assert signer.csrf_ok(one, signer.csrf(one))
    assert not signer.csrf_ok(one, signer.csrf(two))
    assert not signer.csrf_ok(one, None) and not signer.csrf_ok(one, "")


def test_text_is_escaped_and_markup_stays_markup() -> None:
    cell = html.tag("td", "<img src=x onerror=alert(1)> & \"q\" 'a'", title='"><b>')
    assert cell == (
        '<td title="&quot;&gt;&lt;b&gt;">&lt;img src=x onerror=alert(1)&gt; &amp; '
        "&quot;q&quot; &#x27;a&#x27;</td>"
    )
    joined = html.tag("b", "x") + "<i>"
    assert joined == "<b>x</b>&lt;i&gt;" and isinstance(joined, html.Markup)
    assert html.badge("waiting") == '<span class="badge st-waiting">waiting</span>'
    assert html.badge('x" onclick="y') == (
        '<span class="badge st-xonclicky">x&quot; onclick=&quot;y</span>'
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "between 1 and"),
        ("limit=12345678901234567890123", "whole number"),
        ("since=tomorrow", "a time such as"),
        ("status=Running", "a status name"),
    ],
)
def test_bad_parameters_name_themselves(query: str, message: str) -> None:
    q = QueryParams(query)
    with pytest.raises(ConsoleError, match=message) as info:
        params.integer(q, "limit", low=1, high=500)
        params.moment(q, "since")
        params.status(q)
    assert info.value.code == 400


def test_times_read_as_utc_or_unix_seconds() -> None:
    assert params.moment(QueryParams("since=2026-01-01T00:00"), "since") == 1767225600.0
    assert params.moment(QueryParams("since=2026-01-01T01:00%2B01:00"), "since") == 1767225600.0
    assert params.moment(QueryParams("since=1767225600"), "since") == 1767225600.0
    assert params.iso(1767225600.0) == "2026-01-01T00:00"
    assert params.moment(QueryParams("since="), "since") is None
