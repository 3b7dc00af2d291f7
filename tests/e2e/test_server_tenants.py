"""Tenants over HTTP: a key sees its own tenant only; another tenant's objects are 404 on
every endpoint, with none of their data; missing, wrong and revoked keys are 401; bad
input is refused whole (nothing partially written)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import server_support as support

from tether.store.base import Store


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both engines: tenant scoping and the API keys are the store's promises."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'tether.db'}"


def _counts(store_url: str) -> tuple[int, int]:
    async def count(s: Store) -> tuple[int, int]:
        return len(await s.list_sessions(limit=10_000)), len(await s.list_tasks(limit=10_000))

    counted: tuple[int, int] = support.call_with_store(store_url, count)
    return counted


def test_another_tenants_objects_answer_404_on_every_endpoint(store_url: str) -> None:
    acme = support.make_key(store_url, "acme")
    globex = support.make_key(store_url, "globex")
    with support.serve_in_thread(store_url, workers=0) as srv:
        a, g = srv.client(acme), srv.client(globex)
        session = a.post("/v1/sessions", json={"agent": "echo"})
        assert session.status_code == 201, session.text
        sid = session.json()["id"]
        assert session.json()["tenant"] == "acme"
        task = a.post(f"/v1/sessions/{sid}/tasks", json={"input": "secret plans"})
        assert task.status_code == 202, task.text
        tid = task.json()["id"]
        before = _counts(store_url)

        attempts = [
            g.get(f"/v1/sessions/{sid}"),
            g.post(f"/v1/sessions/{sid}/tasks", json={"input": "intrude"}),
            g.post(
                f"/v1/sessions/{sid}/tasks",
                json={"input": "intrude"},
                headers={"Idempotency-Key": "k1"},
            ),
            g.get(f"/v1/sessions/{sid}/messages"),
            g.get(f"/v1/sessions/{sid}/context"),
            g.get(f"/v1/tasks/{tid}"),
            g.get(f"/v1/tasks/{tid}/events"),
            g.post(f"/v1/tasks/{tid}/cancel"),
        ]
        for response in attempts:
            assert response.status_code == 404, (response.request.url, response.text)
            body = response.json()
            assert body["error"]["error_class"] == "NotFound"
            assert "secret plans" not in response.text
            assert "acme" not in response.text

        # nothing was written by the refused calls, and the task was not cancelled
        assert _counts(store_url) == before
        own = a.get(f"/v1/tasks/{tid}").json()
        assert own["status"] == "queued" and own["cancel_requested"] is False
        assert own["input"] == "secret plans" and own["steps"] == []
        # and the owner sees everything
        assert a.get(f"/v1/sessions/{sid}").json()["agent"] == "echo"
        assert a.get(f"/v1/sessions/{sid}/context").status_code == 200
        assert a.get(f"/v1/sessions/{sid}/messages").json()["messages"] == []


def test_keys_missing_wrong_and_revoked_are_401(store_url: str, tmp_path: Path) -> None:
    made = subprocess.run(
        [support.TETHER, "keys", "create", "--tenant", "acme", "--name", "ci", "--json",
         "--store", store_url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    created = json.loads(made.stdout)
    key, key_id = created["key"], created["id"]
    with support.serve_in_thread(store_url, workers=0) as srv:
        assert srv.client().get("/v1/sessions/x").status_code == 401
        wrong = srv.client("tk_not-a-key").get("/v1/sessions/x")
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"].startswith("Bearer")
        assert wrong.json()["error"]["error_class"] == "Unauthorized"
        basic = srv.client().get("/v1/sessions/x", headers={"Authorization": "Basic YTpi"})
        assert basic.status_code == 401
        ok = srv.client(key).post("/v1/sessions", json={"agent": "echo"})
        assert ok.status_code == 201 and ok.json()["tenant"] == "acme"

        listed = subprocess.run(
            [support.TETHER, "keys", "list", "--json", "--store", store_url],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows = json.loads(listed.stdout)
        assert [(r["id"], r["tenant"], r["name"], r["revoked_at"]) for r in rows] == [
            (key_id, "acme", "ci", None)
        ]
        assert key not in listed.stdout and "hash" not in listed.stdout

        subprocess.run(
            [support.TETHER, "keys", "revoke", key_id, "--store", store_url],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        revoked = srv.client(key).post("/v1/sessions", json={"agent": "echo"})
        assert revoked.status_code == 401
        # operations endpoints need no key
        assert srv.client().get("/healthz").json() == {"status": "ok"}
        assert srv.client().get("/readyz").status_code == 200


def test_bad_input_is_refused_whole(store_url: str) -> None:
    key = support.make_key(store_url, "acme")
    with support.serve_in_thread(store_url, workers=0, max_body_bytes=4096) as srv:
        c = srv.client(key)
        sid = c.post("/v1/sessions", json={"agent": "echo"}).json()["id"]
        before = _counts(store_url)

        unknown = c.post("/v1/sessions", json={"agent": "nope"})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["error_class"] == "UnknownAgent"
        assert "echo" in unknown.json()["error"]["message"]  # names what exists

        cases = {
            "missing input": c.post(f"/v1/sessions/{sid}/tasks", json={}),
            "empty input": c.post(f"/v1/sessions/{sid}/tasks", json={"input": ""}),
            "not text": c.post(f"/v1/sessions/{sid}/tasks", json={"input": 5}),
            "extra field": c.post(f"/v1/sessions/{sid}/tasks", json={"input": "x", "y": 1}),
            "NUL": c.post(f"/v1/sessions/{sid}/tasks", json={"input": "a\u0000b"}),
            "not JSON": c.post(
                f"/v1/sessions/{sid}/tasks",
                content=b"{nope",
                headers={"content-type": "application/json"},
            ),
            "bad limit": c.get(f"/v1/sessions/{sid}/messages", params={"limit": 0}),
            "bad Last-Event-ID": c.get(
                f"/v1/tasks/{'0' * 32}/events", headers={"Last-Event-ID": "soon"}
            ),
        }
        for what, response in cases.items():
            assert response.status_code == 422, (what, response.text)
            error = response.json()["error"]
            assert error["error_class"] == "InvalidInput" and error["type"] == "input", what
            assert error["message"].startswith("invalid request: "), what
        assert "input" in cases["missing input"].json()["error"]["message"]
        assert "Field required" in cases["missing input"].json()["error"]["message"]

        too_big = c.post(f"/v1/sessions/{sid}/tasks", json={"input": "x" * 10_000})
        assert too_big.status_code == 413
        assert too_big.json()["error"]["error_class"] == "ContentTooLarge"

        def chunks() -> object:
            yield b'{"input": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        chunked = c.post(
            f"/v1/sessions/{sid}/tasks",
            content=chunks(),  # type: ignore[arg-type]
            headers={"content-type": "application/json"},
        )
        assert chunked.status_code == 413

        task_elsewhere = c.post(f"/v1/sessions/{'f' * 32}/tasks", json={"input": "x"})
        assert task_elsewhere.status_code == 404
        assert _counts(store_url) == before

        metrics = srv.client().get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        assert 'tether_requests_total{code="422",route="/v1/sessions/{session_id}/tasks"}' in text
        assert 'tether_requests_total{code="404",route="/v1/sessions"}' in text
        assert 'tether_requests_total{code="413",route=' in text
        assert sid not in text  # route templates, never raw paths
