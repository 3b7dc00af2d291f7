"""Integration tests: agents of other frameworks against the stand-in model server."""

from __future__ import annotations

from collections.abc import Iterator

import oa_agents
import pytest

from tether.testing import StandInModelServer


@pytest.fixture
def oa_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInModelServer]:
    """The stand-in server answering ``oa_agents.script``; its URL in the environment
    that ``oa_agents.build()`` and worker processes read."""
    with StandInModelServer(oa_agents.script) as server:
        monkeypatch.setenv("TETHER_TEST_MODEL_URL", server.base_url)
        yield server
