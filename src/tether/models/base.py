"""The Model protocol: one chat completion, awaited."""

from __future__ import annotations

from typing import Protocol

from tether import types


class Model(Protocol):
    """A chat model. Implementations translate their transport's errors into
    ``tether.errors.ModelError`` subclasses; nothing else may escape ``complete``."""

    name: str
    """The model's name, recorded in the journal and in traces."""
    context_window: int
    """Tokens the model accepts, prompt and output together."""
    max_output_tokens: int
    """Default ``max_tokens`` reserved for the answer (when a request sets none)."""

    async def complete(self, request: types.ModelRequest) -> types.ModelResponse: ...

    async def aclose(self) -> None: ...
