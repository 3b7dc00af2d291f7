"""Fresh PostgreSQL databases for tests: one migrated template per test run, one copy per test.

The server is the machine's (``127.0.0.1:5432``, trust auth, database ``test``; the
``TETHER_TEST_PG`` environment variable names another). The first test that asks
migrates a template database once; every test then gets ``CREATE DATABASE … TEMPLATE``,
a copy made in milliseconds, dropped after it (procrastinate's pattern). When no
server answers, the test fails and says how to start one: PostgreSQL cases are never
skipped.
"""

from __future__ import annotations

import asyncio
import os
import threading
import urllib.parse
import uuid

import psycopg
import pytest

from tether.store.postgres import PostgresStore

ADMIN_URL = os.environ.get("TETHER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
START_HINT = (
    "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "(or point TETHER_TEST_PG at a server)"
)

_lock = threading.Lock()
_template: str | None = None
_run = uuid.uuid4().hex[:8]


def url_for(database: str) -> str:
    """The admin URL with its database replaced."""
    parts = urllib.parse.urlsplit(ADMIN_URL)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


def admin() -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to the admin database; fails the test if none answers."""
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {ADMIN_URL} is not answering ({exc}); {START_HINT}")


def create_database(*, template: str | None = None) -> str:
    """A new empty database (or a copy of ``template``); returns its name."""
    name = f"tether_t_{_run}_{uuid.uuid4().hex[:12]}"
    with admin() as conn:
        if template is None:
            conn.execute(f'CREATE DATABASE "{name}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def drop_database(name: str) -> None:
    with admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def template() -> str:
    """The migrated template database of this test run (made on first use)."""
    global _template
    with _lock:
        if _template is None:
            name = create_database()
            store = PostgresStore(url_for(name))

            async def migrate() -> None:
                await store.open()
                await store.close()

            asyncio.run(migrate())
            _template = name
        return _template


def fresh_url() -> str:
    """The URL of a new, migrated, empty database; ``drop_url`` removes it."""
    return url_for(create_database(template=template()))


def empty_url() -> str:
    """The URL of a new database without any schema (for migration tests)."""
    return url_for(create_database())


def drop_url(url: str) -> None:
    drop_database(urllib.parse.urlsplit(url).path.lstrip("/"))


def drop_template() -> None:
    global _template
    with _lock:
        name, _template = _template, None
    if name is not None:
        drop_database(name)
