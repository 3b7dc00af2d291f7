"""Steps per second on PostgreSQL with 1, 2 and 4 worker processes (not run by tests).

    .venv/bin/python bench/pg_workers.py [--admin-url postgresql://postgres@127.0.0.1:5432/test]
                                         [--tasks 200] [--steps 10] [--workers 1,2,4]

For each worker count: a fresh database, ``--tasks`` tasks (each in its own session) of
a workflow making ``--steps`` trivial journaled steps, submitted up front; then that
many ``tether worker`` processes start and the clock runs from the first claim to
the last completion (database clock; ``wall s`` adds process start-up). Each step is
one commit (group commit shares transactions between a process's concurrent tasks),
so this measures the store's write path and claiming, not the work. Prints a table;
the database is dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from tether.execution.context import TaskContext
from tether.runtime import Runtime
from tether.store.postgres import PostgresStore
from tether.types import NewTask

ROOT = Path(__file__).resolve().parents[1]
STEPS = int(os.environ.get("TETHER_BENCH_STEPS", "10"))

runtime = Runtime(store=os.environ.get("TETHER_STORE", "sqlite:///unused.db"))


@runtime.workflow(name="bench")
async def bench(ctx: TaskContext, input: str) -> Any:
    total = 0
    for i in range(STEPS):
        total += await ctx.step(f"add-{i}", lambda i=i: i)
    return total


def _url_for(admin_url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


def _admin(admin_url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement.encode())


async def _prepare(url: str, tasks: int) -> None:
    store = PostgresStore(url)
    await store.open()
    try:
        for j in range(tasks):
            await store.submit_task(NewTask(tenant="bench", agent="bench", input=str(j)))
    finally:
        await store.close()


async def _completed(url: str) -> int:
    store = PostgresStore(url)
    await store.open()
    try:
        return len(await store.list_tasks(status="completed", limit=1_000_000))
    finally:
        await store.close()


def _span(url: str) -> tuple[float, float]:
    """From the first claim to the last completion, on the database clock."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT min(started_at) FROM task_runs), (SELECT max(updated_at) FROM tasks)"
        ).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


def measure(
    admin_url: str, workers: int, tasks: int, steps: int, concurrency: int
) -> tuple[float, float]:
    database = f"tether_bench_{uuid.uuid4().hex[:10]}"
    _admin(admin_url, f'CREATE DATABASE "{database}"')
    url = _url_for(admin_url, database)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        asyncio.run(_prepare(url, tasks))
        env = dict(os.environ, TETHER_STORE=url, TETHER_BENCH_STEPS=str(steps))
        started = time.perf_counter()
        for i in range(workers):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tether", "worker", f"{Path(__file__)}:runtime",
                     "--store", url, "--worker-id", f"bench-{i}",
                     "--concurrency", str(concurrency), "--log-text"],
                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        while True:
            done = asyncio.run(_completed(url))
            if done >= tasks:
                break
            for p in procs:
                if p.poll() is not None:
                    raise SystemExit(f"a worker exited with {p.returncode}; rerun to see why")
            time.sleep(0.2)
        wall = time.perf_counter() - started
        first, last = _span(url)
        return tasks * steps / (last - first), wall
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        _admin(admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8, help="tasks per worker process")
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    print(f"{args.tasks} tasks x {args.steps} steps, concurrency {args.concurrency} per worker")
    print(f"{'workers':>8} {'steps/s':>10} {'speed-up':>9} {'wall s':>8}")
    base: float | None = None
    for n in counts:
        rate, wall = measure(args.admin_url, n, args.tasks, args.steps, args.concurrency)
        base = base or rate
        print(f"{n:>8} {rate:>10.0f} {rate / base:>8.2f}x {wall:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
