"""Ordering: many tasks submitted concurrently to one session run one at a time, in
submission order, never interleaved, across three worker processes with room for many
tasks each, and across a worker killed midway.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import threading

import workload
from crash_cluster import Cluster, Model, submit_task

from store_view import call_with_store
from tether import types
from tether.store import Store, open_store
from waiting import wait_until

SUBMITTERS = 4
PER_SUBMITTER = 4


def _submit_concurrently(url: str, session_id: str) -> None:
    barrier = threading.Barrier(SUBMITTERS)
    failures: list[BaseException] = []

    def submitter(n: int) -> None:
        async def main() -> None:
            store = open_store(url)
            await store.open()
            try:
                barrier.wait()
                for i in range(PER_SUBMITTER):
                    await submit_task(
                        store,
                        tenant="acme",
                        session_id=session_id,
                        tag="order",
                        j=n * 100 + i,
                        calls=1,
                        pause=0.15,
                    )
            finally:
                await store.close()

        try:
            asyncio.run(main())
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(SUBMITTERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures


def test_tasks_of_one_session_run_one_at_a_time_in_submission_order(
    cluster: Cluster, model: Model, store_url: str
) -> None:
    session = call_with_store(store_url, lambda s: s.create_session("acme", "chaos"))
    workers = [cluster.start(f"o{i}", lease_ttl=1.5, concurrency=4) for i in range(3)]
    _submit_concurrently(store_url, session.id)
    total = SUBMITTERS * PER_SUBMITTER

    async def listed(s: Store) -> list[types.TaskRecord]:
        return list(reversed(await s.list_tasks(session_id=session.id)))

    # kill a worker once a few tasks are through; its task resumes elsewhere, in place
    wait_until(
        lambda: sum(t.status == "completed" for t in call_with_store(store_url, listed)) >= 4,
        timeout=60,
        what="the first tasks",
    )
    workers[0].signal(signal.SIGKILL)
    tasks = wait_until(
        lambda: (
            (ts := call_with_store(store_url, listed))
            and all(t.status == "completed" for t in ts)
            and ts
        ),
        timeout=120,
        what="every task",
    )
    assert len(tasks) == total
    order = [t.id for t in tasks]  # submission order: the store's position

    # one at a time: each task started only after the one before it had finished
    async def history(s: Store) -> tuple[dict[str, list[types.TaskRun]], dict[str, float]]:
        runs = {t: await s.list_runs(t) for t in order}
        finished = {}
        for t in order:
            events = await s.list_events(t)
            finished[t] = next(e.at for e in events if e.name == "task.completed")
        return runs, finished

    runs, finished = call_with_store(store_url, history)
    for before, after in itertools.pairwise(order):
        assert runs[after][0].started_at >= finished[before], "tasks of one session overlapped"

    # the tool ran for the tasks in submission order, never two tasks' steps at once
    execs = workload.executions(cluster.effects)
    ran = [e.task_id for e in execs]
    assert sorted(set(ran), key=ran.index) == order
    ended = [e for e in execs if e.ended is not None]
    for a, b in itertools.pairwise(ended):
        if a.task_id != b.task_id:
            assert a.ended is not None and b.started >= a.ended, "two tasks' tools overlapped"

    # the session reads as the tasks' turns, whole, one after another
    messages = call_with_store(store_url, lambda s: s.list_messages(session.id))
    per_task = ["user", "assistant", "tool", "assistant"]
    assert [m.message.role for m in messages] == per_task * total
    assert [m.task_id for m in messages] == [t for t in order for _ in per_task]
    users = [m.message.content for m in messages if m.message.role == "user"]
    assert users == [t.input for t in tasks]

    # each model request saw exactly the turns before it, in order
    position = {workload.parse_input(t.input).j: n for n, t in enumerate(tasks)}
    for _, request in model.log.requests():
        seen = [workload.parse_input(m.content).j for m in request.messages if m.role == "user"]
        assert [position[j] for j in seen] == list(range(len(seen)))
    for w in workers[1:]:
        w.signal(signal.SIGTERM)
        assert w.wait(timeout=60) == 0, w.stderr()
