"""Pydantic AI tools with ``requires_approval=True`` wait through tether's durable waits.

``pai_approvals.agent`` calls ``refund(amount=5)``, a tool that needs approval. The
task waits holding no lease, ``tool.approval_requested`` names the call, an approval
runs the tool once, a denial reaches the model as the call's result with its reason,
and a worker killed while the task waits leaves it for another to finish.
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

import pai_approvals
import pytest

from store_view import call_with_store
from tether import Runtime, types
from tether.runtime import TaskResult
from waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
SPEC = f"{Path(pai_approvals.__file__).resolve()}:agent"


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


@pytest.mark.parametrize("approve", [True, False], ids=["approve", "deny"])
def test_a_tool_requiring_approval_waits_for_a_person(
    approve: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_PAI_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with Runtime(url) as runtime:
        runtime.register(pai_approvals.agent)
        task = runtime.submit("pai_refunder", "refund me")
        if approve:
            result = _answered(runtime, url, task.id, lambda: runtime.approve(task.id))
        else:
            result = _answered(
                runtime, url, task.id, lambda: runtime.deny(task.id, reason="over the limit")
            )
    found = call_with_store(url, lambda s: s.list_events(task.id))
    (asked,) = [e.data for e in found if e.name == "tool.approval_requested"]
    assert (asked["tool"], json.loads(asked["arguments"])) == ("refund", {"amount": 5})
    assert asked["tool_call_id"] == "r1"
    assert result.status == "completed", result.task.error
    steps = call_with_store(url, lambda s: s.load_journal(task.id))
    refunds = pai_approvals.lines(tmp_path, "refunds.log")
    if approve:
        assert result.output == "model read: refunded 5"
        assert refunds == [f"5 {task.id}:2"]  # once, with the tool step's key
        assert [(s.kind, s.name) for s in steps] == [
            ("model", "refunder-model"), ("signal", "approval.1"), ("tool", "refund"),
            ("model", "refunder-model"),
        ]  # fmt: skip
    else:
        assert refunds == []
        assert "did not run" in result.output and "Reason: over the limit" in result.output
        assert [(s.kind, s.name) for s in steps] == [
            ("model", "refunder-model"), ("signal", "approval.1"), ("model", "refunder-model"),
        ]  # fmt: skip
    # Replay was exact: the resumed run replayed the first model turn (two turns reached
    # the model, not three) and ran every step once.
    assert len(pai_approvals.lines(tmp_path, "model.log")) == 2
    assert all(s.attempts == 1 for s in steps)
    assert result.task.runs == 2
    session = call_with_store(url, lambda s: s.list_messages(task.session_id))
    tool_results = [m.message.content for m in session if m.message.role == "tool"]
    assert tool_results == (
        ["refunded 5"] if approve else [result.output.removeprefix("model read: ")]
    )


def test_a_tool_raising_approval_required_waits_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_PAI_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with Runtime(url) as runtime:
        runtime.register(pai_approvals.asker)
        task = runtime.submit("pai_asker", "refund me")
        out: dict[str, TaskResult] = {}
        runner = threading.Thread(target=lambda: out.update(r=runtime.run(task.id)))
        runner.start()
        try:
            parked = wait_until(lambda: _waiting(url, task.id), what="the approval wait")
            assert parked.wait is not None and parked.wait["name"] == "approval.2"
            runtime.approve(task.id)
        finally:
            runner.join(60)
    assert out["r"].output == "model read: refunded 5"
    assert pai_approvals.lines(tmp_path, "refunds.log") == [f"5 {task.id}:3"]
    steps = call_with_store(url, lambda s: s.load_journal(task.id))
    assert [(s.kind, s.name) for s in steps] == [
        ("model", "refunder-model"), ("tool", "refund"), ("signal", "approval.2"),
        ("tool", "refund"), ("model", "refunder-model"),
    ]  # fmt: skip


def test_two_calls_of_one_turn_are_asked_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_PAI_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with Runtime(url) as runtime:
        runtime.register(pai_approvals.agent)
        task = runtime.submit("pai_refunder", "refund two")
        out: dict[str, TaskResult] = {}
        runner = threading.Thread(target=lambda: out.update(r=runtime.run(task.id)))
        runner.start()
        try:
            for name, answer in (
                ("approval.1", lambda: runtime.approve(task.id)),
                ("approval.2", lambda: runtime.deny(task.id, reason="one is enough")),
            ):
                parked = wait_until(
                    lambda n=name: (t := _waiting(url, task.id)) and t.wait["name"] == n and t,
                    what=f"the wait {name}",
                )
                assert parked.wait is not None
                assert parked.wait["about"]["tool_call_id"] == {"approval.1": "r1"}.get(name, "r2")
                answer()
        finally:
            runner.join(60)
    result = out["r"]
    assert result.status == "completed", result.task.error
    first, second = str(result.output).removeprefix("model read: ").split(" | ")
    assert first == "refunded 5" and "Reason: one is enough" in second
    assert pai_approvals.lines(tmp_path, "refunds.log") == [f"5 {task.id}:3"]
    steps = call_with_store(url, lambda s: s.load_journal(task.id))
    assert [(s.kind, s.name) for s in steps] == [
        ("model", "refunder-model"), ("signal", "approval.1"), ("signal", "approval.2"),
        ("tool", "refund"), ("model", "refunder-model"),
    ]  # fmt: skip


def _worker(tmp_path: Path, url: str, name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TETHER_PAI_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("TETHER_STORE", None)
    command = [
        sys.executable, "-m", "tether", "worker", SPEC, "--store", url, "--worker-id", name,
        "--lease-ttl", "1.5", "--poll", "0.05",
    ]  # fmt: skip
    with (tmp_path / f"worker-{name}.log").open("wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)


def test_workers_killed_while_waiting_and_after_the_answer_replay_it_exactly(
    tmp_path: Path,
) -> None:
    """The first worker dies while the task waits (the CLI denies meanwhile); the second
    takes the answer and dies in the next model turn; the third replays the first turn
    and the answered wait, and runs only that model turn again."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    task = call_with_store(
        url,
        lambda s: s.submit_task(types.NewTask(tenant="acme", agent="pai_refunder", input="go")),
    )
    started: list[subprocess.Popen[bytes]] = []

    def kill(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    try:
        started.append(_worker(tmp_path, url, "first"))
        wait_until(lambda: _waiting(url, task.id), what="the approval wait", timeout=60)
        kill(started[0])
        env = {k: v for k, v in os.environ.items() if k != "TETHER_STORE"}
        denied = subprocess.run(
            [sys.executable, "-m", "tether", "deny", task.id, "--reason", "not today",
             "--store", url],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert denied.returncode == 0, denied.stderr
        (tmp_path / "hold").touch()
        started.append(_worker(tmp_path, url, "second"))
        wait_until(
            lambda: "held" in pai_approvals.lines(tmp_path, "model.log"),
            what="the model turn after the denial",
            timeout=60,
        )
        kill(started[1])
        (tmp_path / "hold").unlink()
        started.append(_worker(tmp_path, url, "third"))

        def done() -> types.TaskRecord | None:
            found = call_with_store(url, lambda s: s.get_task(task.id))
            return found if found.status in types.FINAL_STATUSES else None

        finished = wait_until(done, what="the task to finish", timeout=90)
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert finished.status == "completed", finished.error
    assert isinstance(finished.output, str) and "Reason: not today" in finished.output
    assert pai_approvals.lines(tmp_path, "refunds.log") == []
    # turn 1 ran once (replayed twice); turn 2 ran in the second worker and again in the third
    assert pai_approvals.lines(tmp_path, "model.log") == ["turn", "held", "turn"]
    steps = call_with_store(url, lambda s: s.load_journal(task.id))
    assert [(s.kind, s.name, s.attempts) for s in steps][:2] == [
        ("model", "refunder-model", 1), ("signal", "approval.1", 1),
    ]  # fmt: skip
    runs = call_with_store(url, lambda s: s.list_runs(task.id))
    names = [next(n for n in ("first", "second", "third") if n in r.worker) for r in runs]
    assert list(dict.fromkeys(names)) == ["first", "second", "third"], runs
