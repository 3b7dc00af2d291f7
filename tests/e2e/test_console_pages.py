"""The console's routes over real HTTP (a real ``tether serve`` in a thread, SQLite):
sign-in and sign-out, tenant isolation, the operator's view, every page, CSRF on the
actions, bad ids and oversized filters."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

import httpx
import pytest
import server_support as support

from store_view import call_with_store
from tether.server import keys
from tether.server.console import session
from waiting import wait_until


@dataclass
class Console:
    srv: support.Running
    acme: str
    globex: str
    operator: str
    acme_task: dict[str, object]
    globex_task: dict[str, object]

    def signed_in(self, key: str) -> httpx.Client:
        client = self.srv.client()
        answer = client.post("/console/login", data={"key": key})
        assert answer.status_code == 303, answer.text
        return client


def _submit(client: httpx.Client, agent: str, text: str) -> dict[str, object]:
    sid = client.post("/v1/sessions", json={"agent": agent}).json()["id"]
    task: dict[str, object] = client.post(f"/v1/sessions/{sid}/tasks", json={"input": text}).json()
    return task


def _finished(client: httpx.Client, task_id: object) -> dict[str, object]:
    def done() -> dict[str, object] | None:
        body: dict[str, object] = client.get(f"/v1/tasks/{task_id}").json()
        return body if body["status"] in ("completed", "failed", "cancelled") else None

    return wait_until(done, timeout=30, what=f"task {task_id} to finish")


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    url = f"sqlite:///{tmp_path_factory.mktemp('console') / 'console.db'}"
    acme, globex = support.make_key(url, "acme"), support.make_key(url, "globex")
    operator = support.make_operator_key(url)
    quick_drain = replace(support.fast_settings(), drain_grace=0.5)  # the slow task is cut
    with support.serve_in_thread(url, execution=quick_drain) as srv:
        a, g = srv.client(acme), srv.client(globex)
        acme_task = _finished(a, _submit(a, "echo", "hi from acme")["id"])
        globex_task = _finished(g, _submit(g, "steps", "3:0.01")["id"])
        yield Console(srv, acme, globex, operator, acme_task, globex_task)


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


def test_sign_in_sets_a_strict_expiring_cookie_and_sign_out_clears_it(console: Console) -> None:
    client = console.srv.client()
    first = client.get("/console/")
    assert first.status_code == 303
    assert first.headers["location"] == "/console/login?next=/console/"
    form = client.get("/console/login")
    assert form.status_code == 200 and 'name="key"' in form.text

    bad = client.post("/console/login", data={"key": "tk_not-a-key"})
    assert bad.status_code == 401 and "unknown or revoked API key" in bad.text
    assert session.COOKIE not in client.cookies
    huge = client.post("/console/login", data={"key": "x" * 5000})
    assert huge.status_code == 413

    good = client.post(
        "/console/login", data={"key": console.acme, "next": "https://evil.example/"}
    )
    assert good.status_code == 303 and good.headers["location"] == "/console/"
    cookie = good.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie
    assert console.acme not in good.headers["set-cookie"]
    home = client.get("/console/")
    assert home.status_code == 200 and "Overview" in home.text and "tenant acme" in home.text

    refused = client.post("/console/logout", data={"csrf": "0" * 64})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert client.get("/console/").status_code == 200
    out = client.post("/console/logout", data={"csrf": _csrf(home.text)})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert session.COOKIE not in client.cookies
    assert client.get("/console/").status_code == 303


def test_forged_or_revoked_sessions_are_signed_out(console: Console) -> None:
    forged = console.srv.client()
    forged.cookies.set(session.COOKIE, "eyJoIjoiYSJ9.AAAA", path="/console")
    assert forged.get("/console/tasks").status_code == 303

    made = keys.new_key()
    call_with_store(
        console.srv.store_url,
        lambda s: s.create_api_key("acme", made.key_hash, prefix=made.prefix),
    )
    client = console.signed_in(made.key)
    assert client.get("/console/tasks").status_code == 200
    record = call_with_store(console.srv.store_url, lambda s: s.find_api_key(made.key_hash))
    assert record is not None
    call_with_store(console.srv.store_url, lambda s: s.revoke_api_key(record.id))
    assert client.get("/console/tasks").status_code == 303


def test_a_tenant_sees_only_its_own_tasks_pages_and_api(console: Console) -> None:
    client = console.signed_in(console.acme)
    mine, theirs = console.acme_task, console.globex_task
    listing = client.get("/console/tasks")
    assert listing.status_code == 200
    assert str(mine["id"]) in listing.text and str(theirs["id"]) not in listing.text
    assert "tenant" not in re.findall(r"<th>([a-z ()]+)</th>", listing.text)
    asked = client.get("/console/tasks", params={"tenant": "globex"})
    assert str(theirs["id"]) not in asked.text and "no tasks" in asked.text

    assert client.get(f"/console/tasks/{theirs['id']}").status_code == 404
    assert client.get(f"/console/tasks/{theirs['id']}/steps/0").status_code == 404
    assert client.get(f"/console/tasks/{theirs['id']}/events").status_code == 404
    assert client.get(f"/console/sessions/{theirs['session_id']}").status_code == 404
    api = console.srv.client(console.acme)
    assert api.get(f"/v1/tasks/{theirs['id']}").status_code == 404
    assert client.get(f"/console/tasks/{mine['id']}").status_code == 200


def test_an_operator_sees_every_tenant_but_not_the_api(console: Console) -> None:
    client = console.signed_in(console.operator)
    listing = client.get("/console/tasks")
    assert str(console.acme_task["id"]) in listing.text
    assert str(console.globex_task["id"]) in listing.text
    assert "operator: all tenants" in listing.text
    only = client.get("/console/tasks", params={"tenant": "globex", "agent": "steps"})
    assert str(console.globex_task["id"]) in only.text
    assert str(console.acme_task["id"]) not in only.text
    for task in (console.acme_task, console.globex_task):
        assert client.get(f"/console/tasks/{task['id']}").status_code == 200
    api = console.srv.client(console.operator).get(f"/v1/tasks/{console.acme_task['id']}")
    assert api.status_code == 401 and "console" in api.json()["error"]["message"]

    overview = client.get("/console/")
    for heading in ("Tasks by status", "Errors by class", "Step funnel", "Stuck", "Workers"):
        assert heading in overview.text
    assert "<h3>steps</h3>" in overview.text and "step 2" in overview.text
    assert "1/1 completed" in overview.text and "MiB" in overview.text


def test_task_page_shows_steps_runs_events_and_values(console: Console) -> None:
    client = console.signed_in(console.globex)
    task_id = console.globex_task["id"]
    page = client.get(f"/console/tasks/{task_id}")
    assert page.status_code == 200
    text = page.text
    for step in range(3):
        assert f'id="step-{step}"' in text and f"{task_id}:{step}" in text
    assert "ran in run 1 on" in text and ">start<" in text
    assert "task.completed" in text and "step.completed" in text
    assert "steps 0–2 of 3" in text
    assert 'class="badge st-completed"' in text

    second = client.get(f"/console/tasks/{task_id}", params={"after": 1})
    assert 'id="step-2"' in second.text and 'id="step-0"' not in second.text
    full = client.get(f"/console/tasks/{task_id}/steps/1")
    assert full.status_code == 200 and "&quot;name&quot;: &quot;s1&quot;" in full.text
    assert "not journaled (fingerprint" in full.text
    assert client.get(f"/console/tasks/{task_id}/steps/output").status_code == 200
    assert client.get(f"/console/tasks/{task_id}/steps/7").status_code == 404
    assert client.get(f"/console/tasks/{task_id}/steps/x").status_code == 404

    with client.stream("GET", f"/console/tasks/{task_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        body = "".join(stream.iter_text())
    assert "event: task.completed" in body and "event: stream.end" in body


def test_session_page_shows_the_conversation_and_context(console: Console) -> None:
    client = console.signed_in(console.acme)
    page = client.get(f"/console/sessions/{console.acme_task['session_id']}")
    assert page.status_code == 200
    assert "hi from acme" in page.text and "hello from echo" in page.text
    assert 'class="ctx"' in page.text and "context.pressure" in page.text
    assert str(console.acme_task["id"]) in page.text


def test_stored_text_is_escaped_on_every_page(console: Console) -> None:
    api = console.srv.client(console.acme)
    evil = _finished(api, _submit(api, "echo", "<script>alert('x')</script>")["id"])
    client = console.signed_in(console.acme)
    for path in (
        "/console/tasks",
        f"/console/tasks/{evil['id']}",
        f"/console/sessions/{evil['session_id']}",
    ):
        page = client.get(path).text
        assert "&lt;script&gt;alert(" in page, path
        assert "<script>alert(" not in page, path


def test_live_rows_fragment_lists_the_newest_tasks(console: Console) -> None:
    client = console.signed_in(console.acme)
    rows = client.get("/console/tasks/rows", params={"status": "completed"})
    assert rows.status_code == 200 and rows.text.startswith("<tr")
    assert f'data-task="{console.acme_task["id"]}"' in rows.text
    assert 'data-live="/console/tasks/rows' in client.get("/console/tasks").text


def test_actions_need_the_sessions_csrf_token(console: Console) -> None:
    api = console.srv.client(console.acme)
    slow = _submit(api, "slow", "30")
    client = console.signed_in(console.acme)
    path = f"/console/tasks/{slow['id']}"
    wait_until(
        lambda: api.get(path.replace("/console", "/v1")).json()["status"] == "running",
        timeout=20,
        what="the slow task to run",
    )
    token = _csrf(client.get(path).text)

    assert client.post(f"{path}/cancel").status_code == 403
    assert client.post(f"{path}/cancel", data={"csrf": "f" * 64}).status_code == 403
    cross = client.post(
        f"{path}/cancel", data={"csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    other = console.signed_in(console.globex)
    other_token = _csrf(other.get("/console/tasks").text)
    assert other.post(f"{path}/cancel", data={"csrf": other_token}).status_code == 404
    assert api.get(f"/v1/tasks/{slow['id']}").json()["status"] == "running"

    resumed = client.post(f"{path}/resume", data={"csrf": token})
    assert resumed.status_code == 303 and resumed.headers["location"] == path
    wait_until(
        lambda: "recovery" in client.get(path).text, timeout=20, what="the task to be recovered"
    )
    done = f"/console/tasks/{console.acme_task['id']}"
    finished = client.post(f"{done}/resume", data={"csrf": token})
    assert finished.status_code == 409 and "nothing to resume" in finished.text
    assert "requested: it stops at its next step boundary" not in client.get(path).text
    cancelled = client.post(f"{path}/cancel", data={"csrf": token})
    assert cancelled.status_code == 303
    assert "requested: it stops at its next step boundary" in client.get(path).text


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/console/tasks/" + "a" * 300, 404),
        ("/console/tasks/bad%20id", 404),
        ("/console/tasks/no-such-task", 404),
        ("/console/sessions/no-such-session", 404),
        ("/console/sessions/" + "%3Cscript%3E", 404),
        ("/console/tasks?agent=" + "a" * 300, 400),
        ("/console/tasks?status=NOT-A-STATUS", 400),
        ("/console/tasks?limit=100000", 400),
        ("/console/tasks?before=abc", 400),
        ("/console/tasks?since=yesterday", 400),
        ("/console/tasks?session=" + "s" * 300, 400),
        ("/console/tasks/rows?until=" + "9" * 50, 400),
    ],
)
def test_bad_ids_and_oversized_filters_are_clear_errors(
    console: Console, path: str, code: int
) -> None:
    client = console.signed_in(console.operator)
    answer = client.get(path)
    assert answer.status_code == code, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert "<script>" not in answer.text
    assert re.search(r'<p class="error">[^<]+</p>', answer.text)


def test_time_filters_and_pages_of_the_list(console: Console) -> None:
    client = console.signed_in(console.operator)
    everything = client.get("/console/tasks", params={"since": "2000-01-01T00:00"})
    assert str(console.globex_task["id"]) in everything.text
    nothing = client.get("/console/tasks", params={"until": "2000-01-01T00:00"})
    assert "no tasks" in nothing.text
    first = client.get("/console/tasks", params={"limit": 1})
    older = re.search(r'href="(/console/tasks\?[^"]*before=\d+[^"]*)" id="older"', first.text)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&"))
    assert second.status_code == 200 and "an older page" in second.text
