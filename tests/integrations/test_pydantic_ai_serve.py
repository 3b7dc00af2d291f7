"""A Pydantic AI agent behind ``tether serve``'s HTTP API (the real service, in a thread)."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import httpx
import pai_workload
import pytest

from store_view import call_with_store
from tether import integrations
from tether.execution.settings import ExecutionSettings
from tether.server import keys
from tether.server.config import ServerConfig
from tether.server.service import Service
from waiting import wait_until


def test_sessions_tasks_and_messages_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_PAI_DIR", str(tmp_path))
    store_url = f"sqlite:///{tmp_path / 'tether.db'}"
    call_with_store(store_url, lambda s: s.schema_version())
    made = keys.new_key()
    call_with_store(
        store_url, lambda s: s.create_api_key("acme", made.key_hash, prefix=made.prefix)
    )
    workflow = integrations.workflow_for(pai_workload.agent)
    assert workflow is not None
    config = ServerConfig(
        store_url=store_url,
        port=0,
        execution=ExecutionSettings(lease_ttl=2.0, poll_interval=0.05),
    )
    service = Service(config, {workflow.name: workflow}, announce=lambda line: None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=lambda: asyncio.run(service.run(sock)), daemon=True)
    thread.start()
    assert service.started.wait(30)
    headers = {"Authorization": f"Bearer {made.key}"}
    try:
        with httpx.Client(base_url=str(service.url), headers=headers, timeout=20) as http:
            session = http.post("/v1/sessions", json={"agent": "pai_counter"})
            assert session.status_code == 201, session.text
            sid = session.json()["id"]
            task = http.post(f"/v1/sessions/{sid}/tasks", json={"input": "count to 2"})
            assert task.status_code == 202, task.text

            def finished() -> dict[str, object] | None:
                body: dict[str, object] = http.get(f"/v1/tasks/{task.json()['id']}").json()
                return body if body["status"] in ("completed", "failed") else None

            done = wait_until(finished, what="the task to finish", timeout=60)
            assert (
                done["status"] == "completed"
                and done["output"] == "counted: recorded 1, recorded 2"
            )
            messages = http.get(f"/v1/sessions/{sid}/messages").json()
            items = messages["messages"]
            assert [m["role"] for m in items] == [
                "user", "assistant", "tool", "assistant", "tool", "assistant",
            ]  # fmt: skip
            assert items[-1]["content"] == "counted: recorded 1, recorded 2"
    finally:
        service.request_drain()
        thread.join(30)
    assert not thread.is_alive()
