"""Embedders: text to vectors for a session's vector memory.

An ``Embedder`` is anything with a ``name`` and an async ``embed(texts)``. The
offline default, ``HashedEmbedder``, is a deterministic hashed bag of words (the
same vectors the stand-in model server's ``/v1/embeddings`` answers). An
OpenAI-compatible ``/v1/embeddings`` client is ``tether.models.embeddings.OpenAIEmbedder``
(HTTP stays inside ``models/``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from tether import errors

_WORD = re.compile(r"\w+")


class Embedder(Protocol):
    name: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order; every vector has the same length."""
        ...


class HashedEmbedder:
    """Each lower-cased word adds ±1 at a slot chosen by its BLAKE2b hash (the sign
    from the hash's top bit); the vector is L2-normalised. No model, no network."""

    def __init__(self, dimensions: int = 64) -> None:
        if not 1 <= dimensions <= 8192:
            raise errors.InvalidInput(
                f"HashedEmbedder dimensions must be 1..8192, got {dimensions}"
            )
        self.dimensions = dimensions
        self.name = f"hashed-bow-{dimensions}"

    def __repr__(self) -> str:
        return f"HashedEmbedder(dimensions={self.dimensions})"

    def vector(self, text: str) -> list[float]:
        out = np.zeros(self.dimensions, dtype=np.float64)
        for word in _WORD.findall(text.lower()):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
            out[h % self.dimensions] += -1.0 if h >> 63 else 1.0
        norm = float(np.linalg.norm(out))
        return [float(v) for v in (out / norm if norm else out)]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector(t) for t in texts]
