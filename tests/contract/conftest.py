"""The ``store`` fixture: every contract test runs once per engine.

A test writes its body as ``async def body(store: Store) -> None`` and hands it to
``store.run(body)``, which opens a fresh store of that engine inside its own event
loop (``asyncio.run``), awaits the body, and closes the store. To add an engine,
add one function to ``ENGINES`` that returns a URL for a fresh, empty store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from contract_support import StoreCase

import pg


def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'contract.db'}"


def postgres_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A copy of this run's migrated template database, dropped after the test."""
    url = pg.fresh_url()
    request.addfinalizer(lambda: pg.drop_url(url))
    return url


ENGINES: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "postgres": postgres_url,
    "sqlite": sqlite_url,
}


@pytest.fixture(params=sorted(ENGINES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreCase:
    engine: str = request.param
    return StoreCase(engine=engine, url=ENGINES[engine](request, tmp_path))
