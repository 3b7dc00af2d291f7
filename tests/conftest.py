"""Fixtures every test folder may use: a fresh PostgreSQL database (see ``tests/pg.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import pg


@pytest.fixture(scope="session", autouse=True)
def _pg_template_cleanup() -> Iterator[None]:
    """Drop this run's PostgreSQL template database at the end (if a test made one)."""
    yield
    pg.drop_template()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test, dropped after it."""
    url = pg.fresh_url()
    try:
        yield url
    finally:
        pg.drop_url(url)
