"""The console's answers to waiting tasks over real HTTP (a real ``tether serve`` in a
thread, SQLite): a task waiting for a tool approval shows the tool and its arguments
with Approve and Deny (with a reason); one waiting for a named signal shows a form that
sends it with JSON data. Each POST needs the session's CSRF token, and another
tenant's key cannot answer (404), an operator's can; a stale page cannot answer a newer
wait (409)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import server_support as support

from tether import Agent, Runtime, ScriptedModel, tool, types
from tether.execution.context import TaskContext
from waiting import wait_until

REFUNDS: list[int] = []
_LOCK = threading.Lock()


@tool(requires_approval=True)
def refund(amount: int) -> str:
    """Refund the customer."""
    with _LOCK:
        REFUNDS.append(amount)
    return f"refunded {amount}"


def _script(request: types.ModelRequest) -> Any:
    last = request.messages[-1]
    if last.role == "tool":
        return f"model read: {last.content}"
    return ScriptedModel.call("refund", amount=5)


agents = Runtime()
agents.register(Agent("refunder", ScriptedModel(_script), tools=[refund]))


@agents.workflow
async def waiter(ctx: TaskContext, input: str) -> Any:
    """Waits for the signal ``go.ahead`` and answers with its data."""
    return {"got": await ctx.wait_for_signal("go.ahead")}


@dataclass
class Served:
    srv: support.Running
    acme: str
    globex: str
    operator: str

    def signed_in(self, key: str) -> httpx.Client:
        client = self.srv.client()
        assert client.post("/console/login", data={"key": key}).status_code == 303
        return client

    def waiting(self, agent: str) -> tuple[str, httpx.Client]:
        """A new acme task of ``agent``, once it waits; the API client."""
        api = self.srv.client(self.acme)
        sid = api.post("/v1/sessions", json={"agent": agent}).json()["id"]
        task_id: str = api.post(f"/v1/sessions/{sid}/tasks", json={"input": "go"}).json()["id"]

        def parked() -> bool:
            return bool(api.get(f"/v1/tasks/{task_id}").json()["status"] == "waiting")

        wait_until(parked, what=f"task {task_id} to wait")
        return task_id, api


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    url = f"sqlite:///{tmp_path_factory.mktemp('console-waits') / 'c.db'}"
    acme, globex = support.make_key(url, "acme"), support.make_key(url, "globex")
    operator = support.make_operator_key(url)
    with support.serve_in_thread(url, workflows=agents.workflows) as srv:
        yield Served(srv, acme, globex, operator)


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


def _wait_field(page: str) -> str:
    found = re.search(r'name="wait" value="([^"]+)"', page)
    assert found is not None, "no wait field on the page"
    return found.group(1)


def _finished(api: httpx.Client, task_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/v1/tasks/{task_id}").json()
        return body if body["status"] in ("completed", "failed", "cancelled") else None

    return wait_until(done, what=f"task {task_id} to finish")


def test_approve_from_the_task_page(served: Served) -> None:
    REFUNDS.clear()
    task_id, api = served.waiting("refunder")
    client = served.signed_in(served.acme)
    page = client.get(f"/console/tasks/{task_id}").text
    assert 'id="waiting"' in page and 'id="wait-tool">refund</code>' in page
    assert re.search(r'id="wait-arguments">\{\s+&quot;amount&quot;: 5\s+\}', page)
    assert 'id="approve"' in page and 'id="deny-reason"' in page
    assert 'id="send-signal"' not in page
    form = {"csrf": _csrf(page), "wait": _wait_field(page)}
    assert form["wait"].startswith("approval.")

    answer = client.post(f"/console/tasks/{task_id}/approve", data=form)
    assert answer.status_code == 303 and answer.headers["location"] == f"/console/tasks/{task_id}"
    assert _finished(api, task_id)["output"] == "model read: refunded 5"
    assert REFUNDS == [5]
    assert 'id="waiting"' not in client.get(f"/console/tasks/{task_id}").text
    # The page was stale now: nothing is answered twice.
    again = client.post(f"/console/tasks/{task_id}/approve", data=form)
    assert again.status_code == 409 and "reload" in again.text


def test_deny_from_the_task_page_tells_the_model_why(served: Served) -> None:
    REFUNDS.clear()
    task_id, api = served.waiting("refunder")
    client = served.signed_in(served.acme)
    page = client.get(f"/console/tasks/{task_id}").text
    form = {"csrf": _csrf(page), "wait": _wait_field(page)}
    empty = client.post(f"/console/tasks/{task_id}/deny", data={**form, "reason": " "})
    assert empty.status_code == 400 and "needs a reason" in empty.text
    answer = client.post(
        f"/console/tasks/{task_id}/deny", data={**form, "reason": "over the <limit>"}
    )
    assert answer.status_code == 303
    output = _finished(api, task_id)["output"]
    assert "did not run" in output and "Reason: over the <limit>" in output
    assert REFUNDS == []


def test_send_a_named_signal_with_json_data(served: Served) -> None:
    task_id, api = served.waiting("waiter")
    client = served.signed_in(served.acme)
    page = client.get(f"/console/tasks/{task_id}").text
    assert 'id="wait-signal">go.ahead</code>' in page and 'id="send-signal"' in page
    assert 'id="approve"' not in page
    form = {"csrf": _csrf(page), "wait": _wait_field(page)}
    bad = client.post(f"/console/tasks/{task_id}/signal", data={**form, "data": "{nope"})
    assert bad.status_code == 400 and "not JSON" in bad.text
    # an approval's answer is not a signal's, and the other way round
    assert client.post(f"/console/tasks/{task_id}/approve", data=form).status_code == 409
    assert api.get(f"/v1/tasks/{task_id}").json()["status"] == "waiting"

    sent = client.post(
        f"/console/tasks/{task_id}/signal", data={**form, "data": '{"ok": true, "n": 3}'}
    )
    assert sent.status_code == 303
    assert _finished(api, task_id)["output"] == {"got": {"ok": True, "n": 3}}


def test_answers_need_the_csrf_token_and_the_tasks_tenant(served: Served) -> None:
    task_id, api = served.waiting("waiter")
    client = served.signed_in(served.acme)
    page = client.get(f"/console/tasks/{task_id}").text
    form = {"csrf": _csrf(page), "wait": _wait_field(page), "data": "1"}
    path = f"/console/tasks/{task_id}"
    for action in ("approve", "deny", "signal"):
        without = {k: v for k, v in form.items() if k != "csrf"}
        assert client.post(f"{path}/{action}", data=without).status_code == 403
        wrong = client.post(f"{path}/{action}", data={**form, "csrf": "f" * 64})
        assert wrong.status_code == 403 and "CSRF" in wrong.text
    cross = client.post(f"{path}/signal", data=form, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403

    other = served.signed_in(served.globex)
    other_form = {**form, "csrf": _csrf(other.get("/console/tasks").text)}
    assert other.get(path).status_code == 404
    for action in ("approve", "deny", "signal"):
        refused = other.post(f"{path}/{action}", data={**other_form, "reason": "mine"})
        assert refused.status_code == 404
    assert api.get(f"/v1/tasks/{task_id}").json()["status"] == "waiting"
    signals = support.call_with_store(served.srv.store_url, lambda s: s.list_signals(task_id))
    assert signals == []  # nothing was written by a refused answer

    # an operator key answers any tenant's task
    op = served.signed_in(served.operator)
    op_form = {"csrf": _csrf(op.get(path).text), "wait": form["wait"], "data": '"from ops"'}
    assert op.post(f"{path}/signal", data=op_form).status_code == 303
    assert _finished(api, task_id)["output"] == {"got": "from ops"}
