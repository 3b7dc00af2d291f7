"""Model-step fingerprints are computed incrementally: the same value as from scratch,
and every change to a request still changes its fingerprint."""

from __future__ import annotations

import dataclasses

from tether import types
from tether.execution.fingerprint import RequestFingerprints


def _msg(i: int, role: types.Role = "user") -> types.Message:
    return types.Message(role=role, content=f"message {i}")


def _request(messages: list[types.Message], **kw: object) -> types.ModelRequest:
    return types.ModelRequest(messages=tuple(messages), **kw)  # type: ignore[arg-type]


def _fresh(request: types.ModelRequest, name: str = "m") -> str:
    return RequestFingerprints().fingerprint("model", name, "model-a", request)


def test_growing_requests_match_fingerprints_computed_from_scratch() -> None:
    fps = RequestFingerprints()
    history = [_msg(0)]
    for i in range(1, 30):
        request = _request(history)
        assert fps.fingerprint("model", "m", "model-a", request) == _fresh(request)
        history.append(_msg(i, "assistant" if i % 2 else "user"))


def test_an_edited_earlier_message_changes_the_fingerprint() -> None:
    fps = RequestFingerprints()
    history = [_msg(i) for i in range(5)]
    first = fps.fingerprint("model", "m", "model-a", _request(history))
    edited = [*history[:2], dataclasses.replace(history[2], content="changed"), *history[3:]]
    second = fps.fingerprint("model", "m", "model-a", _request(edited))
    assert second != first
    assert second == _fresh(_request(edited))
    # and back to the original: recomputed, equal to the first again
    assert fps.fingerprint("model", "m", "model-a", _request(history)) == first


def test_a_shorter_request_is_hashed_from_its_start() -> None:
    fps = RequestFingerprints()
    history = [_msg(i) for i in range(6)]
    fps.fingerprint("model", "m", "model-a", _request(history))
    shorter = _request(history[:3])
    assert fps.fingerprint("model", "m", "model-a", shorter) == _fresh(shorter)


def test_everything_in_the_request_counts() -> None:
    history = [_msg(i) for i in range(3)]
    base = _fresh(_request(history))
    spec = types.ToolSpec(name="t", description="d", parameters={"type": "object"})
    assert _fresh(_request(history, max_tokens=10)) != base
    assert _fresh(_request(history, temperature=0.5)) != base
    assert _fresh(_request(history, tools=(spec,))) != base
    assert _fresh(_request(history), name="other") != base
    assert RequestFingerprints().fingerprint("model", "m", "model-b", _request(history)) != base
    # a message moved between the messages' boundaries is a different request
    split = [types.Message(role="user", content="message 0message 1"), history[2]]
    assert _fresh(_request(split)) != base


def test_the_reused_head_follows_every_change_but_the_messages() -> None:
    fps = RequestFingerprints()
    spec = types.ToolSpec(name="t", description="d", parameters={"type": "object"})
    history = [_msg(0)]
    kinds = [
        {"tools": (spec,)},
        {"tools": (spec,), "max_tokens": 10},
        {"tools": (dataclasses.replace(spec, description="other"),), "max_tokens": 10},
        {"tools": (spec, spec), "max_tokens": 10},
        {"tools": (), "max_tokens": 10},
        {"tools": (), "max_tokens": 10, "temperature": 0.3},
    ]
    seen = set()
    for kw in kinds:
        for _ in range(2):  # asked twice in a row: the second reuses the head
            history.append(_msg(len(history)))
            request = _request(history, **kw)
            got = fps.fingerprint("model", "m", "model-a", request)
            assert got == _fresh(request)
            seen.add(got)
        other = fps.fingerprint("model", "n", "model-a", request)
        assert other == _fresh(request, name="n") != got
    assert len(seen) == 2 * len(kinds)
