"""Graphs as tasks under real faults: a worker SIGKILLed inside a node, and a worker
SIGSTOPped past its lease then continued, on SQLite and PostgreSQL."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import langgraph_graphs
import pytest
from langgraph_workers import (
    ROOT,
    Workers,
    assert_one_chain,
    call,
    env_for,
    pending_write_of,
    snapshot,
    spec,
    submit,
    wait_until,
)


@pytest.fixture(params=["postgres", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        found = f"sqlite:///{tmp_path / 'graph.db'}"
    else:
        found = request.getfixturevalue("pg_url")
    call(found, lambda s: s.schema_version())  # migrated before workers race to it
    return found


@pytest.fixture
def workers(tmp_path: Path, url: str) -> Iterator[Workers]:
    started = Workers(tmp_path, url)
    try:
        yield started
    finally:
        started.stop_all()


def test_sigkill_inside_a_node_then_resume_continues_from_the_last_checkpoint(
    tmp_path: Path, url: str, workers: Workers
) -> None:
    (tmp_path / "hang-w1").touch()
    w1 = workers.start("w1")
    task = submit(url, "fanout", "go")
    wait_until(lambda: (tmp_path / "entered-w1").exists(), "node slow to start on w1")
    # ``fast`` finished in the same superstep: its writes are stored before the kill
    wait_until(
        lambda: pending_write_of(url, task.session_id, "done", ["fast"]),
        "fast's pending write",
    )
    w1.signal(signal.SIGKILL)
    w1.proc.wait(timeout=30)
    (tmp_path / "hang-w1").unlink()

    resumed = subprocess.run(
        [sys.executable, "-m", "tether", "resume", task.id, spec("fanout"), "--store", url],
        cwd=ROOT,
        env=env_for(tmp_path, "resumer"),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert resumed.returncode == 0, resumed.stderr
    assert "finished fast,prepare,slow" in resumed.stdout
    # finished nodes ran once; only the node killed mid-run ran again
    assert collections.Counter(langgraph_graphs.node_runs(tmp_path)) == {
        "prepare": 1,
        "fast": 1,
        "slow": 2,
        "finish": 1,
    }
    record = call(url, lambda s: s.get_task(task.id))
    assert (record.status, record.runs) == ("completed", 2)
    # input, start, after prepare, after fast+slow, after finish: one chain
    assert assert_one_chain(url, task.session_id) == 5
    assert steps_of_last_run(url, task.id) == [("slow", "completed"), ("finish", "completed")]


def steps_of_last_run(url: str, task_id: str) -> list[tuple[str, str]]:
    """The nodes the last run started, each with how it ended."""
    found = call(url, lambda s: s.list_events(task_id))
    last = max(i for i, e in enumerate(found) if e.name == "task.started")
    ended = {
        e.step: e.name.removeprefix("step.")
        for e in found[last:]
        if e.name in ("step.completed", "step.failed")
    }
    return [
        (e.data["name"], ended.get(e.step, "never"))
        for e in found[last:]
        if e.name == "step.started"
    ]


def test_a_worker_drained_inside_a_node_hands_the_graph_over(
    tmp_path: Path, url: str, workers: Workers
) -> None:
    (tmp_path / "hang-w1").touch()
    w1 = workers.start("w1", grace=0.5)
    task = submit(url, "fanout", "go")
    wait_until(lambda: (tmp_path / "entered-w1").exists(), "node slow to start on w1")
    wait_until(
        lambda: pending_write_of(url, task.session_id, "done", ["fast"]),
        "fast's pending write",
    )
    w1.signal(signal.SIGTERM)
    # it exits though its node still runs in a thread: the task is released, not lost
    assert w1.proc.wait(timeout=60) == 0
    assert call(url, lambda s: s.get_task(task.id)).status == "queued"

    workers.start("w2")
    done = wait_until(
        lambda: (t := call(url, lambda s: s.get_task(task.id))).status == "completed" and t,
        "w2 to finish the task",
    )
    assert done.output == "finished fast,prepare,slow"
    assert langgraph_graphs.node_runs(tmp_path).count("fast") == 1
    assert steps_of_last_run(url, task.id) == [("slow", "completed"), ("finish", "completed")]
    assert_one_chain(url, task.session_id)


def test_a_worker_stopped_past_its_lease_has_its_checkpoint_write_refused(
    tmp_path: Path, url: str, workers: Workers
) -> None:
    # The stale worker renews rarely, so after SIGCONT its graph's own write reaches
    # the store before its lease keeper could notice the loss: the write is fenced.
    (tmp_path / "hang-stale").touch()
    # (a 600 s lease renewed every 290 s: no renewal while the test runs)
    stale = workers.start("stale", lease_ttl=600.0, heartbeat=290.0)
    task = submit(url, "fanout", "go")
    wait_until(lambda: (tmp_path / "entered-stale").exists(), "node slow to start")
    # ``fast``'s writes and the journal rows of prepare and fast are committed
    wait_until(
        lambda: (
            pending_write_of(url, task.session_id, "done", ["fast"])
            and len(call(url, lambda s: s.load_journal(task.id))) == 2
        ),
        "fast's writes and journal row",
    )
    stale.stop_between_writes(url)  # one write in flight would hold its lock
    first_epoch = call(url, lambda s: s.get_task(task.id)).lease_epoch
    call(url, lambda s: s.expire_lease(task.id))  # as if it had stayed stopped past its lease

    workers.start("fresh", lease_ttl=2.0)
    done = wait_until(
        lambda: (t := call(url, lambda s: s.get_task(task.id))).status == "completed" and t,
        "the fresh worker to finish the task",
    )
    assert done.output == "finished fast,prepare,slow"
    before = snapshot(url, task.session_id)
    journal_before = call(url, lambda s: s.load_journal(task.id))

    (tmp_path / "release").touch()
    stale.signal(signal.SIGCONT)
    refused = wait_until(
        lambda: [
            e for e in call(url, lambda s: s.list_events(task.id)) if e.name == "checkpoint.refused"
        ],
        "the stale worker's refused write",
    )

    assert {e.data["epoch"] for e in refused} == {first_epoch}
    assert {e.data["what"] for e in refused} <= {"checkpoint", "writes", "step"}
    assert snapshot(url, task.session_id) == before
    assert call(url, lambda s: s.load_journal(task.id)) == journal_before
    after = call(url, lambda s: s.get_task(task.id))
    assert (after.status, after.output) == ("completed", "finished fast,prepare,slow")
    assert_one_chain(url, task.session_id)
