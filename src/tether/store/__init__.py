"""Stores: where sessions, tasks, journals, leases and memory live."""

from __future__ import annotations

from tether import errors, redact
from tether.store.base import Claim, Store

__all__ = ["Claim", "Store", "open_store"]

DEFAULT_URL = "sqlite:///tether.db"


def open_store(url: str, *, migrate: bool = True) -> Store:
    """Choose the engine by URL scheme; PostgreSQL's driver is imported only when asked for.

    The returned store is not connected yet: ``await store.open()``."""
    if url.startswith("sqlite://"):
        from tether.store.sqlite import SQLiteStore

        return SQLiteStore(url, migrate=migrate)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from tether.store.postgres import PostgresStore
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise errors.MissingExtra(
                "PostgreSQL support needs psycopg: pip install 'tether[postgres]'"
            ) from exc
        return PostgresStore(url, migrate=migrate)
    raise errors.InvalidInput(
        f"unknown store URL {redact.url(url)!r}: use sqlite:///path/to/file.db or postgresql://host/db"
    )
