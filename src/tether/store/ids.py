"""Identifiers for sessions and tasks: random, opaque, URL-safe."""

from __future__ import annotations

import uuid


def new_id() -> str:
    """A fresh 32-character lowercase hex id (a random UUID4)."""
    return uuid.uuid4().hex
