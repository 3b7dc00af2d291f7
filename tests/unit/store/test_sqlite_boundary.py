"""The SQLite boundary: URLs, statement splitting, and driver errors turned into tether's."""

from __future__ import annotations

import sqlite3

import pytest

from tether import errors
from tether.store import sqlite_connection, sqlite_schema

URL = "sqlite:///t.db"


def test_parse_url_paths_and_synchronous() -> None:
    assert sqlite_connection.parse_url("sqlite:///rel/t.db") == ("rel/t.db", "FULL")
    assert sqlite_connection.parse_url("sqlite:////abs/t.db?synchronous=normal") == (
        "/abs/t.db",
        "NORMAL",
    )


@pytest.mark.parametrize(
    "url",
    ["postgresql://x/y", "sqlite:///", "sqlite:///t.db?synchronous=off", "sqlite:///t.db?x=1"],
)
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(errors.InvalidInput):
        sqlite_connection.parse_url(url)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (sqlite3.OperationalError("database is locked"), errors.StoreUnavailable),
        (sqlite3.OperationalError("disk I/O error"), errors.StoreUnavailable),
        (sqlite3.DatabaseError("database disk image is malformed"), errors.StoreCorrupt),
        (sqlite3.IntegrityError("FOREIGN KEY constraint failed"), errors.StoreCorrupt),
        (sqlite3.OperationalError("no such table: tasks"), errors.InfraError),
    ],
)
def test_driver_errors_are_translated_and_chained(
    exc: sqlite3.Error, expected: type[errors.TetherError]
) -> None:
    with pytest.raises(expected) as info, sqlite_connection.translated(URL):
        raise exc
    assert type(info.value) is expected
    assert info.value.__cause__ is exc
    assert URL in str(info.value)


def test_store_unavailable_is_retryable() -> None:
    err = sqlite_connection.translate(sqlite3.OperationalError("database is locked"), URL)
    assert err.retryable and err.where == "infra"


def test_statements_split_on_complete_statements() -> None:
    script = (
        "-- header; with a semicolon\n"
        "CREATE TABLE a (x TEXT DEFAULT ';');\n"
        "\n"
        "CREATE INDEX a_x ON a (x);  -- trailing note\n"
        "-- footer\n"
    )
    assert sqlite_schema.statements(script) == [
        "-- header; with a semicolon\nCREATE TABLE a (x TEXT DEFAULT ';');",
        "CREATE INDEX a_x ON a (x);  -- trailing note",
    ]


def test_an_incomplete_statement_is_refused() -> None:
    with pytest.raises(errors.StoreCorrupt, match="incomplete"):
        sqlite_schema.statements("CREATE TABLE a (x TEXT)\n")
