"""Durable waits with real ``tether worker`` processes, on both engines: waiting tasks
hold no lease and no slot, survive their worker's SIGKILL, wake on a signal (sent
before or after the wait, two at once) or on their time, and time out as asked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
from crash_cluster import ROOT, Cluster

from store_view import call_with_store
from tether import types
from tether.store import Store
from waiting import wait_until

SPEC = f"{Path(__file__).with_name('waits_workload.py').resolve()}:runtime"
# Parked by one --concurrency 1 worker: about 3 s on SQLite, 8 s on PostgreSQL here
# (a claim, a few reads and a park each); several times that on a busy machine.
WAITING_TASKS = 1000


def _submit(url: str, agent: str, inputs: list[str]) -> list[types.TaskRecord]:
    async def go(s: Store) -> list[types.TaskRecord]:
        return [await s.submit_task(types.NewTask("acme", agent, i)) for i in inputs]

    return call_with_store(url, go)


def _task(url: str, task_id: str) -> types.TaskRecord:
    return call_with_store(url, lambda s: s.get_task(task_id))


def _status(url: str, task_id: str, *want: str) -> types.TaskRecord | None:
    task = _task(url, task_id)
    return task if task.status in want else None


def _tether(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_STORE"}
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_worker_with_one_slot_runs_other_tasks_while_many_wait(
    cluster: Cluster, store_url: str
) -> None:
    count = WAITING_TASKS
    waiting = _submit(store_url, "wait_one", [str(i) for i in range(count)])
    if store_url.startswith("postgres"):
        # The test server runs without autovacuum; production's would have analyzed the
        # table after this burst, and without statistics the claim plans badly.
        with psycopg.connect(store_url, autocommit=True) as conn:
            conn.execute("ANALYZE tasks")
    started = time.monotonic()
    # On PostgreSQL the worker polls every 30 s only: the signal must wake it (NOTIFY).
    slow_poll = () if store_url.startswith("sqlite") else ("--poll", "30")
    worker = cluster.start("solo", concurrency=1, spec=SPEC, extra=slow_poll)
    wait_until(
        lambda: (
            call_with_store(store_url, lambda s: s.count_tasks(status="waiting"))
            == {"wait_one": count}
        ),
        what=f"{count} tasks waiting",
        timeout=120,
    )
    parked_in = time.monotonic() - started
    print(f"{count} tasks parked by one --concurrency 1 worker in {parked_in:.1f}s")
    (other,) = _submit(store_url, "quick", ["other"])
    done = wait_until(
        lambda: _status(store_url, other.id, "completed"), what="the other task to run"
    )
    assert done.output == "done other"
    tasks = call_with_store(store_url, lambda s: s.list_tasks(status="waiting", limit=5000))
    assert len(tasks) == count
    assert all(t.lease_owner is None and t.lease_expires_at is None for t in tasks)

    signalled = time.monotonic()
    sent = call_with_store(store_url, lambda s: s.send_signal(waiting[7].id, "go", {"n": 7}))
    assert sent.woke
    finished = wait_until(
        lambda: _status(store_url, waiting[7].id, "completed"), what="the signalled task"
    )
    print(f"signalled task done {time.monotonic() - signalled:.2f}s after the signal")
    assert finished.output == {"n": 7}
    assert call_with_store(store_url, lambda s: s.count_tasks(status="waiting")) == {
        "wait_one": count - 1
    }
    assert worker.alive()


def test_signals_reach_waiting_tasks_across_a_sigkill(cluster: Cluster, store_url: str) -> None:
    early, racing, parked = (
        _submit(store_url, "wait_one", ["early"])
        + _submit(store_url, "wait_two", ["racing"])
        + _submit(store_url, "wait_one", ["parked"])
    )
    timeout, fallback = _submit(store_url, "wait_timeout", ["0.5", "0.5:fallback"])
    # A signal before the task even started is kept for its wait.
    call_with_store(store_url, lambda s: s.send_signal(early.id, "go", "before"))
    first = cluster.start("first", spec=SPEC, lease_ttl=30.0)

    wait_until(lambda: _status(store_url, parked.id, "waiting"), what="the task to wait")
    first.signal(signal.SIGKILL)
    first.wait()
    # Its lease was released when it parked: nothing to expire (the ttl is 30 s).
    assert _task(store_url, parked.id).lease_owner is None
    sent = _tether(
        "signal", parked.id, "go", "--data", '{"ok": true}', "--store", store_url, "--json"
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["woke"] is True

    # Two signals at once, from two threads: each wait consumes one, once.
    barrier = threading.Barrier(2)

    def send(value: str) -> None:
        barrier.wait()
        call_with_store(store_url, lambda s: s.send_signal(racing.id, "go", value))

    senders = [threading.Thread(target=send, args=(v,)) for v in ("a", "b")]
    for t in senders:
        t.start()
    for t in senders:
        t.join()

    cluster.start("second", spec=SPEC)
    for task, want in ((early, "before"), (parked, {"ok": True})):
        got = wait_until(lambda t=task: _status(store_url, t.id, "completed"), what=task.input)
        assert got.output == want
    two = wait_until(lambda: _status(store_url, racing.id, "completed"), what="racing")
    assert sorted(two.output) == ["a", "b"]
    consumed = call_with_store(store_url, lambda s: s.list_signals(racing.id))
    assert sorted(g.consumed_step for g in consumed if g.consumed_step is not None) == [0, 1]
    runs = call_with_store(store_url, lambda s: s.list_runs(parked.id))
    assert [(r.reason, r.worker.split(":")[0]) for r in runs][-1][0] == "wake"
    assert runs[-1].worker.startswith("second/")

    failed = wait_until(lambda: _status(store_url, timeout.id, "failed"), what="the timeout")
    assert failed.error is not None
    assert (failed.error["error_class"], failed.error["retryable"]) == ("SignalTimeout", False)
    ok = wait_until(lambda: _status(store_url, fallback.id, "completed"), what="the default")
    assert ok.output == "fallback"

    refused = _tether("signal", parked.id, "go", "--store", store_url)
    assert refused.returncode != 0 and "completed" in refused.stderr


def test_a_long_sleep_survives_a_worker_restart_and_wakes_when_due(
    cluster: Cluster, store_url: str
) -> None:
    (task,) = _submit(store_url, "nap", ["3"])
    extra = ("--durable-sleep-after", "0.5")
    first = cluster.start("napper", spec=SPEC, extra=extra)
    wait_until(lambda: _status(store_url, task.id, "waiting"), what="the sleep to park")
    first.signal(signal.SIGKILL)
    first.wait()
    cluster.start("napper", spec=SPEC, extra=extra)  # the same worker, restarted
    done = wait_until(lambda: _status(store_url, task.id, "completed"), what="the task to wake")
    late = done.output["woke"] - done.output["due"]
    print(f"woke {late:.3f}s after its due time")
    assert late >= 0, "a durable sleep must never end early"
    assert [r.reason for r in call_with_store(store_url, lambda s: s.list_runs(task.id))] == [
        "start",
        "wake",
    ]
