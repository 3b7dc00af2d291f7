"""The store core's form: a rule written once as a *program*, a generator that yields the
statements it needs and receives their rows, run by either engine's driver.

SQLite runs programs synchronously on its connection thread; PostgreSQL awaits each
statement on a pooled connection. A rule written as a program does not care which:
it sees rows (indexable by column name) and decides. Statements use ``:name``
parameters (SQLite's own style; PostgreSQL's driver rewrites them to ``%(name)s``) and
only SQL both engines speak; what differs per engine is asked of the engine's
``Dialect`` (``dialect``), which a program takes as an argument.
``:db_now`` is the store's clock: PostgreSQL's (``clock_timestamp()``, so that workers
whose clocks disagree agree on lease times), the process's on SQLite (one machine).
``Notify`` asks the engine to wake idle workers when the transaction commits
(PostgreSQL's ``NOTIFY``; SQLite's workers poll, so it does nothing there).

``StoreCore`` (``core``) runs one program per ``Store`` method. The hot path (claims,
step commits) stays in each engine's query module, where each engine's statements are
tuned; the rules they share are functions and programs (``leases``, ``commits``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from tether.store import rows

T = TypeVar("T")
"""What a program returns."""


@dataclass(frozen=True)
class Query:
    """One statement and its ``:name`` parameters; the program receives its rows."""

    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)
    lock: bool = False
    many: Sequence[Mapping[str, Any]] = ()
    """When given, run the statement once per parameter set (``executemany``); ``params``
    is then unused and the program receives []."""
    """Lock the rows read until the transaction ends (PostgreSQL ``FOR NO KEY UPDATE``;
    SQLite's write transaction holds the whole database already)."""


@dataclass(frozen=True)
class Notify:
    """Wake idle workers of ``agent`` once this transaction commits (the program receives [])."""

    agent: str


Program = Generator[Query | Notify, list[rows.Row], T]
"""A rule as a program: yields statements, receives their rows, returns its answer."""


class Runner(Protocol):
    """A driver's way to run a program (``StoreCore._apply``, ``StoreCore._query``)."""

    def __call__(self, program: Program[T], /) -> Awaitable[T]: ...


def one(found: list[rows.Row]) -> rows.Row | None:
    return found[0] if found else None


DB_NOW = ":db_now"
"""The store's clock in a statement (see the module's docstring)."""


def postgres_style(sql: str) -> str:
    """``:name`` parameters as psycopg's ``%(name)s`` (``::`` casts are left alone)."""
    return re.sub(r"(?<!:):([a-z_][a-z0-9_]*)", r"%(\1)s", sql)


def nothing() -> Program[list[Any]]:
    """A program that reads nothing and answers []."""
    return []
    yield  # a generator that yields no statement


def in_turn(programs: Sequence[Program[Any]]) -> Program[list[Any]]:
    """Read-only programs run one after the other as one program (one snapshot on an
    engine that gives a read transaction one); their answers, in order."""
    answers: list[Any] = []
    for program in programs:
        answers.append((yield from program))
    return answers
