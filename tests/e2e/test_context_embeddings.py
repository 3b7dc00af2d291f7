"""Memory with the OpenAI-compatible embedder: the stand-in server's /v1/embeddings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import context_support as support
import pytest

from tether import ContextPolicy, errors
from tether.context.embedders import HashedEmbedder
from tether.models.embeddings import OpenAIEmbedder
from tether.testing import StandInModelServer


def test_openai_embedder_matches_the_offline_one_on_the_stand_in() -> None:
    with StandInModelServer("ok", dimensions=32) as server:
        embedder = OpenAIEmbedder(server.base_url, "embed", dimensions=32)
        texts = ["record the number 7", "", "lease and fencing"]
        got = asyncio.run(embedder.embed(texts))
        assert server.embedding_requests[-1]["input"] == texts
    offline = asyncio.run(HashedEmbedder(32).embed(texts))
    assert [[round(v, 6) for v in vec] for vec in got] == [
        [round(v, 6) for v in vec] for vec in offline
    ]


def test_openai_embedder_errors_are_model_errors() -> None:
    with StandInModelServer("ok") as server:
        embedder = OpenAIEmbedder(server.base_url, "embed", dimensions=0)
        with pytest.raises(errors.ModelRejected, match="dimensions"):
            asyncio.run(embedder.embed(["x"]))


def test_memory_strategy_with_the_http_embedder(tmp_path: Path) -> None:
    with StandInModelServer("ok", dimensions=48) as embeddings:
        policy = ContextPolicy(
            strategy="memory", embedder=OpenAIEmbedder(embeddings.base_url, "e", dimensions=48)
        )
        run = support.converse(str(tmp_path / "t.db"), policy, 40, window=1024)
        assert embeddings.embedding_requests
    assert [r.status for r in run.results] == ["completed"] * 40
    assert run.memory and all(len(m.vector) == 48 for m in run.memory)
    assert [m.seq for m in run.memory] == list(range(1, run.session.state["folded_upto"] + 1))
