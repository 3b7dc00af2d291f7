"""tether's round trips, statements and transactions per step on either engine, and
its throughput, from the store's own counts (``tether.store.counts``).

    python -m bench.store_counts                                 # both engines
    python -m bench.store_counts --backend postgres --sessions 50 --steps 20

Everything the worker sends is counted: claims, step commits, finishes (a task's claim
and finish are spread over its steps). On PostgreSQL a round trip is a message to the
server and back; on SQLite it is a job handed to the connection thread, and statements
are traced (which slows SQLite a little: its steps/s here are not the bench's figure).
Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from bench import common
from bench.suite_tether import run_tasks
from tether.store import counts, open_store


async def measure(backend: str, sessions: int, steps: int, folder: Path) -> dict[str, object]:
    if backend == "postgres":
        url, counted = common.fresh_pg_database(f"rt_{sessions}_{steps}"), counts.POSTGRES
    else:
        url, counted = f"sqlite:///{folder / f'rt_{sessions}_{steps}.db'}", counts.SQLITE
        counted.trace = True
    store = open_store(url)
    await store.open()
    try:
        before = counted.snapshot()
        elapsed, taken = await run_tasks(store, sessions, steps, sessions)
        after = counted.snapshot()
    finally:
        await store.close()
    return {
        "backend": backend,
        "sessions": sessions,
        "steps": taken,
        "steps_per_s": round(taken / elapsed, 1),
        "round_trips_per_step": round((after.round_trips - before.round_trips) / taken, 2),
        "statements_per_step": round((after.statements - before.statements) / taken, 2),
        "transactions_per_step": round((after.transactions - before.transactions) / taken, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), action="append")
    parser.add_argument("--sessions", type=int, action="append")
    parser.add_argument("--steps", type=int, default=0)
    args = parser.parse_args()
    runs = [(n, args.steps or 20) for n in args.sessions] if args.sessions else [(1, 40), (50, 10)]
    with tempfile.TemporaryDirectory(prefix="tether-counts-") as folder:
        for backend in args.backend or ["sqlite", "postgres"]:
            for sessions, steps in runs:
                result = asyncio.run(measure(backend, sessions, steps, Path(folder)))
                print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
