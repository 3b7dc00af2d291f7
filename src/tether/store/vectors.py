"""Vector memory, engine-neutral: vectors as float32 blobs, cosine top-k with numpy.

Both engines store a memory item's vector as ``dimensions`` little-endian float32
values and search a session's memory here, in the process (sessions' memories are
small: the messages moved out of one conversation's context).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tether import errors
from tether.store.base import MemoryHit, MemoryItem

_DTYPE = np.dtype("<f4")


def encode(vector: Sequence[float], what: str) -> bytes:
    array = np.asarray(vector, dtype=np.float64)
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
        raise errors.InvalidInput(f"{what}: a vector must be a non-empty list of finite numbers")
    return array.astype(_DTYPE).tobytes()


def decode(blob: bytes) -> tuple[float, ...]:
    return tuple(float(v) for v in np.frombuffer(blob, dtype=_DTYPE))


def check_dimensions(session_id: str, stored: int | None, given: int) -> None:
    if stored is not None and stored != given:
        raise errors.InvalidInput(
            f"session {session_id} keeps vectors of {stored} dimensions, this one has {given}; "
            "use the same embedder for a session's whole memory",
            session=session_id,
        )


def top_k(
    session_id: str, items: Sequence[MemoryItem], vector: Sequence[float], k: int
) -> list[MemoryHit]:
    """The ``k`` items most similar to ``vector`` by cosine, best first, ties by seq."""
    if k < 1:
        raise errors.InvalidInput(f"search_memory needs k ≥ 1, got {k}")
    if not items:
        return []
    query = np.asarray(vector, dtype=np.float64)
    check_dimensions(session_id, len(items[0].vector), query.size)
    matrix = np.asarray([i.vector for i in items], dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
    scores = (matrix @ query) / np.where(norms == 0, 1.0, norms)
    order = sorted(range(len(items)), key=lambda i: (-round(float(scores[i]), 9), items[i].seq))
    return [MemoryHit(items[i], round(float(scores[i]), 9)) for i in order[:k]]
