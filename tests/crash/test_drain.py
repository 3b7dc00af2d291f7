"""Drain and hand-over with real processes.

SIGTERM (or SIGINT): the worker stops claiming, lets the step in flight finish and
commit, releases the task at once (the next worker's run is a ``handover``, not a
``recovery`` after expiry, although the lease here lives 60 s) and exits 0. A step
that outlives the grace period is released mid-step and runs again elsewhere with the
same idempotency key. A second signal exits at once. A SIGKILLed worker restarted
under the same id takes its leases back at once (``resume``).
"""

from __future__ import annotations

import signal
import time

import pytest
import workload
from crash_cluster import Cluster, WorkerProcess, submit_task

from store_view import call_with_store
from tether import types
from tether.execution.worker import worker_id_of
from tether.store import Store
from waiting import wait_until

LONG_LEASE = 120.0


def _submit(url: str, *, calls: int, pause: float) -> types.TaskRecord:
    async def body(s: Store) -> types.TaskRecord:
        session = await s.create_session("acme", "chaos")
        return await submit_task(
            s, tenant="acme", session_id=session.id, tag="drain", j=0, calls=calls, pause=pause
        )

    return call_with_store(url, body)


def _in_tool_step(cluster: Cluster, worker: WorkerProcess) -> workload.Execution | None:
    for e in workload.executions(cluster.effects):
        if e.pid == worker.pid and e.ended is None:
            return e
    return None


def _task(url: str, task_id: str) -> types.TaskRecord:
    return call_with_store(url, lambda s: s.get_task(task_id))


def _finished(url: str, task_id: str) -> types.TaskRecord:
    return wait_until(
        lambda: (t := _task(url, task_id)).status in types.FINAL_STATUSES and t,
        timeout=60,
        what=f"task {task_id} to finish",
    )


def _leases(url: str, worker_id: str) -> list[str]:
    async def body(s: Store) -> list[str]:
        running = await s.list_tasks(status="running", limit=100_000)
        return [t.id for t in running if t.lease_owner and worker_id_of(t.lease_owner) == worker_id]

    return call_with_store(url, body)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_draining_worker_finishes_its_step_and_hands_over_at_once(
    cluster: Cluster, store_url: str, signum: int
) -> None:
    task = _submit(store_url, calls=3, pause=1.0)
    first = cluster.start("first", lease_ttl=LONG_LEASE, concurrency=2)
    wait_until(lambda: _in_tool_step(cluster, first), timeout=60, what="a tool step")
    signalled = time.time()
    first.signal(signum)
    second = cluster.start("second", lease_ttl=LONG_LEASE, concurrency=2)
    assert first.wait(timeout=60) == 0, first.stderr()
    assert _leases(store_url, "first") == []
    assert "drained, leases released" in first.stderr()

    done = _finished(store_url, task.id)
    assert (done.status, done.output) == ("completed", "[drain] task 0 done")
    runs = call_with_store(store_url, lambda s: s.list_runs(task.id))
    # handed over, not recovered after the lease expired
    assert [(worker_id_of(r.worker), r.reason) for r in runs] == [
        ("first", "start"),
        ("second", "handover"),
    ]
    # the drained worker began no tool step after the signal, and finished and
    # committed the one in flight; nothing ran twice
    journal = call_with_store(store_url, lambda s: s.load_journal(task.id))
    executed = workload.executions(cluster.effects)
    mine = [e for e in executed if e.worker == "first"]
    assert mine and all(e.started < signalled and e.ended is not None for e in mine)
    assert all(worker_id_of(journal[e.step].worker or "") == "first" for e in mine)
    assert runs[1].from_step == max(e.step for e in mine) + 1
    assert all(worker_id_of(st.worker or "") == "first" for st in journal[: runs[1].from_step])
    keys = [e.key for e in executed]
    assert sorted(keys) == sorted(set(keys)), "a step ran twice"
    events = call_with_store(store_url, lambda s: s.list_events(task.id))
    released = [e for e in events if e.name == "task.released"]
    assert [e.data["worker"] for e in released] == [journal[0].worker]
    assert released[0].data["from_step"] == runs[1].from_step
    second.signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0, second.stderr()


def test_a_step_past_the_grace_period_is_released_mid_step(
    cluster: Cluster, store_url: str
) -> None:
    task = _submit(store_url, calls=1, pause=4.0)
    first = cluster.start("first", lease_ttl=LONG_LEASE, grace=0.3, concurrency=1)
    in_flight = wait_until(lambda: _in_tool_step(cluster, first), timeout=60, what="a tool step")
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 0, first.stderr()
    assert _leases(store_url, "first") == []
    second = cluster.start("second", lease_ttl=LONG_LEASE, concurrency=1)

    done = _finished(store_url, task.id)
    assert done.status == "completed"
    runs = call_with_store(store_url, lambda s: s.list_runs(task.id))
    assert [(worker_id_of(r.worker), r.reason, r.from_step) for r in runs] == [
        ("first", "start", 0),
        ("second", "handover", in_flight.step),
    ]
    tries = [e for e in workload.executions(cluster.effects) if e.step == in_flight.step]
    assert [(e.key, e.worker) for e in tries] == [
        (in_flight.key, "first"),
        (in_flight.key, "second"),
    ]
    journal = call_with_store(store_url, lambda s: s.load_journal(task.id))
    assert worker_id_of(journal[in_flight.step].worker or "") == "second"
    second.signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0, second.stderr()


def test_a_second_signal_exits_at_once(cluster: Cluster, store_url: str) -> None:
    task = _submit(store_url, calls=1, pause=30.0)
    worker = cluster.start("impatient", lease_ttl=LONG_LEASE, concurrency=1)
    in_flight = wait_until(lambda: _in_tool_step(cluster, worker), timeout=60, what="a tool step")
    worker.signal(signal.SIGTERM)
    wait_until(lambda: "draining" in worker.stderr(), timeout=30, what="the drain to begin")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 130
    # it left without finishing the step or releasing the task: the lease stays until
    # it expires (or the same worker id comes back)
    assert _task(store_url, task.id).status == "running"
    assert _in_tool_step(cluster, worker) == in_flight


def test_a_restarted_worker_takes_its_leases_back_at_once(cluster: Cluster, store_url: str) -> None:
    task = _submit(store_url, calls=3, pause=0.5)
    first = cluster.start("phoenix", lease_ttl=LONG_LEASE, concurrency=1)
    in_flight = wait_until(lambda: _in_tool_step(cluster, first), timeout=60, what="a tool step")
    first.signal(signal.SIGKILL)
    first.wait()
    again = cluster.start("phoenix", lease_ttl=LONG_LEASE, concurrency=1)

    done = _finished(store_url, task.id)
    assert done.status == "completed"
    runs = call_with_store(store_url, lambda s: s.list_runs(task.id))
    assert [(worker_id_of(r.worker), r.reason) for r in runs] == [
        ("phoenix", "start"),
        ("phoenix", "resume"),
    ]
    assert runs[1].from_step == in_flight.step
    # the lease was claimed back under its owner's name; the steps after it are signed
    # by the new incarnation of the same worker id
    journal = call_with_store(store_url, lambda s: s.load_journal(task.id))
    before = {st.worker for st in journal[: in_flight.step]}
    after = {st.worker for st in journal[in_flight.step :]}
    assert len(before) == len(after) == 1 and before != after
    assert {worker_id_of(w or "") for w in before | after} == {"phoenix"}
    tries = [e for e in workload.executions(cluster.effects) if e.step == in_flight.step]
    assert [e.key for e in tries] == [in_flight.key, in_flight.key]
    again.signal(signal.SIGTERM)
    assert again.wait(timeout=60) == 0, again.stderr()
