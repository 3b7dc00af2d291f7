"""Two workers, 20 threads, two turns each, on PostgreSQL, while workers are SIGKILLed
and restarted: every turn completes once, in order, and no thread forks."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph_graphs import HOPS
from langgraph_workers import Workers, assert_one_chain, call, submit, wait_until

from tether import types
from tether.execution.worker import worker_id_of

THREADS = 20
KILLS = 3


@pytest.fixture
def workers(tmp_path: Path, pg_url: str) -> Iterator[Workers]:
    call(pg_url, lambda s: s.schema_version())
    started = Workers(tmp_path, pg_url)
    try:
        yield started
    finally:
        started.stop_all()


def test_twenty_threads_survive_killed_workers_without_forking(
    pg_url: str, workers: Workers
) -> None:
    firsts = [submit(pg_url, "relay", f"question {i}") for i in range(THREADS)]
    seconds = [submit(pg_url, "relay", "and again", t.session_id) for t in firsts]
    live = {w: workers.start(w, "relay", concurrency=4) for w in ("a", "b")}

    def finished() -> int:
        tasks = call(pg_url, lambda s: s.list_tasks(limit=2 * THREADS))
        return sum(t.status in types.FINAL_STATUSES for t in tasks)

    def holding() -> list[str]:
        running = call(pg_url, lambda s: s.list_tasks(status="running", limit=2 * THREADS))
        owners = {worker_id_of(t.lease_owner) for t in running if t.lease_owner}
        return sorted(owners & set(live))

    rng = random.Random(16)
    kills = 0
    while kills < KILLS and finished() < 2 * THREADS:
        # kill a worker while it holds a running graph, at a random moment in it
        victims = wait_until(
            lambda: holding() or finished() == 2 * THREADS,
            "a worker holding a running graph",
            every=0.2,
        )
        if victims is True:
            break
        victim = rng.choice(victims)
        time.sleep(rng.uniform(0.0, 0.3))
        live[victim].signal(signal.SIGKILL)
        live[victim].proc.wait(timeout=30)
        kills += 1
        # half the restarts come back under the same id (taking their leases back at
        # once), half under a new one (the old leases expire first)
        fresh = victim if kills % 2 else f"{victim}{kills}"
        del live[victim]
        live[fresh] = workers.start(fresh, "relay", concurrency=4)

    wait_until(lambda: finished() == 2 * THREADS, "every turn to finish", timeout=180, every=0.5)
    for first, second in zip(firsts, seconds, strict=True):
        one = call(pg_url, lambda s, t=first.id: s.get_task(t))
        two = call(pg_url, lambda s, t=second.id: s.get_task(t))
        runs = call(pg_url, lambda s, t=second.id: s.list_runs(t))
        assert (one.status, one.output) == ("completed", f"turn 1: {HOPS} hops")
        assert (two.status, two.output) == ("completed", f"turn 2: {HOPS} hops"), two.error
        # the second turn started only after the first had finished
        assert runs[0].started_at >= one.updated_at
        # per turn: input, start, begin, the hops, reply
        assert assert_one_chain(pg_url, first.session_id) == 2 * (HOPS + 4)
    assert not [f for f in call(pg_url, lambda s: s.doctor()) if f.check.startswith("langgraph")]
    # the kills hit running graphs: some turns needed more than one run
    assert kills >= 2
    tasks = call(pg_url, lambda s: s.list_tasks(limit=2 * THREADS))
    assert sum(t.runs for t in tasks) > 2 * THREADS
