"""Step fingerprints: what a step was asked to do, so a replay can prove it is the same step."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
from typing import Any

from tether import types

_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
)
"""The canonical JSON of what a fingerprint hashes: made once, as ``json.dumps`` with
these options would build an encoder on every call."""


def fingerprint(kind: str, name: str, inputs: Any) -> str:
    """A short stable hash of a step's kind, name and JSON-able inputs."""
    blob = _CANONICAL.encode([kind, name, inputs])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def describe(inputs: Any, limit: int = 160) -> str:
    """A short human-readable form of a step's inputs for error messages."""
    text = json.dumps(inputs, sort_keys=True, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _message_line(message: types.Message) -> bytes:
    return _CANONICAL.encode(message.to_dict()).encode() + b"\n"


class RequestFingerprints:
    """Fingerprints of one task's model requests, each in O(messages new since the last).

    A request's fingerprint hashes its messages one by one (each as canonical JSON, one
    line each) into a running digest, then the rest of the request. An agent's next
    request usually extends the previous one's messages with the very same objects, so
    the digest of that prefix is carried on instead of hashing the whole history again:
    a step's cost stays flat as the session grows. A request that does not extend the
    last one is hashed from its start; the fingerprint is the same either way."""

    def __init__(self) -> None:
        self._messages: tuple[types.Message, ...] = ()
        self._digest = hashlib.sha256()
        self._head: tuple[tuple[Any, ...], str] | None = None
        """The last request's all-but-messages fingerprint, with what it was made of."""

    def fingerprint(self, kind: str, name: str, model: str, request: types.ModelRequest) -> str:
        messages = request.messages
        known = len(self._messages)
        if len(messages) >= known and all(map(operator.is_, messages, self._messages)):
            digest = self._digest.copy()
        else:
            digest, known = hashlib.sha256(), 0
        for message in messages[known:]:
            digest.update(_message_line(message))
        self._messages, self._digest = messages, digest.copy()
        return hashlib.sha256(
            f"{self._head_of(kind, name, model, request)}:{digest.hexdigest()}".encode()
        ).hexdigest()[:32]

    def _head_of(self, kind: str, name: str, model: str, request: types.ModelRequest) -> str:
        """The fingerprint of everything but the messages; the last one is reused while
        the same tools (the same objects) and settings are asked for."""
        key = (
            kind,
            name,
            model,
            request.max_tokens,
            request.temperature,
            request.tool_choice,
            json.dumps(request.output_schema, sort_keys=True),
        )
        known = self._head
        if (
            known is not None
            and known[0][:7] == key
            and len(known[0][7]) == len(request.tools)
            and all(map(operator.is_, known[0][7], request.tools))
        ):
            return known[1]
        rest = dataclasses.replace(request, messages=()).to_dict()
        head = fingerprint(kind, name, {"model": model, "request": rest})
        self._head = ((*key, request.tools), head)
        return head
