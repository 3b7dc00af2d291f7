"""An Agents SDK agent behind ``tether serve``'s HTTP API (the service in a thread):
a session, a task, its output, and the conversation at ``/v1/sessions/{id}/messages``."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import httpx
import oa_agents
import oa_support
import pytest

from store_view import call_with_store
from tether.execution.settings import ExecutionSettings
from tether.integrations.openai_agents import OpenAIAgentsWorkflow
from tether.server import keys
from tether.server.config import ServerConfig
from tether.server.service import Service
from tether.testing import StandInModelServer
from waiting import wait_until

oa_server = pytest.fixture(name="oa_server")(oa_support.serve_script)


def test_an_agent_served_over_http(tmp_path: Path, oa_server: StandInModelServer) -> None:
    store = f"sqlite:///{tmp_path / 'http.db'}"
    settings = ExecutionSettings(lease_ttl=2.0, poll_interval=0.05)
    workflow = OpenAIAgentsWorkflow(oa_agents.build()["triage"])
    service = Service(
        ServerConfig(store_url=store, port=0, execution=settings),
        {workflow.name: workflow},
        announce=lambda line: None,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=lambda: asyncio.run(service.run(sock)), daemon=True)
    thread.start()
    assert service.started.wait(30), "the service did not start"
    made = keys.new_key()
    call_with_store(store, lambda s: s.create_api_key("acme", made.key_hash, prefix=made.prefix))
    try:
        with httpx.Client(
            base_url=str(service.url), headers={"Authorization": f"Bearer {made.key}"}
        ) as http:
            session = http.post("/v1/sessions", json={"agent": "triage"})
            assert session.status_code == 201, session.text
            sid = session.json()["id"]
            task = http.post(f"/v1/sessions/{sid}/tasks", json={"input": "charged twice"})
            assert task.status_code == 202, task.text

            def done() -> dict[str, object] | None:
                body: dict[str, object] = http.get(f"/v1/tasks/{task.json()['id']}").json()
                return body if body["status"] in ("completed", "failed") else None

            final = wait_until(done, what="the task to finish", timeout=60)
            assert (final["status"], final["output"]) == ("completed", "refunded 5")
            messages = http.get(f"/v1/sessions/{sid}/messages").json()["messages"]
    finally:
        service.request_drain()
        thread.join(30)
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "charged twice"),
        ("assistant", None),
        ("tool", '{"assistant": "billing"}'),
        ("assistant", None),
        ("tool", "refunded 5"),
        ("assistant", "refunded 5"),
    ]
    assert [c["name"] for m in messages for c in m["tool_calls"]] == [
        "transfer_to_billing",
        "refund",
    ]
