"""`GET /v1/sessions/{id}/context` shows what `tether sessions show` shows: the last
request's tokens against the budget, the summary and the compactions."""

from __future__ import annotations

from pathlib import Path

import server_support as support

from waiting import wait_until


def test_context_reports_tokens_and_limit_after_a_task(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'tether.db'}"
    key = support.make_key(store_url, "acme")
    with support.serve_in_thread(store_url, workers=1) as srv:
        client = srv.client(key)
        sid = client.post("/v1/sessions", json={"agent": "echo"}).json()["id"]
        empty = client.get(f"/v1/sessions/{sid}/context").json()
        assert (empty["tokens"], empty["limit"], empty["summary"]) == (None, None, None)
        tid = client.post(f"/v1/sessions/{sid}/tasks", json={"input": "hi"}).json()["id"]
        wait_until(
            lambda: client.get(f"/v1/tasks/{tid}").json()["status"] == "completed",
            what="the task to complete",
        )
        ctx = client.get(f"/v1/sessions/{sid}/context").json()
    assert ctx["session_id"] == sid
    assert isinstance(ctx["tokens"], int) and ctx["tokens"] > 0
    assert isinstance(ctx["limit"], int) and ctx["limit"] > ctx["tokens"]
    assert ctx["utilisation"] == ctx["tokens"] / ctx["limit"]
    assert ctx["compactions"] == 0 and ctx["summary"] is None
    assert ctx["state"]["last"]["budget"] == ctx["limit"]
