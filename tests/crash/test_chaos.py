"""Chaos: 100 tasks of 7 steps over many sessions and tenants, three worker processes,
random SIGKILLs and a rolling SIGTERM restart. Every task completes, and the store,
the tool's own record of executions and the model server's record of requests show
that no committed step ever ran again, that a step ran twice only after its worker
lost the task, with the same idempotency key, and that no request or tool call of one
session ever carried another session's messages.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

import pytest
import workload
from crash_cluster import ROOT, Cluster, Model, WorkerProcess, submit_task

from store_view import call_with_store
from tether import types
from tether.execution.worker import worker_id_of
from tether.store import Store
from waiting import wait_until

TENANTS = ("acme", "globex", "initech")
SESSIONS = 25
TASKS_PER_SESSION = 4
CALLS = 3  # tool calls per task: 3 model steps + 3 tool steps + the final answer = 7 steps
WORKERS = 3
KILLS = 4


@dataclass(frozen=True)
class Plan:
    tasks: dict[str, workload.Order]
    """task id -> what it was asked"""
    sessions: dict[str, str]
    """tag -> session id"""
    tenants: dict[str, str]
    """tag -> tenant"""


def _open_sessions(url: str) -> Plan:
    async def body(s: Store) -> Plan:
        sessions: dict[str, str] = {}
        tenants: dict[str, str] = {}
        for i in range(SESSIONS):
            tenant = TENANTS[i % len(TENANTS)]
            tag = f"{tenant}-s{i}"
            session = await s.create_session(tenant, "chaos")
            sessions[tag], tenants[tag] = session.id, tenant
        return Plan({}, sessions, tenants)

    return call_with_store(url, body)


def _submit(url: str, plan: Plan, rng: random.Random, rounds: range) -> None:
    """Each session's tasks of these rounds, interleaved as independent clients would."""

    async def body(s: Store) -> None:
        for j in rounds:
            for tag, sid in plan.sessions.items():
                pause = round(rng.uniform(0.1, 0.5), 3)
                task = await submit_task(
                    s,
                    tenant=plan.tenants[tag],
                    session_id=sid,
                    tag=tag,
                    j=j,
                    calls=CALLS,
                    pause=pause,
                )
                plan.tasks[task.id] = workload.Order(tag, j, CALLS, pause)

    call_with_store(url, body)


@dataclass
class State:
    tasks: list[types.TaskRecord]
    journals: dict[str, list[types.StepRecord]]
    runs: dict[str, list[types.TaskRun]]
    messages: dict[str, list[types.StoredMessage]]


def _state(url: str, plan: Plan) -> State:
    async def body(s: Store) -> State:
        tasks = [await s.get_task(t) for t in plan.tasks]
        journals = {t: await s.load_journal(t) for t in plan.tasks}
        runs = {t: await s.list_runs(t) for t in plan.tasks}
        messages = {sid: await s.list_messages(sid) for sid in plan.sessions.values()}
        return State(tasks, journals, runs, messages)

    return call_with_store(url, body)


def _counts(url: str, plan: Plan) -> dict[str, int]:
    async def body(s: Store) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for t in await s.list_tasks(limit=100_000):
            if t.id in plan.tasks:
                counts[t.status] += 1
        return counts

    return call_with_store(url, body)


def _leases_of(url: str, worker_id: str) -> list[str]:
    async def body(s: Store) -> list[str]:
        running = await s.list_tasks(status="running", limit=100_000)
        return [t.id for t in running if t.lease_owner and worker_id_of(t.lease_owner) == worker_id]

    return call_with_store(url, body)


class Chaos:
    def __init__(self, cluster: Cluster, rng: random.Random) -> None:
        self.cluster = cluster
        self.rng = rng
        self.workers: list[WorkerProcess] = []
        self.killed_pids: set[int] = set()
        self.drained: list[tuple[str, int]] = []
        self.generation = 0
        # how each of the KILLS kills ends: at least one victim is restarted in place
        # (takes its leases back) and at least one is replaced (its leases expire and
        # other workers recover them), so both paths run whatever the seed
        self.in_place = [True, False] + [rng.random() < 0.5 for _ in range(KILLS - 2)]
        rng.shuffle(self.in_place)

    def start(self, worker_id: str) -> WorkerProcess:
        return self.cluster.start(worker_id, lease_ttl=1.5, grace=15.0, concurrency=4)

    def kill_one(self) -> None:
        # the victim holds leases, so a replaced one always leaves work to recover (a
        # worker started a moment ago may not have claimed anything yet)
        holding = wait_until(
            lambda: [w for w in self.workers if _leases_of(self.cluster.store_url, w.worker_id)],
            timeout=60,
            what="a worker holding leases",
        )
        victim = self.rng.choice(holding)
        victim.signal(signal.SIGKILL)
        victim.wait()
        self.killed_pids.add(victim.pid)
        self.workers.remove(victim)
        if self.in_place.pop():
            worker_id = victim.worker_id  # restarted in place: takes its leases back at once
        else:
            self.generation += 1
            worker_id = f"w{self.generation}x"  # replaced: its leases expire and are recovered
        self.workers.append(self.start(worker_id))

    def rolling_restart(self) -> None:
        for old in list(self.workers):
            self.cluster.wait_ready(old)  # a replacement may still be starting
            old.signal(signal.SIGTERM)
            code = old.wait(timeout=60)
            self.drained.append((old.worker_id, code))
            assert code == 0, f"drained worker {old.worker_id} exited {code}:\n{old.stderr()}"
            assert _leases_of(self.cluster.store_url, old.worker_id) == [], (
                f"drained worker {old.worker_id} still holds leases"
            )
            self.workers.remove(old)
            fresh = self.start(old.worker_id)
            self.cluster.wait_ready(fresh)
            self.workers.append(fresh)


@pytest.mark.slow
def test_chaos(cluster: Cluster, model: Model, store_url: str) -> None:
    seed = random.randrange(1_000_000)
    print(f"chaos seed {seed}")
    rng = random.Random(seed)
    plan = _open_sessions(store_url)
    # the last round of tasks is held back until every fault is in, so a slow machine
    # (a long rolling restart) cannot finish the work before the faults are injected
    _submit(store_url, plan, rng, range(TASKS_PER_SESSION - 1))
    first = len(plan.tasks)

    chaos = Chaos(cluster, rng)
    chaos.workers = [chaos.start(f"w{i}") for i in range(WORKERS)]
    # progress points (share of the first rounds completed) at which something bad happens
    kills = sorted(rng.uniform(0.05, 0.6) for _ in range(KILLS))
    restart_at = rng.uniform(0.2, 0.4)
    restarted = held_back = False
    deadline = time.monotonic() + 240
    while True:
        counts = _counts(store_url, plan)
        done = counts["completed"]
        faults_in = not kills and restarted
        if not held_back and (faults_in or done >= first - WORKERS):
            _submit(store_url, plan, rng, range(TASKS_PER_SESSION - 1, TASKS_PER_SESSION))
            held_back = True
            continue
        if held_back and done == len(plan.tasks):
            break
        assert counts["failed"] == 0 and counts["cancelled"] == 0, counts
        assert time.monotonic() < deadline, f"chaos run did not finish: {dict(counts)}"
        if kills and done >= kills[0] * first:
            kills.pop(0)
            chaos.kill_one()
        if not restarted and done >= restart_at * first:
            restarted = True
            chaos.rolling_restart()
        time.sleep(0.1)
    assert len(plan.tasks) == SESSIONS * TASKS_PER_SESSION >= 100
    assert not kills and restarted, "the run finished before every fault was injected"

    for w in chaos.workers:  # a replacement may still be starting: SIGTERM drains only once ready
        cluster.wait_ready(w)
    for w in chaos.workers:
        w.signal(signal.SIGTERM)
    for w in chaos.workers:
        assert w.wait(timeout=60) == 0, w.stderr()
        assert _leases_of(store_url, w.worker_id) == []

    state = _state(store_url, plan)
    _check_outcomes(state, plan)
    _check_session_histories(state, plan)
    execs = workload.executions(cluster.effects)
    _check_tool_executions(execs, state, plan)
    _check_model_requests(model.log.requests(), state, plan)
    runs = [r for rs in state.runs.values() for r in rs]
    reasons = {r.reason for r in runs}
    assert {"recovery", "handover"} <= reasons, reasons
    _check_tasks_show(store_url, state)


# ---- the checks ---------------------------------------------------------------------


def _check_outcomes(state: State, plan: Plan) -> None:
    for task in state.tasks:
        order = plan.tasks[task.id]
        assert task.status == "completed", (task.id, task.status, task.error)
        assert task.output == f"[{order.tag}] task {order.j} done"
        assert task.lease_owner is None
        journal = state.journals[task.id]
        assert [(s.index, s.kind, s.status) for s in journal] == [
            (i, "model" if i % 2 == 0 else "tool", "completed") for i in range(2 * CALLS + 1)
        ]


def _check_session_histories(state: State, plan: Plan) -> None:
    """Each session holds exactly its tasks' messages, in submission order, none twice."""
    for tag, sid in plan.sessions.items():
        roles = []
        for m in state.messages[sid]:
            msg = m.message
            roles.append(msg.role)
            text = msg.content or "".join(c.arguments for c in msg.tool_calls)
            assert tag in text, f"session {tag} holds a message of another session: {msg}"
        per_task = ["user"] + ["assistant", "tool"] * CALLS + ["assistant"]
        assert roles == per_task * TASKS_PER_SESSION, (tag, roles)
        users = [m.message.content for m in state.messages[sid] if m.message.role == "user"]
        assert [workload.parse_input(u).j for u in users] == list(range(TASKS_PER_SESSION))


def _taken_over_between(runs: list[types.TaskRun], start: float, end: float) -> bool:
    return any(r.reason != "start" and start <= r.started_at <= end for r in runs)


def _check_reruns(
    what: str, starts: list[float], step: types.StepRecord, runs: list[types.TaskRun]
) -> None:
    """A step never runs after its commit, and runs again only after its task changed
    hands (recovered, taken back, or handed over) since the previous try began."""
    assert starts, f"{what} never ran"
    starts = sorted(starts)
    assert starts[-1] <= step.finished_at, f"{what} ran again after it was committed"
    for earlier, later in itertools.pairwise(starts):
        assert _taken_over_between(runs, earlier, later), (
            f"{what} ran twice ({earlier:.3f}, {later:.3f}) without its task changing hands: "
            f"{[(r.reason, r.worker, r.started_at) for r in runs]}"
        )


def _check_tool_executions(execs: list[workload.Execution], state: State, plan: Plan) -> None:
    by_key: dict[str, list[workload.Execution]] = defaultdict(list)
    for e in execs:
        by_key[e.key].append(e)
        order = plan.tasks[e.task_id]
        # the tool call carried only its own session's data
        assert (e.tag, e.session_id) == (order.tag, plan.sessions[order.tag]), e
    reran = 0
    for task_id in plan.tasks:
        for step in state.journals[task_id]:
            if step.kind != "tool":
                continue
            key = f"{task_id}:{step.index}"
            runs_of_step = by_key.pop(key, [])
            # every re-run got the same idempotency key and the same arguments
            assert {(e.step, e.n, e.tag) for e in runs_of_step} == {
                (step.index, step.index // 2, plan.tasks[task_id].tag)
            }, runs_of_step
            assert key in (step.output or {}).get("content", ""), step.output
            _check_reruns(
                f"tool step {key}", [e.started for e in runs_of_step], step, state.runs[task_id]
            )
            reran += len(runs_of_step) - 1
    assert not by_key, f"tool executions for steps that are not journaled: {sorted(by_key)}"
    print(f"{reran} tool step(s) ran again after a worker lost its task")


def _check_model_requests(
    requests: list[tuple[float, types.ModelRequest]], state: State, plan: Plan
) -> None:
    by_order = {(o.tag, o.j): task_id for task_id, o in plan.tasks.items()}
    starts: dict[tuple[str, int], list[float]] = defaultdict(list)
    for at, request in requests:
        users = [m for m in request.messages if m.role == "user"]
        orders = [workload.parse_input(m.content) for m in users]
        tag = orders[-1].tag
        # everything the model saw belongs to this session, its tasks in order
        assert [o.tag for o in orders] == [tag] * len(orders), [m.content for m in users]
        assert [o.j for o in orders] == list(range(len(orders)))
        for m in request.messages:
            if m.role in ("assistant", "tool"):
                text = m.content or "".join(c.arguments for c in m.tool_calls)
                assert tag in text, f"a request of session {tag} carried {m}"
        last_user = max(i for i, m in enumerate(request.messages) if m.role == "user")
        index = len(request.messages) - 1 - last_user
        starts[(by_order[(tag, orders[-1].j)], index)].append(at)
    for task_id in plan.tasks:
        for step in state.journals[task_id]:
            if step.kind == "model":
                _check_reruns(
                    f"model step {task_id}:{step.index}",
                    starts.pop((task_id, step.index), []),
                    step,
                    state.runs[task_id],
                )
    assert not starts, f"model requests for steps that are not journaled: {sorted(starts)}"


def _check_tasks_show(url: str, state: State) -> None:
    """``tether tasks show`` lists each recovery: which worker, when, from which step."""
    recovered = next(
        task_id for task_id, runs in state.runs.items() if any(r.reason != "start" for r in runs)
    )
    shown = subprocess.run(
        [sys.executable, "-m", "tether", "tasks", "show", recovered, "--store", url, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data = json.loads(shown.stdout)
    expected = [
        {"run": r.run, "worker": r.worker, "from_step": r.from_step, "reason": r.reason}
        for r in state.runs[recovered]
        if r.reason != "start"
    ]
    assert [
        {k: rec[k] for k in ("run", "worker", "from_step", "reason")} for rec in data["recoveries"]
    ] == expected
    assert all(isinstance(rec["started_at"], float) for rec in data["recoveries"])
