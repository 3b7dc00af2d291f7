"""A worker always ends: real `tether worker` processes whose sync tools never return.

SIGTERM drains a worker whose tool blocks for good (in ``time.sleep``, in a blocking
socket read): it releases the task (handed over at once to the next worker, which
finishes it) and exits 0, although the tool's thread is still blocked; a second
signal ends it at once. A worker whose every sync tool thread is abandoned (timed-out
tools that never return) stops claiming, says why, and drains itself. A worker past
``--max-memory`` drains itself the same way and exits 0.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ending_tools
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tether import Runtime, types
from tether.execution.worker import worker_id_of
from tether.store.base import Claim, Store
from waiting import wait_until

HERE = Path(__file__).resolve().parent
TOOLS = HERE / "ending_tools.py"
SPECS = [f"{TOOLS}:{name}" for name in ("sleeper", "reader", "leaker", "quick", "hog", "gated")]
MiB = 1024 * 1024
LONG_LEASE = 120.0


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line.startswith("{")]


@dataclass
class Setup:
    tmp: Path
    store: str
    marks: Path
    runtime: Runtime
    started: list[Worker]

    def start(self, name: str, *args: str) -> Worker:
        log = self.tmp / f"{name}.{len(self.started)}.log"
        env = {
            **os.environ,
            "TETHER_TEST_MARKS": str(self.marks),
            "TETHER_TEST_WORKER": name,
            "TETHER_TEST_GROW": str(256 * MiB),
            "OTEL_SDK_DISABLED": "true",
        }
        env.pop("TETHER_STORE", None)
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tether", "worker", *SPECS, "--store", self.store,
                 "--worker-id", name, "--lease-ttl", str(LONG_LEASE), "--poll", "0.05",
                 "--concurrency", "1", *args],
                stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, env=env,
            )  # fmt: skip
        worker = Worker(name, proc, log)
        self.started.append(worker)
        return worker

    def entered(self, tool: str, worker: Worker) -> Path:
        mark = self.marks / f"{tool}.{worker.proc.pid}"
        return wait_until(
            lambda: mark.exists() and mark, what=f"{worker.name} to enter {tool}", timeout=60
        )

    def task(self, task_id: str) -> types.TaskRecord:
        return self.runtime.get_task(task_id)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    marks = tmp_path / "marks"
    marks.mkdir()
    store = f"sqlite:///{tmp_path / 'ends.db'}"
    runtime = Runtime(store=store)
    for workflow in (ending_tools.sleeper, ending_tools.reader, ending_tools.leaker):
        runtime.register(workflow, spec=f"{TOOLS}:{workflow.name}")
    runtime.register(ending_tools.quick, spec=f"{TOOLS}:quick")
    runtime.register(ending_tools.hog, spec=f"{TOOLS}:hog")
    runtime.register(ending_tools.gated, spec=f"{TOOLS}:gated")
    s = Setup(tmp_path, store, marks, runtime, [])
    try:
        yield s
    finally:
        for w in s.started:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
        runtime.close()


@pytest.mark.parametrize("tool", ["sleep", "read"])
def test_sigterm_ends_a_worker_whose_sync_tool_never_returns(setup: Setup, tool: str) -> None:
    task = setup.runtime.submit(tool, "go")
    stuck = setup.start("stuck", "--grace", "0.5")
    setup.entered(tool, stuck)
    stuck.proc.send_signal(signal.SIGTERM)
    # 0.1.0 drained, printed so, and then waited for the thread for good
    assert stuck.proc.wait(timeout=60) == 0, stuck.text()
    assert "drained, leases released" in stuck.text()
    held = setup.task(task.id)
    assert held.status == "queued" and held.lease_owner is None, held

    # the stuck step is handed over at once (the lease would live two minutes)
    rescuer = setup.start("rescuer")
    wait_until(
        lambda: setup.task(task.id).status in types.FINAL_STATUSES, what="the rescue", timeout=60
    )
    done = setup.task(task.id)
    assert (done.status, done.output) == ("completed", "slept" if tool == "sleep" else "read")
    runs = setup.runtime.run_on_store(lambda s: s.list_runs(task.id))
    assert [(worker_id_of(r.worker), r.reason, r.from_step) for r in runs] == [
        ("stuck", "start", 0),
        ("rescuer", "handover", 0),
    ]
    events = setup.runtime.run_on_store(lambda s: s.list_events(task.id))
    released = [e.data for e in events if e.name == "task.released"]
    assert [(worker_id_of(d["worker"]), d["reason"]) for d in released] == [("stuck", "drain")]
    rescuer.proc.send_signal(signal.SIGTERM)
    assert rescuer.proc.wait(timeout=60) == 0, rescuer.text()


def test_a_second_signal_ends_a_stuck_drain_at_once(setup: Setup) -> None:
    task = setup.runtime.submit("sleep", "go")
    stuck = setup.start("stuck", "--grace", "600")
    setup.entered("sleep", stuck)
    stuck.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "draining" in stuck.text(), what="the drain to begin")
    stuck.proc.send_signal(signal.SIGINT)
    assert stuck.proc.wait(timeout=60) == 130, stuck.text()
    assert "second signal, exiting now" in stuck.text()
    assert setup.task(task.id).status == "running"  # left as it was: its lease expires


def test_a_worker_whose_sync_threads_are_all_abandoned_stops_claiming_and_drains(
    setup: Setup,
) -> None:
    leaked = setup.runtime.submit("leak", "go")
    waiting = setup.runtime.submit("fast", "go")
    worker = setup.start("leaky", "--sync-threads", "1", "--grace", "5")
    assert worker.proc.wait(timeout=60) == 0, worker.text()
    failed = setup.task(leaked.id)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["error_class"] == "Timeout"
    # it never claimed the next task: its only thread is still blocked in ``leak``
    assert setup.task(waiting.id).status == "queued"
    assert not list(setup.marks.glob("fast.*"))
    logged = {line["event"]: line for line in worker.json_lines()}
    exhausted = logged["worker.threads_exhausted"]
    assert (exhausted["abandoned"], exhausted["size"]) == (1, 1)
    assert logged["worker.draining"]["reason"] == "threads_exhausted"
    assert "threads exhausted, draining" in worker.text()
    assert "1 released call(s) still running" in worker.text()
    # a fresh worker takes the queued task
    fresh = setup.start("fresh")
    wait_until(lambda: setup.task(waiting.id).status == "completed", what="the next task")
    fresh.proc.send_signal(signal.SIGTERM)
    assert fresh.proc.wait(timeout=60) == 0, fresh.text()


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        body = r.read().decode()
    return {
        s.name + "".join(f"[{k}={v}]" for k, v in sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def test_a_worker_past_max_memory_finishes_its_step_hands_over_and_exits_0(
    setup: Setup,
) -> None:
    limit = 200 * MiB
    task = setup.runtime.submit("hog", "go")
    hog = setup.start("hog", "--max-memory", "200M", "--metrics-port", "0")
    setup.entered("linger", hog)  # step 0 kept 256 MiB; step 1 is in flight
    wait_until(lambda: "memory limit, draining" in hog.text(), what="the memory guard")
    found = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", hog.text())
    assert found, hog.text()
    metrics = _scrape(int(found.group(1)))
    assert metrics["tether_worker_memory_limit_bytes"] == limit
    assert metrics["tether_worker_memory_bytes"] >= limit
    assert metrics["tether_worker_draining[reason=memory_limit]"] == 1
    assert metrics["tether_worker_draining[reason=signal]"] == 0
    (setup.marks / "linger.open").touch()  # the step in flight finishes and commits

    assert hog.proc.wait(timeout=60) == 0, hog.text()
    logged = {line["event"]: line for line in hog.json_lines()}
    over = logged["worker.memory_limit"]
    assert over["max_memory_bytes"] == limit and over["rss_bytes"] >= limit
    events = setup.runtime.run_on_store(lambda s: s.list_events(task.id))
    released = [e.data for e in events if e.name == "task.released"]
    assert [(d["reason"], d["from_step"]) for d in released] == [("memory_limit", 2)]
    journal = setup.runtime.run_on_store(lambda s: s.load_journal(task.id))
    assert [worker_id_of(st.worker or "") for st in journal] == ["hog", "hog"]

    rescuer = setup.start("rescuer")
    wait_until(lambda: setup.task(task.id).status == "completed", what="the handover")
    runs = setup.runtime.run_on_store(lambda s: s.list_runs(task.id))
    assert [(worker_id_of(r.worker), r.reason, r.from_step) for r in runs] == [
        ("hog", "start", 0),
        ("rescuer", "handover", 2),
    ]
    rescuer.proc.send_signal(signal.SIGTERM)
    assert rescuer.proc.wait(timeout=60) == 0, rescuer.text()


def test_a_lease_lost_at_commit_emits_lease_lost(setup: Setup) -> None:
    """Issue 21: the commit, not the renewal, finds the lease taken over."""
    task = setup.runtime.submit("gated", "go")
    # a long lease, renewed every 290 s: no renewal comes while the test runs, so the
    # commit is what finds the lease gone
    slow = setup.start("slow", "--lease-ttl", "600", "--heartbeat", "290", "--metrics-port", "0")
    setup.entered("linger", slow)

    async def take_over(s: Store) -> Claim | None:
        await s.expire_lease(task.id)  # as if the worker had stalled past its lease
        return await s.claim_task("thief/1.1", lease_ttl=600, agents=["gated"], task_id=task.id)

    claim = wait_until(lambda: setup.runtime.run_on_store(take_over), what="the lease to be taken")
    assert claim.reason == "recovery"
    (setup.marks / "linger.open").touch()  # the step ends; its commit is fenced off
    lost = wait_until(
        lambda: [line for line in slow.json_lines() if line["event"] == "lease.lost"],
        what="lease.lost in the worker's log",
    )
    assert [(line["task"], line["agent"]) for line in lost] == [(task.id, "gated")]
    found = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", slow.text())
    assert found, slow.text()
    assert _scrape(int(found.group(1)))["tether_leases_lost_total"] == 1
    journal = setup.runtime.run_on_store(lambda s: s.load_journal(task.id))
    assert journal == []  # fenced: nothing of the old holder's step was written
    slow.proc.send_signal(signal.SIGTERM)
    assert slow.proc.wait(timeout=60) == 0, slow.text()
