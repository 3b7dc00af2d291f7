"""Agents SDK agents in real ``tether worker`` processes, killed mid-model-call and
mid-tool, drained mid-tool, and two at once on one PostgreSQL.

``record`` of ``n == 2`` waits on a gate file the test opens, so a worker can be
signalled while that tool step is in flight; a model call is held in flight by the
stand-in server's ``Fault.delay``. The effects ledger holds each side effect
once per idempotency key; the marks file holds every start of a tool or guardrail.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import oa_agents
import oa_support
import pytest
from oa_support import Files, events, finished, journal, start_worker, submit

from store_view import call_with_store
from tether import Runtime, types
from tether.testing import Fault, StandInModelServer
from waiting import wait_until

oa_server = pytest.fixture(name="oa_server")(oa_support.serve_script)


def _shape(steps: list[types.StepRecord]) -> list[tuple[str, str, str]]:
    return [(s.kind, s.name, s.status) for s in steps]


def _readable(url: str, session_id: str) -> list[tuple[str, str | None]]:
    stored = call_with_store(url, lambda s: s.list_messages(session_id))
    return [(m.message.role, m.message.content) for m in stored]


def _started(files: Files, what: str, count: int = 1) -> bool:
    return sum(1 for m in files.read_marks() if m.startswith(what)) >= count


def _uninterrupted(
    tmp_path: Path, server: StandInModelServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The same task run start to end in this process: what a crashed run must equal."""
    ref = Files(tmp_path / "reference")
    ref.root.mkdir()
    ref.gate.touch()
    for key, value in ref.env(server.base_url).items():
        if key.startswith("TETHER_TEST_"):
            monkeypatch.setenv(key, value)
    url = f"sqlite:///{ref.root / 'ref.db'}"
    before = server.count
    with Runtime(url) as runtime:
        runtime.register(oa_agents.build()["counter"])
        result = runtime.run(runtime.submit("counter", "count 3").id)
    return {
        "output": result.output,
        "steps": _shape(journal(url, result.id)),
        "messages": _readable(url, result.task.session_id),
        "requests": server.count - before,
    }


def test_sigkill_mid_model_call_then_mid_tool_reruns_only_the_step_in_flight(
    tmp_path: Path, oa_server: StandInModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _uninterrupted(tmp_path, oa_server, monkeypatch)
    files = Files(tmp_path)
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    before = oa_server.count
    # the run's second model call hangs until its worker is killed
    oa_server.inject(Fault.delay(0), Fault.delay(120))
    task = submit(url, "counter", "count 3")
    workers = []
    try:
        workers.append(start_worker(files, oa_server.base_url, url, "first"))
        wait_until(lambda: oa_server.count >= before + 2, what="the second model call")
        workers[-1].stop()  # SIGKILL, mid-model-call
        workers.append(start_worker(files, oa_server.base_url, url, "second"))
        wait_until(lambda: _started(files, "record 2"), what="record 2 to start", timeout=60)
        workers[-1].stop()  # SIGKILL, mid-tool
        files.gate.touch()
        workers.append(start_worker(files, oa_server.base_url, url, "third"))
        done = finished(url, task.id)
    finally:
        for worker in workers:
            worker.stop()

    assert done.status == "completed", workers[-1].output()
    assert done.output == reference["output"] == "recorded 1..3 (turn 1)"
    steps = journal(url, task.id)
    assert _shape(steps) == reference["steps"]
    assert _readable(url, task.session_id) == reference["messages"]
    # completed model calls were replayed, not asked again: only the one in flight
    assert oa_server.count - before == reference["requests"] + 1 == 5

    # only the steps in flight ran twice, with the same key; the guardrail ran once
    marks = Counter(" ".join(m.split()[:3]) for m in files.read_marks())
    tool_keys = [f"{task.id}:{s.index}" for s in steps if s.kind == "tool"]
    assert marks == Counter(
        {
            f"guardrail {task.id}:0": 1,
            f"record 1 {tool_keys[0]}": 1,
            f"record 2 {tool_keys[1]}": 2,
            f"record 3 {tool_keys[2]}": 1,
        }
    )
    ledger = oa_agents.effects(files.effects)
    assert [(e["key"], e["n"]) for e in ledger] == list(zip(tool_keys, [1, 2, 3], strict=True))

    starts = [e.data for e in events(url, task.id) if e.name == "task.started"]
    # each run replayed what the one before committed and ran on from the step in flight
    assert [(d["reason"], d["from_step"]) for d in starts] == [
        ("start", 0),
        ("recovery", 3),
        ("recovery", 4),
    ]
    assert [s.worker.split("/")[0] for s in steps if s.worker] == [
        *["first"] * 3,
        *["second"],
        *["third"] * 5,
    ]


def test_sigterm_drains_mid_tool_and_a_changed_agent_is_refused_on_replay(
    tmp_path: Path, oa_server: StandInModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = Files(tmp_path)
    url = f"sqlite:///{tmp_path / 'drain.db'}"
    changed, kept = submit(url, "counter", "count 3"), submit(url, "counter", "count 3")
    first = start_worker(files, oa_server.base_url, url, "first", lease_ttl=120.0, grace=1.0)
    try:
        wait_until(lambda: _started(files, "record 2", 2), what="both tasks in record 2")
        first.signal(signal.SIGTERM)
        assert first.proc.wait(timeout=60) == 0, first.output()
    finally:
        first.stop()
    assert "drained, leases released" in first.output()
    for task in (changed, kept):
        record = call_with_store(url, lambda s, t=task: s.get_task(t.id))
        assert (record.status, record.lease_owner) == ("queued", None)

    # the instructions changed under a half-done task: its first model step differs
    reworded = oa_agents.build()["counter"].clone(instructions="COUNTER, reworded")
    with Runtime(url) as runtime:
        runtime.register(reworded)
        refused = runtime.run(changed.id)
    assert refused.status == "failed"
    assert refused.task.error is not None
    assert refused.task.error["error_class"] == "NonDeterminism"
    assert "step 1" in refused.task.error["message"]
    assert "model step 'stand-in'" in refused.task.error["message"]

    files.gate.touch()
    second = start_worker(files, oa_server.base_url, url, "second", lease_ttl=120.0)
    try:
        done = finished(url, kept.id)
    finally:
        second.stop()
    assert (done.status, done.output) == ("completed", "recorded 1..3 (turn 1)")
    key = f"{kept.id}:4"
    assert sum(1 for m in files.read_marks() if m.startswith(f"record 2 {key}")) == 2
    ledger = [e for e in oa_agents.effects(files.effects) if e["key"].startswith(kept.id)]
    assert [e["n"] for e in ledger] == [1, 2, 3]
    assert "task.recovered" in [e.name for e in events(url, kept.id)]


def test_two_workers_on_one_postgresql(
    tmp_path: Path, oa_server: StandInModelServer, pg_url: str
) -> None:
    files = Files(tmp_path)
    files.gate.touch()
    firsts = [submit(pg_url, "counter", "count 2") for _ in range(2)]
    seconds = [submit(pg_url, "counter", "count 1", session=t.session_id) for t in firsts]
    workers = [start_worker(files, oa_server.base_url, pg_url, w) for w in ("a", "b")]
    try:
        done = [finished(pg_url, t.id) for t in (*firsts, *seconds)]
    finally:
        for w in workers:
            w.stop()
    outputs = [t.output for t in done]
    assert outputs == [*["recorded 1..2 (turn 1)"] * 2, *["recorded 1..1 (turn 2)"] * 2]
    assert oa_server.count == 2 * (3 + 2)  # every model call once
    ledger = oa_agents.effects(files.effects)
    assert len(ledger) == len({e["key"] for e in ledger}) == 2 * (2 + 1)
    for first in firsts:
        roles = [role for role, _ in _readable(pg_url, first.session_id)]
        assert roles == [
            "user", "assistant", "tool", "assistant", "tool", "assistant",
            "user", "assistant", "tool", "assistant",
        ]  # fmt: skip
