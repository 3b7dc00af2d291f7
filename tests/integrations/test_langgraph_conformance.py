"""TetherSaver against LangGraph's own conformance suite, on SQLite and PostgreSQL.

Every capability the suite knows (the five base ones and the extended
``delete_for_runs``, ``copy_thread``, ``prune``) must be detected and pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from tether.integrations.langgraph import TetherSaver


@pytest.fixture(params=["postgres", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'graph.db'}"
    found: str = request.getfixturevalue("pg_url")
    return found


def test_every_capability_passes(url: str) -> None:
    async def saver() -> AsyncIterator[TetherSaver]:
        async with TetherSaver.from_conn_string(url) as opened:
            yield opened

    registered = checkpointer_test(name=f"TetherSaver({url.partition(':')[0]})")(saver)
    report = asyncio.run(validate(registered))

    assert set(report.results) == {c.value for c in ALL_CAPABILITIES}
    failures = {name: r.failures for name, r in report.results.items() if not r.passed}
    assert failures == {}
    for name, result in report.results.items():
        assert result.detected, name
        assert result.tests_passed > 0 and result.tests_failed == 0, name
