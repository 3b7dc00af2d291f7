"""tether's round trips, statements and transactions per step on either engine, and
its throughput, from the store's own counts (``tether.store.counts``).

    python -m bench.store_counts                                 # both engines
    python -m bench.store_counts --backend postgres --sessions 50 --steps 20

Everything the worker sends is counted: claims, step commits, finishes (a task's claim
and finish are spread over its steps). CPU per step is this process's
(``time.process_time``) and, on PostgreSQL, the server backends' serving the bench's
database (user + system time from ``/proc/<pid>/stat``; None when the server is not
on this machine). On PostgreSQL a round trip is a message to the
server and back; on SQLite it is a job handed to the connection thread, and statements
are traced (which slows SQLite a little: its steps/s here are not the bench's figure).
Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import urllib.parse
from pathlib import Path

import psycopg

from bench import common
from bench.suite_tether import run_tasks
from tether.store import counts, open_store


def backend_cpu(url: str) -> dict[int, float] | None:
    """CPU seconds used so far by each server backend connected to ``url``'s database."""
    name = urllib.parse.urlsplit(url).path.lstrip("/")
    with psycopg.connect(common.PG_ADMIN, autocommit=True) as conn:
        pids = [
            int(r[0])
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchall()
        ]
    found: dict[int, float] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


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
        server = backend_cpu(url) if backend == "postgres" else None
        cpu = time.process_time()
        elapsed, taken = await run_tasks(store, sessions, steps, sessions)
        cpu = time.process_time() - cpu
        server_after = backend_cpu(url) if server is not None else None
        after = counted.snapshot()
    finally:
        await store.close()
    server_ms = (
        None
        if server is None or server_after is None
        else round(1000 * sum(t - server.get(p, 0.0) for p, t in server_after.items()) / taken, 3)
    )
    return {
        "backend": backend,
        "sessions": sessions,
        "steps": taken,
        "steps_per_s": round(taken / elapsed, 1),
        "round_trips_per_step": round((after.round_trips - before.round_trips) / taken, 2),
        "statements_per_step": round((after.statements - before.statements) / taken, 2),
        "transactions_per_step": round((after.transactions - before.transactions) / taken, 2),
        "cpu_ms_per_step": round(1000 * cpu / taken, 3),
        "server_cpu_ms_per_step": server_ms,
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
