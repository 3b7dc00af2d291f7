"""Step fingerprints: what a step was asked to do, so a replay can prove it is the same step."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def fingerprint(kind: str, name: str, inputs: Any) -> str:
    """A short stable hash of a step's kind, name and JSON-able inputs."""
    blob = json.dumps(
        [kind, name, inputs],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=repr,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def describe(inputs: Any, limit: int = 160) -> str:
    """A short human-readable form of a step's inputs for error messages."""
    text = json.dumps(inputs, sort_keys=True, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"
