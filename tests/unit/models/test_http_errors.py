from __future__ import annotations

import email.utils

import httpx
import pytest

from tether import errors
from tether.models import errors as http_errors

URL = "http://127.0.0.1:9/v1/chat/completions"


def headers(**values: str) -> httpx.Headers:
    return httpx.Headers({k.replace("_", "-"): v for k, v in values.items()})


def test_retry_after_seconds() -> None:
    assert http_errors.parse_retry_after(headers(retry_after="3")) == 3.0
    assert http_errors.parse_retry_after(headers(retry_after=" 0.5 ")) == 0.5
    assert http_errors.parse_retry_after(headers(retry_after="-4")) == 0.0


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    later = email.utils.formatdate(now + 42, usegmt=True)
    earlier = email.utils.formatdate(now - 42, usegmt=True)
    assert http_errors.parse_retry_after(headers(retry_after=later), now=now) == 42.0
    assert http_errors.parse_retry_after(headers(retry_after=earlier), now=now) == 0.0


def test_retry_after_absent_or_unreadable() -> None:
    assert http_errors.parse_retry_after(headers()) is None
    assert http_errors.parse_retry_after(headers(retry_after="soon")) is None
    assert http_errors.parse_retry_after(headers(retry_after="inf")) is None


def test_retry_after_ms_wins() -> None:
    both = headers(retry_after="3", retry_after_ms="1500")
    assert http_errors.parse_retry_after(both) == 1.5


@pytest.mark.parametrize(
    "body",
    [
        "This model's maximum context length is 4096 tokens. However, you requested 5000",
        '{"error": {"code": "context_length_exceeded"}}',
        "The prompt (9000 tokens) is longer than the Maximum Model Length of 8192",
        "the request exceeds the available context size, try increasing it",
        '{"error": {"type": "exceed_context_size_error"}}',
        '{"error": "the input length exceeds the context length"}',
        "Context length exceeded",
    ],
)
def test_context_overflow_phrases(body: str) -> None:
    assert http_errors.is_context_overflow(body)


def test_not_context_overflow() -> None:
    assert not http_errors.is_context_overflow('{"error": {"message": "invalid model"}}')


def response(status: int, text: str, **hdrs: str) -> httpx.Response:
    return httpx.Response(status, text=text, headers=headers(**hdrs))


def test_server_message_from_the_usual_shapes() -> None:
    openai_body = '{"error": {"message": "bad key"}}'
    vllm_body = '{"object": "error", "message": "nope"}'
    assert http_errors.server_message(response(401, openai_body)) == "bad key"
    assert http_errors.server_message(response(400, vllm_body)) == "nope"
    assert http_errors.server_message(response(500, '{"error": "ollama says"}')) == "ollama says"
    assert http_errors.server_message(response(422, '{"detail": "missing"}')) == "missing"
    assert http_errors.server_message(response(502, "")) == "(empty body)"
    assert http_errors.server_message(response(502, "x" * 1000)).endswith("…")


def test_raise_for_status_classes() -> None:
    http_errors.raise_for_status(response(200, "{}"), URL)
    cases: list[tuple[httpx.Response, type[errors.ModelError]]] = [
        (response(429, "", retry_after="7"), errors.RateLimited),
        (response(500, "maximum context length is 10"), errors.ContextOverflow),
        (response(503, "busy"), errors.ServerError),
        (response(413, "too big"), errors.ModelRejected),
        (response(302, "elsewhere"), errors.ModelProtocolError),
    ]
    for resp, expected in cases:
        with pytest.raises(expected) as info:
            http_errors.raise_for_status(resp, URL)
        assert type(info.value) is expected
        assert URL in info.value.message
        assert str(resp.status_code) in info.value.message
    with pytest.raises(errors.RateLimited) as limited:
        http_errors.raise_for_status(response(429, "", retry_after="7"), URL)
    assert limited.value.retry_after == 7.0
    assert "after 7s" in limited.value.message


def test_translate_leaves_tether_errors_alone() -> None:
    with (
        pytest.raises(errors.ServerError),
        http_errors.translate(URL, 1.0),
    ):
        raise errors.ServerError("as is")


def test_translate_maps_decoding_errors_to_protocol_errors() -> None:
    with pytest.raises(errors.ModelProtocolError) as info, http_errors.translate(URL, 1.0):
        raise httpx.DecodingError("bad gzip")
    assert isinstance(info.value.__cause__, httpx.DecodingError)
