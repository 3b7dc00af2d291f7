"""Tool approvals and signals over a real ``tether serve`` and the ``tether`` CLI: a
``@tool(requires_approval=True)`` call makes the task wait (no lease, no slot); a
denial reaches the model as the tool's result; an approval runs the tool; refused
signals (another tenant, a finished task, bad names and data) write nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import server_support as support

from tether import Agent, ScriptedModel, tool
from tether.execution.runner import Workflow
from tether.runtime import as_workflow
from tether.store import waits as store_waits
from tether.types import ModelRequest
from waiting import wait_until

REFUNDS: list[int] = []
_LOCK = threading.Lock()


@tool(requires_approval=True)
def refund(amount: int) -> str:
    """Refund the customer."""
    with _LOCK:
        REFUNDS.append(amount)
    return f"refunded {amount}"


def _script(request: ModelRequest) -> Any:
    last = request.messages[-1]
    if last.role == "tool":
        return f"model read: {last.content}"
    return ScriptedModel.call("refund", amount=5)


AGENT = Agent("refunder", ScriptedModel(_script), tools=[refund])
WORKFLOWS: dict[str, Workflow] = {"refunder": as_workflow(AGENT)}


def _tether(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_STORE"}
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_approvals_and_signals_over_http_and_the_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tether.db'}"
    acme, globex = support.make_key(url, "acme"), support.make_key(url, "globex")
    REFUNDS.clear()
    with support.serve_in_thread(url, workflows=WORKFLOWS, workers=1) as srv:
        a, g = srv.client(acme), srv.client(globex)

        def submit() -> str:
            session = a.post("/v1/sessions", json={"agent": "refunder"}).json()["id"]
            task = a.post(f"/v1/sessions/{session}/tasks", json={"input": "refund me"})
            assert task.status_code == 202, task.text
            task_id: str = task.json()["id"]
            return task_id

        def waiting(task_id: str) -> dict[str, Any] | None:
            body: dict[str, Any] = a.get(f"/v1/tasks/{task_id}").json()
            return body if body["status"] == "waiting" else None

        def final(task_id: str) -> dict[str, Any] | None:
            body: dict[str, Any] = a.get(f"/v1/tasks/{task_id}").json()
            return body if body["status"] in ("completed", "failed", "cancelled") else None

        denied, approved, dropped = submit(), submit(), submit()
        # One worker slot, three tasks waiting at once: none of them holds it.
        for task_id in (denied, approved, dropped):
            body = wait_until(lambda t=task_id: waiting(t), what="the approval wait")
            assert body["waiting"]["kind"] == "signal"
            assert body["waiting"]["name"].startswith("approval.")
        assert 'tether_tasks_waiting{task_type="refunder"} 3.0' in a.get("/metrics").text
        events = support.call_with_store(url, lambda s: s.list_events(denied))
        (asked,) = [e for e in events if e.name == "tool.approval_requested"]
        assert asked.data["tool"] == "refund"
        assert json.loads(asked.data["arguments"]) == {"amount": 5}

        listed = _tether("tasks", "list", "--status", "waiting", "--json", "--store", url)
        assert listed.returncode == 0, listed.stderr
        assert {t["id"] for t in json.loads(listed.stdout)} == {denied, approved, dropped}

        # Refused, and nothing written: another tenant, bad names, bad or big data.
        assert g.post(f"/v1/tasks/{denied}/deny", json={"reason": "no"}).status_code == 404
        assert g.post(f"/v1/tasks/{denied}/signals/go", json={"data": 1}).status_code == 404
        assert a.post("/v1/tasks/nope/signals/go", json={"data": 1}).status_code == 404
        assert a.post(f"/v1/tasks/{denied}/signals/bad%20name", json={}).status_code == 422
        bad = a.post(
            f"/v1/tasks/{denied}/signals/go",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 422
        big = {"data": "x" * (store_waits.MAX_SIGNAL_BYTES + 10)}
        assert a.post(f"/v1/tasks/{denied}/signals/go", json=big).status_code == 422
        assert a.post(f"/v1/tasks/{denied}/deny", json={"reason": ""}).status_code == 422
        assert support.call_with_store(url, lambda s: s.list_signals(denied)) == []

        answer = a.post(f"/v1/tasks/{denied}/deny", json={"reason": "over the limit"})
        assert answer.status_code == 202, answer.text
        assert answer.json()["woke"] is True
        done = wait_until(lambda: final(denied), what="the denied task to finish")
        assert done["status"] == "completed"
        assert "did not run" in done["output"] and "over the limit" in done["output"]
        assert REFUNDS == []

        by_cli = _tether("approve", approved, "--store", url)
        assert by_cli.returncode == 0, by_cli.stderr
        done = wait_until(lambda: final(approved), what="the approved task to finish")
        assert done["output"] == "model read: refunded 5"
        assert REFUNDS == [5]

        cancelled = a.post(f"/v1/tasks/{dropped}/cancel")
        assert cancelled.json()["status"] == "cancelled"  # at once: it held no lease

        # A finished task takes no signal: 409, from the API and the CLI.
        assert a.post(f"/v1/tasks/{approved}/signals/go", json={}).status_code == 409
        assert a.post(f"/v1/tasks/{approved}/approve").status_code == 409
        again = _tether("deny", approved, "--reason", "late", "--store", url)
        assert again.returncode != 0 and "not waiting" in again.stderr

        metrics = a.get("/metrics").text
        assert 'tether_tasks_waiting{task_type="refunder"} 0.0' in metrics
        assert 'tether_signals_received_total{name="approval"} 1.0' in metrics
        assert 'tether_task_wait_seconds_count{kind="signal"}' in metrics
