"""The SQLite connection: its URL, its one thread, its transactions, its errors.

All SQLite work runs on one dedicated thread that owns the connection: coroutines
queue jobs and await their results, which the thread hands back to the awaiting
event loop with ``call_soon_threadsafe``. Every write is one ``BEGIN IMMEDIATE``
transaction, so writers in other processes wait on the busy timeout instead of
failing or interleaving. ``translated`` is the one place where ``sqlite3`` errors
become tether errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import random
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tether import errors
from tether.store import counts

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}
_UNAVAILABLE = ("locked", "busy", "disk i/o", "unable to open", "disk is full", "readonly")
_CORRUPT = ("malformed", "not a database", "corrupt")


def parse_url(url: str) -> tuple[str, str]:
    """``sqlite:///rel.db`` or ``sqlite:////abs.db`` (``?synchronous=normal|full``) → path, mode."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise errors.InvalidInput(
            f"not a SQLite store URL: {url!r}; use sqlite:///relative.db or sqlite:////abs/path.db"
        )
    path, _, query = url[len(prefix) :].partition("?")
    if not path:
        raise errors.InvalidInput(
            f"SQLite store URL {url!r} names no file: use sqlite:///tether.db"
        )
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - {"synchronous"})
    if unknown:
        raise errors.InvalidInput(
            f"SQLite store URL {url!r} has unknown options {unknown}: only synchronous=normal|full"
        )
    mode = params.get("synchronous", ["full"])[-1].lower()
    if mode not in _SYNCHRONOUS:
        raise errors.InvalidInput(
            f"SQLite store URL {url!r} asks for synchronous={mode}: use normal or full"
        )
    return path, _SYNCHRONOUS[mode]


def connect(path: str, synchronous: str, url: str) -> sqlite3.Connection:
    """Open the file in WAL mode with a busy timeout and foreign keys on (autocommit:
    transactions are begun explicitly with ``read`` and ``write``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        if counts.SQLITE.trace:
            conn.set_trace_callback(_count_statement)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _refuse_foreign(conn, path)
        mode = _enter_wal(conn)
        if str(mode).lower() != "wal":
            raise errors.StoreUnavailable(
                f"SQLite store {url} cannot use WAL mode (it reports {mode}); put the file "
                "on a local disk"
            )
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _count_statement(_sql: str) -> None:
    counts.SQLITE.statements += 1


def _refuse_foreign(conn: sqlite3.Connection, path: str) -> None:
    """A file that holds tables but no ``schema_migrations`` is another application's
    database: tether neither switches it to WAL nor adds its tables to it."""
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
    ]
    if names and "schema_migrations" not in names:
        shown = ", ".join(sorted(names)[:5]) + (" …" if len(names) > 5 else "")
        raise errors.InvalidInput(
            f"{path} is not a tether store: it holds other tables ({shown}); tether adds its "
            "tables only to a new or empty file: point --store at a tether store or a new file"
        )


def _enter_wal(conn: sqlite3.Connection) -> str:
    """Switch to WAL, waiting out other processes that open the same new file.

    The switch reads the header under a shared lock and then needs an exclusive one;
    while another connection holds the write lock, SQLite answers "database is locked"
    at once instead of calling the busy handler (that wait could deadlock), so the
    wait is ours: short jittered sleeps up to the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            busy = any(word in str(exc).lower() for word in ("locked", "busy"))
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


# ---- the driver boundary ---------------------------------------------------------


def translate(exc: sqlite3.Error, url: str) -> errors.TetherError:
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and any(w in text for w in _UNAVAILABLE):
        return errors.StoreUnavailable(
            f"SQLite store {url} is unavailable ({exc}); tether retries with backoff, "
            "check the file's disk and permissions if it persists"
        )
    if isinstance(exc, sqlite3.IntegrityError) or any(w in text for w in _CORRUPT):
        return errors.StoreCorrupt(
            f"SQLite store {url} broke an invariant ({exc}); restore the file from a backup "
            "or report this with the file attached"
        )
    return errors.InfraError(f"SQLite store {url} failed: {exc}")


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """Turn any ``sqlite3`` error raised inside into a tether error, chained with ``from``."""
    try:
        yield
    except sqlite3.Error as exc:
        raise translate(exc, url) from exc


# ---- transactions ----------------------------------------------------------------


@contextlib.contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: ``BEGIN IMMEDIATE`` takes the write lock up front, and
    anything raised inside (``LeaseLost`` included) rolls the whole of it back."""
    conn.execute("BEGIN IMMEDIATE")
    counts.SQLITE.transactions += 1
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def read(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One consistent snapshot for reads made of several statements."""
    conn.execute("BEGIN")
    counts.SQLITE.transactions += 1
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


# ---- the connection thread -------------------------------------------------------

_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # the awaiting coroutine was cancelled
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class ConnectionThread:
    """Runs jobs one at a time, in order, on a thread of its own; each result goes back
    to the event loop that awaited it, whichever loop that is."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        counts.SQLITE.round_trips += 1
        self._jobs.put((fn, loop, fut))
        return await fut

    async def stop(self) -> None:
        """Finish the jobs already queued, then end the thread."""
        self._jobs.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _main(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, loop, fut = job
            result: Any = None
            failure: BaseException | None = None
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting coroutine, never lost
                failure = exc
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, fut, result, failure)
