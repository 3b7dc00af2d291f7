"""Fencing with real processes: a worker paused (SIGSTOP) past its lease, while another
worker takes the task over and finishes it, then resumed (SIGCONT). Whatever the
stale worker then tries, the store accepts none of it, and the stale worker gives the
task up and carries on serving.
"""

from __future__ import annotations

import functools
import signal
import time

import workload
from crash_cluster import Cluster, WorkerProcess, submit_task

from store_view import call_with_store
from tether import types
from tether.store import Store
from waiting import wait_until

PAUSE = 1.0
CALLS = 3


async def _snapshot(s: Store, task_id: str) -> tuple[object, ...]:
    task = await s.get_task(task_id)
    return (
        task,
        await s.get_session(task.session_id),
        await s.list_messages(task.session_id),
        await s.load_journal(task_id),
        await s.list_events(task_id),
        await s.list_attempts(task_id),
        await s.list_runs(task_id),
    )


def _in_tool_step(cluster: Cluster, worker: WorkerProcess, after: int) -> workload.Execution | None:
    """The execution ``worker`` has begun and not finished, past the first ``after``."""
    for e in workload.executions(cluster.effects)[after:]:
        if e.pid == worker.pid and e.ended is None:
            return e
    return None


def _runs(url: str, task_id: str) -> list[types.TaskRun]:
    return call_with_store(url, lambda s: s.list_runs(task_id))


def test_a_paused_worker_past_its_lease_writes_nothing(cluster: Cluster, store_url: str) -> None:
    async def submit(s: Store) -> types.TaskRecord:
        session = await s.create_session("acme", "chaos")
        return await submit_task(
            s, tenant="acme", session_id=session.id, tag="fence", j=0, calls=CALLS, pause=PAUSE
        )

    task = call_with_store(store_url, submit)
    stale = cluster.start("stale", lease_ttl=1.5, concurrency=1)
    seen = 0
    fresh: WorkerProcess | None = None
    # Pause the stale worker inside a tool step. If it happened to stop while holding the
    # store's write lock, nobody can take over: let it run on a little and pause it again.
    while True:
        paused_in = wait_until(
            functools.partial(_in_tool_step, cluster, stale, seen),
            timeout=60,
            what="a tool step on 'stale'",
        )
        stale.signal(signal.SIGSTOP)
        if fresh is None:
            fresh = cluster.start("fresh", lease_ttl=1.5, concurrency=1)
        try:
            wait_until(
                lambda: any(r.worker.startswith("fresh/") for r in _runs(store_url, task.id)),
                timeout=15,
                what="'fresh' to take the task over",
            )
            break
        except AssertionError:
            seen = len(workload.executions(cluster.effects))
            stale.signal(signal.SIGCONT)
    stale_run, fresh_run = _runs(store_url, task.id)[-2:]
    assert stale_run.worker.startswith("stale/") and fresh_run.reason == "recovery"
    assert fresh_run.epoch > stale_run.epoch

    wait_until(
        lambda: call_with_store(store_url, lambda s: s.get_task(task.id)).status == "completed",
        timeout=60,
        what="'fresh' to finish the task",
    )
    before = call_with_store(store_url, lambda s: _snapshot(s, task.id))
    stale_steps = [st.index for st in before[3] if st.worker and st.worker.startswith("stale/")]  # type: ignore[index]
    assert stale_steps == list(range(fresh_run.from_step))

    stale.signal(signal.SIGCONT)
    wait_until(
        lambda: '"event": "task.abandoned"' in stale.stderr(),
        timeout=30,
        what="the stale worker to notice it lost the task",
    )
    # the tool that was paused finishes in its thread; give any write that follows it time
    wait_until(
        lambda: all(e.ended is not None for e in workload.executions(cluster.effects)),
        timeout=30,
        what="the paused tool to finish",
    )
    time.sleep(1.0)
    after = call_with_store(store_url, lambda s: _snapshot(s, task.id))
    assert after == before, "a write from the stale worker was accepted"

    # the stale worker abandoned the task, not its job: it still serves, and drains cleanly
    assert stale.alive()
    done = call_with_store(store_url, lambda s: s.get_task(task.id))
    assert (done.status, done.output) == ("completed", "[fence] task 0 done")
    reran = [e for e in workload.executions(cluster.effects) if e.step == paused_in.step]
    assert {e.key for e in reran} == {paused_in.key} and len(reran) >= 2
    for w in (stale, fresh):
        w.signal(signal.SIGTERM)
        assert w.wait(timeout=60) == 0, w.stderr()
