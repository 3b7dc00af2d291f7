"""Agents SDK tools with ``needs_approval=True`` wait through tether's durable waits.

The ``banker`` agent (``oa_agents``) calls ``pay(amount=7)``, a tool that needs
approval; the stand-in server answers its second turn with what the tool returned.
The task waits holding no lease, ``tool.approval_requested`` names the call, an
approval runs the tool once, a denial reaches the model as the call's result with its
reason, and a worker killed while the task waits leaves it for another to finish.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import oa_agents
import oa_support
import pytest
from oa_support import Files, finished, journal, start_worker, submit

from store_view import call_with_store
from tether import Runtime, types
from tether.runtime import TaskResult
from tether.testing import Fault, StandInModelServer
from waiting import wait_until

oa_server = pytest.fixture(name="oa_server")(oa_support.serve_script)


def _waiting(url: str, task_id: str) -> types.TaskRecord | None:
    task = call_with_store(url, lambda s: s.get_task(task_id))
    return task if task.status == "waiting" else None


def _answered(runtime: Runtime, url: str, task_id: str, answer: Callable[[], object]) -> TaskResult:
    """Run the task here; once it waits (holding no lease), ``answer`` it."""
    out: dict[str, TaskResult] = {}
    runner = threading.Thread(target=lambda: out.update(r=runtime.run(task_id)))
    runner.start()
    try:
        parked = wait_until(lambda: _waiting(url, task_id), what="the approval wait")
        assert parked.lease_owner is None
        assert parked.wait is not None and parked.wait["name"] == "approval.1"
        answer()
    finally:
        runner.join(60)
    return out["r"]


def _asked(url: str, task_id: str) -> dict[str, object]:
    found = call_with_store(url, lambda s: s.list_events(task_id))
    (asked,) = [e.data for e in found if e.name == "tool.approval_requested"]
    return asked


@pytest.mark.parametrize("approve", [True, False], ids=["approve", "deny"])
def test_a_tool_needing_approval_waits_for_a_person(
    approve: bool, tmp_path: Path, oa_server: StandInModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = Files(tmp_path)
    monkeypatch.setenv("TETHER_TEST_MARKS", str(files.marks))
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with Runtime(url) as runtime:
        runtime.register(oa_agents.build()["banker"])
        task = runtime.submit("banker", "pay me")
        if approve:
            result = _answered(runtime, url, task.id, lambda: runtime.approve(task.id))
        else:
            result = _answered(
                runtime, url, task.id, lambda: runtime.deny(task.id, reason="over the limit")
            )
    asked = _asked(url, task.id)
    assert (asked["tool"], json.loads(str(asked["arguments"]))) == ("pay", {"amount": 7})
    assert result.status == "completed", result.task.error
    steps = journal(url, task.id)
    pays = [m for m in files.read_marks() if m.startswith("pay ")]
    if approve:
        assert result.output == "bank read: paid 7"
        assert pays == [f"pay 7 {task.id}:2"]  # once, with the tool step's key
        assert [(s.kind, s.name) for s in steps] == [
            ("model", "stand-in"), ("signal", "approval.1"), ("tool", "pay"),
            ("model", "stand-in"), ("custom", "openai_agents.turn"),
        ]  # fmt: skip
    else:
        assert pays == []
        assert "did not run" in result.output and "Reason: over the limit" in result.output
        assert [(s.kind, s.name) for s in steps] == [
            ("model", "stand-in"), ("signal", "approval.1"),
            ("model", "stand-in"), ("custom", "openai_agents.turn"),
        ]  # fmt: skip
    # Replay was exact: the resumed run replayed the first model call (two calls reached
    # the model, not three) and ran every step once.
    assert oa_server.count == 2
    assert all(s.attempts == 1 for s in steps)
    assert result.task.runs == 2
    session = call_with_store(url, lambda s: s.list_messages(task.session_id))
    tool_results = [m.message.content for m in session if m.message.role == "tool"]
    assert tool_results == (["paid 7"] if approve else [result.output.removeprefix("bank read: ")])


def test_workers_killed_while_waiting_and_after_the_answer_replay_it_exactly(
    tmp_path: Path, oa_server: StandInModelServer
) -> None:
    """The first worker dies while the task waits (the CLI approves meanwhile); the second
    takes the answer, runs the tool, and dies in the next model call; the third replays
    the model call, the answered wait and the tool, and runs only that model call again."""
    files = Files(tmp_path)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    workers = [start_worker(files, oa_server.base_url, url, "first", agent="banker")]
    try:
        task = submit(url, "banker", "pay me")
        wait_until(lambda: _waiting(url, task.id), what="the approval wait", timeout=60)
        workers[0].signal(signal.SIGKILL)
        workers[0].proc.wait(timeout=30)
        env = {k: v for k, v in os.environ.items() if k != "TETHER_STORE"}
        by_cli = subprocess.run(
            [sys.executable, "-m", "tether", "approve", task.id, "--store", url],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert by_cli.returncode == 0, by_cli.stderr
        oa_server.inject(Fault.delay(120))  # the model call after the tool hangs
        workers.append(start_worker(files, oa_server.base_url, url, "second", agent="banker"))
        wait_until(lambda: oa_server.count == 2, what="the model call after the tool", timeout=60)
        workers[1].signal(signal.SIGKILL)
        workers[1].proc.wait(timeout=30)
        workers.append(start_worker(files, oa_server.base_url, url, "third", agent="banker"))
        done = finished(url, task.id)
    finally:
        for worker in workers:
            worker.stop()
    assert (done.status, done.output) == ("completed", "bank read: paid 7"), done.error
    assert [m for m in files.read_marks() if m.startswith("pay ")] == [f"pay 7 {task.id}:2"]
    assert oa_server.count == 3  # 1 + the hung one + its re-run; the first was replayed
    steps = journal(url, task.id)
    assert [(s.kind, s.name, s.attempts) for s in steps][:3] == [
        ("model", "stand-in", 1), ("signal", "approval.1", 1), ("tool", "pay", 1),
    ]  # fmt: skip
    consumed = call_with_store(url, lambda s: s.list_signals(task.id))
    assert len(consumed) == 1
    runs = call_with_store(url, lambda s: s.list_runs(task.id))
    names = [next(n for n in ("first", "second", "third") if n in r.worker) for r in runs]
    assert list(dict.fromkeys(names)) == ["first", "second", "third"], runs
