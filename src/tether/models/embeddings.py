"""OpenAIEmbedder: vectors from an OpenAI-compatible ``POST /v1/embeddings`` endpoint.

It satisfies ``tether.context.embedders.Embedder``; pass it as
``ContextPolicy(strategy="memory", embedder=OpenAIEmbedder(...))``. HTTP errors are
translated here like the chat model's (``tether.models.errors``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from tether import errors
from tether.models import errors as http_errors


class OpenAIEmbedder:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        dimensions: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.dimensions = dimensions
        self.timeout = timeout
        self.name = f"openai:{model}" + (f":{dimensions}" if dimensions else "")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    @property
    def url(self) -> str:
        return f"{self.base_url}/embeddings"

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(base_url={self.base_url!r}, model={self.model!r})"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        body: dict[str, Any] = {"model": self.model, "input": list(texts)}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        with http_errors.translate(self.url, self.timeout):
            async with httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout), headers=self._headers
            ) as client:
                response = await client.post(self.url, json=body)
            http_errors.raise_for_status(response, self.url)
            try:
                data = sorted(response.json()["data"], key=lambda d: int(d["index"]))
                vectors = [[float(v) for v in d["embedding"]] for d in data]
            except (ValueError, TypeError, KeyError) as exc:
                raise errors.ModelProtocolError(
                    f"POST {self.url} answered with a body that is not an embeddings list "
                    f"({exc}): {response.text[:200]!r}; check base_url"
                ) from exc
        if len(vectors) != len(texts):
            raise errors.ModelProtocolError(
                f"POST {self.url} returned {len(vectors)} embeddings for {len(texts)} inputs"
            )
        return vectors
