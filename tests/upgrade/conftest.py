"""Fixtures of the upgrade tests: a fresh, empty store URL per engine (both, never skipped)."""

from __future__ import annotations

from pathlib import Path

import pytest

import pg


@pytest.fixture(params=["postgres", "sqlite"])
def engine(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def empty_store_url(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL of ``engine`` with no schema yet (a new SQLite file, a new database)."""
    if engine == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = pg.empty_url()
    request.addfinalizer(lambda: pg.drop_url(url))
    return url
