"""API keys: made once, shown once, stored only as a sha256 digest.

A key is 256 random bits, so a plain sha256 is a safe stored form (no dictionary to
attack) and a lookup by digest is one indexed read.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

KEY_PREFIX = "tk_"
SHOWN_PREFIX_CHARS = 10


@dataclass(frozen=True, slots=True)
class NewKey:
    key: str
    """The secret: print it once, never store it."""
    key_hash: str
    prefix: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> NewKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(key=key, key_hash=hash_key(key), prefix=key[:SHOWN_PREFIX_CHARS])
