"""What every suite shares: the workload's sizes, the message, timing and database measures.

A suite runs in its own process (``python -m bench.suite_<system>``), prints
``PROGRESS <text>`` lines while it works and one ``RESULT <json>`` line at the end;
``bench/run.py`` drives the suites and draws the table.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import sqlite3
import statistics
import string
import sys
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MESSAGE_BYTES = 500
"""Every step appends one message of about this many bytes to the session."""
BODY_CHARS = MESSAGE_BYTES - 60
"""The text inside each message (the rest of the ~500 bytes is the message's envelope)."""


@functools.lru_cache(maxsize=4096)
def body(n: int) -> str:
    """The text of the ``n``-th message: pseudo-words, different for every ``n`` and the
    same on every run, so that no store gains from compressing repeated text. Made once
    per ``n`` (cached): the instant model's (and the peers' nodes') own time is not what
    the benchmark measures, and drawing 440 random characters took ~0.4 ms a call."""
    rng = random.Random(n)
    words: list[str] = []
    size = 0
    while size < BODY_CHARS:
        word = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9)))
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:BODY_CHARS]


BODY = body(0)
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True, slots=True)
class Sizes:
    lengths: tuple[int, ...]
    """History lengths at which the cost per step and the bytes per step are read."""
    window: int
    """Steps measured at each history length."""
    concurrency: tuple[tuple[int, int], ...]
    """(concurrent sessions, steps per session) for the throughput rows."""
    rss_tasks: int
    """Tasks run while the worker's RSS is watched."""
    recovery_tasks: int
    lease_ttl: float
    proc_tasks: int
    """Tasks (of ``proc_steps`` steps) for the 1/2/4 worker processes rows."""
    proc_steps: int
    workers: tuple[int, ...] = (1, 2, 4)
    extra: dict[str, Any] = field(default_factory=dict)


QUICK = Sizes(
    lengths=(10, 100, 1000),
    window=20,
    concurrency=((1, 60), (50, 6), (500, 2)),
    rss_tasks=300,
    recovery_tasks=100,
    lease_ttl=2.0,
    proc_tasks=100,
    proc_steps=4,
)
FULL = Sizes(
    lengths=(10, 100, 1000),
    window=40,
    concurrency=((1, 400), (50, 40), (500, 10)),
    rss_tasks=10_000,
    recovery_tasks=100,
    lease_ttl=2.0,
    proc_tasks=600,
    proc_steps=10,
)


def sizes(name: str) -> Sizes:
    return {"quick": QUICK, "full": FULL}[name]


def progress(text: str) -> None:
    print(f"PROGRESS {text}", flush=True)


def emit_result(result: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def suite_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--sizes", choices=("quick", "full"), default="quick")
    parser.add_argument("--workdir", required=True, help="a folder for SQLite files")
    parser.add_argument("--only", default="", help="comma-separated figures to measure")
    return parser.parse_args()


def wanted(args: argparse.Namespace, figure: str) -> bool:
    return not args.only or figure in args.only.split(",")


# ---- timing ------------------------------------------------------------------------


class StepClock:
    """Marks when each step's work (the model or the tool) began and ended, while
    recording (``start`` … ``stop``: the per-step figure only, so that the marks of the
    other figures' many steps do not pile up in the RSS being measured).

    The runtime's cost of a step is the time between the end of one step's work and the
    beginning of the next one's: committing the step, the framework's bookkeeping,
    building the next request. The instant model's own time is not counted."""

    def __init__(self) -> None:
        self.marks: list[tuple[int, float, float]] = []
        self.recording = False
        self._enter = 0.0
        self._history = 0

    def enter(self, history: int) -> None:
        if self.recording:
            self._enter = time.perf_counter()
            self._history = history

    def exit(self) -> None:
        if self.recording:
            self.marks.append((self._history, self._enter, time.perf_counter()))

    def start(self) -> None:
        """Forget earlier marks and record from now."""
        self.marks.clear()
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def reset(self) -> None:
        self.marks.clear()

    def overhead_at(self, length: int, window: int) -> float | None:
        """Median ms between steps whose history is in ``[length, length + window)``."""
        gaps = [
            (enter - prev_exit) * 1000
            for (_, _, prev_exit), (hist, enter, _) in zip(self.marks, self.marks[1:], strict=False)
            if length <= hist < length + window
        ]
        return statistics.median(gaps) if gaps else None


# ---- stored bytes --------------------------------------------------------------------


def sqlite_payload_bytes(path: str) -> int:
    """Bytes of row payload in every table and index of the file (dbstat), page slack
    and free pages excluded."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT SUM(payload) FROM dbstat WHERE aggregate = TRUE").fetchone()
        return int(row[0] or 0)
    finally:
        conn.close()


def postgres_payload_bytes(dsn: str) -> int:
    """Bytes of the live rows of every table in the database's user schemas, as stored
    (``pg_column_size`` of each row: after TOAST compression), plus the payload of every
    index entry (its key values as stored, and a 6-byte heap pointer), as SQLite's
    ``dbstat`` counts tables and indexes alike (``sqlite_payload_bytes``). Row and
    page headers are left out on both engines."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        total = 0
        for (table,) in tables:
            got = conn.execute(f"SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM {table} t")
            total += int(got.fetchone()[0])  # type: ignore[index]
        indexes = conn.execute(
            "SELECT i.indrelid::regclass::text, pg_get_expr(i.indpred, i.indrelid),"
            " ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)"
            "  FROM generate_series(1, i.indnatts) AS k)"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
        ).fetchall()
        for table, predicate, keys in indexes:
            size = " + ".join(f"COALESCE(pg_column_size({k}), 0)" for k in keys)
            where = f" WHERE {predicate}" if predicate else ""
            got = conn.execute(f"SELECT COALESCE(SUM({size} + 6), 0) FROM {table}{where}")
            total += int(got.fetchone()[0])  # type: ignore[index]
        return total


def fresh_pg_database(name: str) -> str:
    """Drop and create database ``name``; returns its URL."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urllib.parse.urlsplit(PG_ADMIN)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


class Bytes:
    """Snapshots of a database's stored bytes at chosen history lengths."""

    def __init__(self, measure: Any) -> None:
        self._measure = measure
        self.at: dict[int, int] = {}

    def snap(self, history: int) -> None:
        self.at[history] = self._measure()

    def per_step(self, lengths: Iterable[int], window: int) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for length in lengths:
            a, b = self.at.get(length), self.at.get(length + window)
            out[str(length)] = None if a is None or b is None else (b - a) / window
        return out


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def machine() -> dict[str, Any]:
    import platform

    import psutil

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
