"""What a store sent to its database, counted in this process, for the bench's
"round trips and statements per step" (``bench/store_counts.py``).

PostgreSQL (``postgres_connection``): a round trip is one ``execute``, one pipelined
``executemany``, or one BEGIN/COMMIT/SAVEPOINT/RELEASE. SQLite (``sqlite_connection``)
has no network: its round trip is one job handed to the connection thread (a thread
hop), and its statements are counted only once ``SQLITE.trace`` is set before the
store opens (a trace callback per statement costs time)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Counts:
    statements: int = 0
    round_trips: int = 0
    transactions: int = 0
    trace: bool = False
    """SQLite only: count statements (install a trace callback on new connections)."""

    def snapshot(self) -> Counts:
        return Counts(self.statements, self.round_trips, self.transactions, self.trace)


POSTGRES = Counts()
SQLITE = Counts()
