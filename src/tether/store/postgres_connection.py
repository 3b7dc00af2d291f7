"""The PostgreSQL connection: its URL, its pool, its transactions, its clock, its errors.

``PostgresStore`` borrows a connection from psycopg's async pool for each operation;
writes run in one transaction each (``async with conn.transaction()``), and nested
transactions are savepoints. ``translated`` is the one place where psycopg errors
become tether errors: anything that means "the connection or the server went away"
(``OperationalError``, which covers ``AdminShutdown`` and the pool's ``PoolTimeout``)
or "try the transaction again" (serialization failures, deadlocks) is
``StoreUnavailable``, retryable; a broken invariant is ``StoreCorrupt``.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from tether import errors
from tether.store import counts, migrations

_log = logging.getLogger("tether.store.postgres")

Connection = psycopg.AsyncConnection[DictRow]
Pool = AsyncConnectionPool[Connection]


COUNTS = counts.POSTGRES
"""What this process sent to PostgreSQL (``tether.store.counts``)."""


class CountingCursor(psycopg.AsyncCursor[DictRow]):
    """The pool's cursor: counts each statement sent (``COUNTS``); inside a pipeline
    (``CountingConnection.pipelined``) the pipeline counts the one round trip."""

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        COUNTS.statements += 1
        COUNTS.round_trips += not _in_pipeline(self.connection)
        return await super().execute(*args, **kwargs)

    async def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        params = list(params_seq)
        COUNTS.statements += len(params)
        COUNTS.round_trips += not _in_pipeline(self.connection)
        await super().executemany(query, params, **kwargs)


def _in_pipeline(conn: Any) -> bool:
    return bool(getattr(conn, "pipelined", 0))


class CountingConnection(psycopg.AsyncConnection[DictRow]):
    """The pool's connection: counts a transaction's (or savepoint's) two commands, and
    a pipeline's one round trip (its statements go out together, their results come
    back together)."""

    pipelined = 0
    """How deep in ``pipeline()`` blocks the connection is (0: not in one)."""

    @contextlib.asynccontextmanager
    async def transaction(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        COUNTS.statements += 2
        COUNTS.round_trips += 0 if self.pipelined else 2
        COUNTS.transactions += 1
        async with super().transaction(*args, **kwargs) as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def pipeline(self) -> AsyncIterator[psycopg.AsyncPipeline]:
        self.pipelined += 1
        try:
            async with super().pipeline() as pipe:
                yield pipe
        finally:
            self.pipelined -= 1
            if not self.pipelined:
                COUNTS.round_trips += 1


@contextlib.asynccontextmanager
async def pipelined_transaction(conn: Connection) -> AsyncIterator[psycopg.AsyncPipeline]:
    """A transaction sent as a pipeline: BEGIN, the statements the block executes and
    COMMIT go out together and their results come back together once the block is
    left, in one round trip. A cursor is read after the block; reading one inside
    needs ``sync`` first (one round trip more), so a statement that depends on an
    earlier one's result in Python costs a round trip, and what can be written into
    the SQL instead should be. When a statement fails the server skips the rest,
    COMMIT included: the transaction is then rolled back here and the error raised."""
    COUNTS.transactions += 1
    try:
        async with conn.pipeline() as pipe:
            await conn.execute("BEGIN")
            yield pipe
            await conn.execute("COMMIT")
    except BaseException:
        if not conn.broken and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                await conn.rollback()
        raise


@contextlib.asynccontextmanager
async def pipelined_batch(conn: Connection) -> AsyncIterator[psycopg.AsyncPipeline]:
    """Statements sent as one pipeline closed by one Sync, without BEGIN and COMMIT:
    PostgreSQL runs what comes before a Sync as one implicit transaction, committed by
    the Sync, or rolled back whole when a statement fails (the server skips the rest).
    Two statements fewer than ``pipelined_transaction`` (each statement costs the worker
    a send and the server a message), for a block that reads no result before its end:
    a ``sync`` inside would commit there. Anything raised in the block queues a
    ``ROLLBACK`` before the pipeline's Sync, so a block cut short is not committed.

    After a failed statement psycopg may believe a statement prepared that the server
    skipped (its Parse came after the failure), and the next use would fail with
    "prepared statement does not exist": ``DEALLOCATE ALL`` empties both caches (a
    rollback does that for ``pipelined_transaction``)."""
    COUNTS.transactions += 1
    try:
        async with conn.pipeline() as pipe:
            try:
                yield pipe
            except BaseException:
                if not conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        await conn.execute("ROLLBACK")
                raise
    except psycopg.Error:
        if not conn.broken:
            with contextlib.suppress(psycopg.Error):
                await conn.execute("DEALLOCATE ALL")
        raise


async def sync(pipe: psycopg.AsyncPipeline) -> None:
    """Send what the pipeline holds and wait for its results (one round trip)."""
    COUNTS.round_trips += 1
    await pipe.sync()


def text_array(values: Iterable[str | None]) -> str:
    """A ``text[]`` parameter as PostgreSQL's array literal (the SQL casts it,
    ``%(x)s::text[]``): psycopg adapts a list by looking up a dumper for it and escaping
    each element with a regular expression, which cost about 0.1 ms of Python per step
    commit, most of the commit's own. Inside double quotes only ``\\`` and ``"`` need
    a backslash; ``NULL`` unquoted is a null element."""
    return (
        "{"
        + ",".join(
            "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for v in values
        )
        + "}"
    )


def number_array(values: Iterable[int | float | None]) -> str:
    """An ``integer[]``, ``bigint[]`` or ``double precision[]`` parameter as an array
    literal (``text_array``): ``repr`` of an int or a float is exact and PostgreSQL reads
    it back as written (``inf`` and ``nan`` too)."""
    return "{" + ",".join("NULL" if v is None else repr(v) for v in values) + "}"


NOW = "extract(epoch from clock_timestamp())::double precision"
"""The database clock as Unix seconds: every lease time comes from here, so workers on
machines whose clocks disagree still agree on when a lease expires."""

WORK_CHANNEL = "tether_work"
"""``LISTEN``/``NOTIFY`` channel: a notice means "a task may have become claimable"."""

_POOL_OPTIONS = {"pool_min": 1, "pool_max": 10, "pool_timeout": 5.0}


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed store URL: what psycopg connects to, and the pool's own options."""

    conninfo: str
    pool_min: int
    pool_max: int
    pool_timeout: float


def parse_url(url: str) -> Target:
    """``postgresql://user@host:port/db?pool_max=10&pool_timeout=5`` → a ``Target``.

    ``pool_min``, ``pool_max`` and ``pool_timeout`` (seconds to wait for a free
    connection) are tether's; every other query option goes to libpq unchanged."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (a port that is not a number raises here)
    except ValueError as exc:
        raise errors.InvalidInput(
            f"PostgreSQL store URL {migrations.redact(url)} cannot be parsed ({exc}); "
            "use postgresql://user@host:5432/database ([::1] for an IPv6 address)"
        ) from exc
    if parts.scheme not in ("postgresql", "postgres"):
        raise errors.InvalidInput(
            f"not a PostgreSQL store URL: {migrations.redact(url)}; "
            "use postgresql://user@host:5432/database"
        )
    params = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in params if k in _POOL_OPTIONS}
    rest = [(k, v) for k, v in params if k not in _POOL_OPTIONS]
    values: dict[str, float] = {}
    for key, default in _POOL_OPTIONS.items():
        try:
            values[key] = float(ours.get(key, default))
        except ValueError as exc:
            raise errors.InvalidInput(
                f"PostgreSQL store URL {migrations.redact(url)} has {key}={ours[key]!r}: "
                "give a number"
            ) from exc
    if not 0 < values["pool_timeout"] < float("inf"):
        raise errors.InvalidInput(
            f"PostgreSQL store URL {migrations.redact(url)} has pool_timeout="
            f"{ours.get('pool_timeout')}: give a positive number of seconds"
        )
    if values["pool_min"] < 1 or values["pool_max"] < values["pool_min"]:
        raise errors.InvalidInput(
            f"PostgreSQL store URL {migrations.redact(url)}: need 1 <= pool_min <= pool_max"
        )
    conninfo = urllib.parse.urlunsplit(
        parts._replace(scheme="postgresql", query=urllib.parse.urlencode(rest))
    )
    return Target(
        conninfo=conninfo,
        pool_min=int(values["pool_min"]),
        pool_max=int(values["pool_max"]),
        pool_timeout=values["pool_timeout"],
    )


# Refusals no retry can fix: the database or role does not exist, the password or the
# connection options are wrong. The server answered, so it is not "unavailable".
_PERMANENT_SQLSTATES = frozenset({"3D000", "28000", "28P01", "42704"})
_PERMANENT_TEXT = (
    "does not exist",
    "password authentication failed",
    "invalid sslmode",
    "invalid connection option",
    "no pg_hba.conf entry",
    "invalid integer value",
    "invalid value for parameter",
    "sslmode value",
)


def permanent(exc: psycopg.Error) -> bool:
    text = str(exc).lower()
    return exc.sqlstate in _PERMANENT_SQLSTATES or any(t in text for t in _PERMANENT_TEXT)


async def probe(target: Target, url: str) -> None:
    """Connect once before the pool does: a refusal that no retry can fix (a missing
    database or role, a bad ``sslmode``) is reported at once as what it is, instead of
    after the pool's timeout as "unavailable". Anything else is left to the pool."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            target.conninfo, connect_timeout=max(1, round(target.pool_timeout))
        )
    except psycopg.Error as exc:
        if permanent(exc):
            detail = " ".join(str(exc).split())
            raise errors.InvalidInput(
                f"PostgreSQL store {migrations.redact(url)} refused the connection: {detail}; "
                "fix --store (database, user, password, options) or create what is missing"
            ) from exc
        return
    await conn.close()


def make_pool(target: Target, url: str) -> Pool:
    """A closed pool of autocommit connections returning dict rows (``await pool.open()``)."""
    return AsyncConnectionPool(
        target.conninfo,
        connection_class=CountingConnection,
        kwargs={"autocommit": True, "row_factory": dict_row, "cursor_factory": CountingCursor},
        min_size=target.pool_min,
        max_size=target.pool_max,
        timeout=target.pool_timeout,
        reconnect_timeout=3600.0,
        name=f"tether:{migrations.redact(url)}",
        open=False,
    )


# ---- the driver boundary ---------------------------------------------------------


def is_unavailable(exc: psycopg.Error) -> bool:
    return isinstance(
        exc,
        psycopg.OperationalError
        | psycopg.InterfaceError
        | psycopg.errors.SerializationFailure
        | psycopg.errors.DeadlockDetected
        | psycopg.errors.LockNotAvailable
        | psycopg.errors.CannotConnectNow,
    )


def translate(exc: psycopg.Error, url: str) -> errors.TetherError:
    where = migrations.redact(url)
    if is_unavailable(exc):
        err: errors.TetherError = errors.StoreUnavailable(
            f"PostgreSQL store {where} is unavailable ({type(exc).__name__}: "
            f"{str(exc).strip() or 'connection lost'}); tether reconnects and retries with "
            "backoff, check that the server is up and reachable if it persists"
        )
        _log.warning("store.unavailable", extra={"store": where, "error": err.to_dict()})
        return err
    if isinstance(exc, psycopg.IntegrityError):
        return errors.StoreCorrupt(
            f"PostgreSQL store {where} broke an invariant ({exc}); report this with the "
            "statement log of the server"
        )
    return errors.InfraError(f"PostgreSQL store {where} failed: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """Turn any psycopg error raised inside into a tether error, chained with ``from``."""
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc, url) from exc


@contextlib.asynccontextmanager
async def borrowed(pool: Pool, url: str) -> AsyncIterator[Connection]:
    """A pooled connection, with driver errors translated. After a connection-level
    failure the pool's idle connections are checked, so the connections a server
    restart broke are dropped at once instead of failing one caller each."""
    broken = False
    try:
        with translated(url):
            async with pool.connection() as conn:
                yield conn
    except errors.StoreUnavailable:
        broken = True
        raise
    finally:
        if broken:
            with contextlib.suppress(psycopg.Error):
                await pool.check()
