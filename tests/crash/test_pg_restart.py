"""A PostgreSQL restart in the middle of a run: workers ride it out.

Two real ``tether worker`` processes run the crash workload against a fresh database
of the machine's server; while tool steps are in flight the test restarts the server
itself (``pg_ctlcluster … restart``, we are root here). Every connection breaks; the
workers reconnect with backoff, in-flight commits are retried (idempotently), and
every task completes with nothing committed lost. The outage is logged as a
``store.unavailable`` record classified ``infra``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import workload

import pg
from tether import errors, types
from tether.store.postgres import PostgresStore
from waiting import wait_until

CALLS = 4
TASKS_PER_SESSION = 2
SESSIONS = 3


@pytest.fixture
def store_url() -> Iterator[str]:
    """Overrides the crash suite's engine fixture: this test is PostgreSQL's alone."""
    url = pg.fresh_url()
    try:
        yield url
    finally:
        pg.drop_url(url)


def restart_postgres() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def snapshot(url: str) -> dict[str, list[types.StepRecord]]:
    """Every task's journal, read through a store of its own; retried while the server is
    down (the test's own view must ride out the restart too)."""

    async def read() -> dict[str, list[types.StepRecord]]:
        store = PostgresStore(url)
        await store.open()
        try:
            tasks = await store.list_tasks(limit=1000)
            return {t.id: await store.load_journal(t.id) for t in tasks}
        finally:
            await store.close()

    deadline = time.monotonic() + 60
    while True:
        try:
            return asyncio.run(read())
        except errors.StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def tasks(url: str) -> list[types.TaskRecord]:
    async def read() -> list[types.TaskRecord]:
        store = PostgresStore(url)
        await store.open()
        try:
            return await store.list_tasks(limit=1000)
        finally:
            await store.close()

    try:
        return asyncio.run(read())
    except errors.StoreUnavailable:
        return []


def submit_all(url: str) -> None:
    async def write() -> None:
        store = PostgresStore(url)
        await store.open()
        try:
            for s in range(SESSIONS):
                session = await store.create_session("acme", "chaos")
                for j in range(TASKS_PER_SESSION):
                    await store.submit_task(
                        types.NewTask(
                            tenant="acme",
                            agent="chaos",
                            input=workload.task_input(f"s{s}", j, CALLS, 0.4),
                            session_id=session.id,
                        )
                    )
        finally:
            await store.close()

    asyncio.run(write())


@pytest.mark.slow
def test_workers_ride_out_a_postgres_restart(cluster: Any, store_url: str) -> None:
    """``cluster`` is the crash suite's (``tests/crash/conftest.py``), on this database."""
    workers = [cluster.start(f"pg-{i}", lease_ttl=3.0, concurrency=2) for i in range(2)]
    for w in workers:
        cluster.wait_ready(w)
    submit_all(store_url)

    # restart while some steps are committed and tool steps are in flight
    wait_until(
        lambda: sum(len(j) for j in snapshot(store_url).values()) >= 4,
        what="the first commits",
        timeout=40,
    )
    before = snapshot(store_url)
    restart_postgres()

    total = SESSIONS * TASKS_PER_SESSION
    wait_until(
        lambda: [t.status for t in tasks(store_url)].count("completed") == total,
        what="every task to complete after the restart",
        timeout=40,
    )
    for w in workers:
        assert w.alive(), f"worker {w.worker_id} died:\n{w.stderr()}"

    after = snapshot(store_url)
    for task in tasks(store_url):
        assert task.status == "completed", task
        order = workload.parse_input(task.input)
        assert task.output == f"[{order.tag}] task {order.j} done"
        journal = after[task.id]
        # a model step per tool call, a tool step per call, and the final answer
        assert [s.index for s in journal] == list(range(2 * CALLS + 1))
        assert all(s.status == "completed" for s in journal)
        # nothing committed before the restart was lost or rewritten
        assert journal[: len(before[task.id])] == before[task.id]

    # every journaled tool step really ran; an in-flight one at most twice (retried)
    runs: dict[str, int] = {}
    for e in workload.executions(cluster.effects):
        runs[e.key] = runs.get(e.key, 0) + 1
    tool_keys = {f"{t}:{s.index}" for t, j in after.items() for s in j if s.kind == "tool"}
    assert tool_keys <= set(runs)
    assert max(runs.values()) <= 2, runs

    # the outage was logged, classified infra and retryable
    records = []
    for w in workers:
        for line in w.stderr().splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
    outages = [r for r in records if r.get("event") == "store.unavailable"]
    assert outages, "no store.unavailable record in the workers' logs"
    assert all(r["error"]["type"] == "infra" and r["error"]["retryable"] for r in outages)
    assert {r["error"]["error_class"] for r in outages} == {"StoreUnavailable"}

    for w in workers:  # and they still drain cleanly
        w.signal(signal.SIGTERM)
    assert [w.wait(60) for w in workers] == [0, 0]
