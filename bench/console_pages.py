"""Server time of the console's pages on a large store: 100,000 tasks over 3 tenants and
a task with 10,000 journaled steps.

    .venv/bin/python -m bench.console_pages [--store URL] [--tasks N] [--steps N]

Tasks and sessions are bulk-inserted with the engine's driver (how they were written does
not change how fast they are read); the big task's steps are committed through the
store's own ``commit_steps`` in batches, so they carry real payloads and message
references. On PostgreSQL the fill ends with ``ANALYZE``, as autovacuum would do; SQLite
runs without statistics, as tether's stores do. Each page is then requested through the
real application in-process (``httpx.ASGITransport``: the whole FastAPI stack, no
socket), signed in with an operator key, and timed; the median and the worst of
``--repeat`` requests are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tether import types
from tether.server import keys
from tether.server.app import create_app
from tether.server.config import ServerConfig
from tether.server.state import ServerState
from tether.store import open_store
from tether.store.base import Store

TENANTS = ("acme", "globex", "initech")
AGENTS = ("research", "billing", "support", "triage")
STATUSES = ("completed", "completed", "completed", "failed", "cancelled", "queued")


def _task_rows(n: int, now: float) -> list[tuple[Any, ...]]:
    rows = []
    for i in range(n):
        status = STATUSES[i % len(STATUSES)]
        error = (
            json.dumps({"type": "tool", "error_class": "ToolFailed", "retryable": False,
                        "message": f"tool failed on task {i}"})
            if status == "failed" else None
        )  # fmt: skip
        rows.append(
            (f"t{i:08d}", TENANTS[i % 3], f"s{i // 10:07d}", AGENTS[i % 4], status,
             f"question number {i}", error, now - (n - i) * 0.5, now - (n - i) * 0.5)
        )  # fmt: skip
    return rows


def _sessions(n: int, now: float) -> list[tuple[Any, ...]]:
    return [
        (f"s{j:07d}", TENANTS[(j * 10) % 3], AGENTS[(j * 10) % 4], now, now)
        for j in range((n + 9) // 10)
    ]


_INSERT_SESSION = "INSERT INTO sessions (id, tenant, agent, created_at, updated_at) VALUES "
_INSERT_TASK = (
    "INSERT INTO tasks (id, tenant, session_id, agent, status, input, error, created_at,"
    " updated_at) VALUES "
)


def fill_sqlite(path: str, n: int, now: float) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(_INSERT_SESSION + "(?, ?, ?, ?, ?)", _sessions(n, now))
        conn.executemany(_INSERT_TASK + "(?, ?, ?, ?, ?, ?, ?, ?, ?)", _task_rows(n, now))
    conn.close()


def fill_postgres(url: str, n: int, now: float) -> None:
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(_INSERT_SESSION + "(%s, %s, %s, %s, %s)", _sessions(n, now))
        cur.executemany(_INSERT_TASK + "(%s, %s, %s, %s, %s, %s, %s, %s, %s)", _task_rows(n, now))


def analyze_postgres(url: str) -> None:
    """Statistics, as autovacuum gathers them soon after a bulk load: without them the
    planner takes the freshly filled tables for empty ones (the overview's funnel then
    runs a nested loop over every step, about 2 s instead of 30 ms)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


async def big_task(store: Store, steps: int) -> types.TaskRecord:
    """A task with ``steps`` committed steps, each appending one message."""
    task = await store.submit_task(types.NewTask("acme", "research", "a long job"))
    claim = await store.claim_task("bench-worker", lease_ttl=3600, task_id=task.id)
    assert claim is not None
    batch = 500
    for start in range(0, steps, batch):
        commits = []
        for i in range(start, min(start + batch, steps)):
            t0 = time.time()
            step = types.StepRecord(
                task_id=task.id, index=i, kind="tool" if i % 2 else "model",
                name="lookup" if i % 2 else "model", fingerprint=f"fp{i}", status="completed",
                output={"role": "tool", "content": f"result {i} " + "x" * 300},
                started_at=t0, finished_at=t0 + 0.01, worker="bench-worker",
            )  # fmt: skip
            message = types.Message(role="tool", content=f"result {i} " + "x" * 300)
            commits.append(types.StepCommit(lease=claim.lease, step=step, messages=(message,)))
        for result in await store.commit_steps(commits):
            assert not isinstance(result, BaseException), result
    return task


async def measure(url: str, n_tasks: int, n_steps: int, repeat: int) -> dict[str, Any]:
    now = time.time()
    store = open_store(url)
    await store.open()
    try:
        if url.startswith("sqlite:"):
            fill_sqlite(url.removeprefix("sqlite:///").split("?")[0], n_tasks, now)
        else:
            fill_postgres(url, n_tasks, now)
        task = await big_task(store, n_steps)
        if not url.startswith("sqlite:"):
            analyze_postgres(url)
        made = keys.new_key()
        await store.create_api_key("*", made.key_hash, prefix=made.prefix, operator=True)
        state = ServerState(store=store, agents=frozenset(AGENTS), config=ServerConfig(url))
        app = create_app(state)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            signed = await client.post("/console/login", data={"key": made.key})
            assert signed.status_code == 303, signed.text
            old = now - n_tasks * 0.25
            pages = {
                "task page, first 100 of 10,000 steps": f"/console/tasks/{task.id}",
                "task page, steps 5000-5099": f"/console/tasks/{task.id}?after=4999",
                "step value (full output)": f"/console/tasks/{task.id}/steps/9999",
                "tasks, newest page": "/console/tasks",
                "tasks, page deep in the past": "/console/tasks?before=1000",
                "tasks, agent+status filter": "/console/tasks?agent=billing&status=failed",
                "tasks, tenant+since window": f"/console/tasks?tenant=globex&since={old:.0f}",
                "tasks, live rows fragment": "/console/tasks/rows",
                "session page": f"/console/sessions/{task.session_id}",
                "overview (last hour)": "/console/",
            }
            out: dict[str, Any] = {}
            for label, path in pages.items():
                times = []
                for _ in range(repeat):
                    began = time.perf_counter()
                    answer = await client.get(path)
                    times.append((time.perf_counter() - began) * 1000)
                    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
                out[label] = {"median_ms": round(statistics.median(times), 1),
                              "max_ms": round(max(times), 1)}  # fmt: skip
            return out
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", help="a fresh store URL (default: a temporary SQLite file)")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store or f"sqlite:///{Path(tmp) / 'console-bench.db'}"
        began = time.time()
        result = asyncio.run(measure(url, args.tasks, args.steps, args.repeat))
        where = url.split("?")[0].split("@")[-1]
        print(f"store {where}: {args.tasks} tasks, a task of {args.steps} steps "
              f"(filled and measured in {time.time() - began:.0f} s)")  # fmt: skip
        width = max(len(k) for k in result)
        for label, figures in result.items():
            print(f"  {label:<{width}}  median {figures['median_ms']:>7.1f} ms"
                  f"   max {figures['max_ms']:>7.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
