"""The README's own example survives what a newcomer does with it over HTTP: a session
of more than twenty tasks (its offline model writes the summary the context policy
asks for), and an input too long to ever fit, refused with a clear 422 while the
session goes on working."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from server_support import fast_settings, make_key

from tether.cli.spec import build_runtime
from tether.server.config import ServerConfig
from tether.server.service import Service
from waiting import wait_until

SPEC = f"{Path(__file__).parents[2] / 'examples' / 'counter.py'}:agent"
TASKS = 22


@pytest.fixture
def counter_server(tmp_path: Path) -> Iterator[tuple[httpx.Client, str]]:
    url = f"sqlite:///{tmp_path / 'counter.db'}"
    runtime = build_runtime([SPEC], url)
    config = replace(ServerConfig(store_url=url, port=0), execution=fast_settings())
    service = Service(config, runtime.workflows, announce=lambda line: None)
    sock = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=lambda: asyncio.run(service.run(sock)), daemon=True)
    thread.start()
    assert service.started.wait(30)
    key = make_key(url, "newcomer")
    with httpx.Client(
        base_url=service.url or "", headers={"Authorization": f"Bearer {key}"}, timeout=20
    ) as client:
        yield client, url
    service.request_drain()
    thread.join(30)


def test_a_long_session_and_an_input_that_never_fits(
    counter_server: tuple[httpx.Client, str],
) -> None:
    c, _ = counter_server
    session = c.post("/v1/sessions", json={"agent": "counter"}).json()["id"]
    huge = c.post(f"/v1/sessions/{session}/tasks", json={"input": "x" * 100_000})
    assert huge.status_code == 422, huge.text[:300]
    assert "can never be sent" in huge.json()["error"]["message"]

    ids = [
        c.post(f"/v1/sessions/{session}/tasks", json={"input": "go"}).json()["id"]
        for _ in range(TASKS)
    ]
    last = wait_until(
        lambda: (
            (t := c.get(f"/v1/tasks/{ids[-1]}").json())["status"] in ("completed", "failed") and t
        ),
        what=f"{TASKS} tasks of one session",
        timeout=120,
    )
    statuses = [c.get(f"/v1/tasks/{i}").json()["status"] for i in ids]
    assert statuses == ["completed"] * TASKS, (statuses, last.get("error"))
    context = c.get(f"/v1/sessions/{session}/context").json()
    assert context["compactions"] > 0 and context["summary"]
