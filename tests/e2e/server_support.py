"""A real ``tether serve`` for the HTTP tests: in a thread (``Service``) or a subprocess,
API keys made through the store, and a small Server-Sent Events reader."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import server_agents

from store_view import call_with_store
from tether.execution.runner import Workflow
from tether.execution.settings import ExecutionSettings
from tether.server import keys
from tether.server.config import ServerConfig
from tether.server.service import Service

T = TypeVar("T")
HERE = Path(__file__).parent
AGENTS_SPEC = f"{HERE / 'server_agents.py'}:runtime"
TETHER = str(Path(sys.executable).with_name("tether"))


def make_key(store_url: str, tenant: str) -> str:
    made = keys.new_key()
    call_with_store(
        store_url, lambda s: s.create_api_key(tenant, made.key_hash, prefix=made.prefix)
    )
    return made.key


def make_operator_key(store_url: str) -> str:
    """Through the CLI, as an operator does: ``tether keys create --operator``."""
    made = subprocess.run(
        [TETHER, "keys", "create", "--operator", "--json", "--store", store_url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    created = json.loads(made.stdout)
    assert (created["tenant"], created["operator"]) == ("*", True)
    key: str = created["key"]
    return key


def fast_settings() -> ExecutionSettings:
    return ExecutionSettings(lease_ttl=2.0, poll_interval=0.05, drain_grace=10.0)


@dataclass
class Running:
    url: str
    store_url: str
    service: Service
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str | None = None) -> httpx.Client:
        """A client with the key's bearer header; closed when the server stops."""
        made = _client(self.url, key)
        self.clients.append(made)
        return made


def _client(url: str, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=20.0)


@contextlib.contextmanager
def serve_in_thread(
    store_url: str, *, workflows: Mapping[str, Workflow] | None = None, **overrides: Any
) -> Iterator[Running]:
    """``workflows``: the agents to serve (default: ``server_agents``'); ``overrides``
    change the ``ServerConfig``."""
    config = ServerConfig(store_url=store_url, port=0, execution=fast_settings())
    config = replace(config, **overrides)
    served = workflows if workflows is not None else server_agents.runtime.workflows
    service = Service(config, served, announce=lambda line: None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(service.run(sock))
        except BaseException as exc:  # reported by the test thread
            failure.append(exc)

    thread = threading.Thread(target=main, name="tether-serve-test", daemon=True)
    thread.start()
    if not service.started.wait(15):
        raise RuntimeError(f"the service did not start: {failure}")
    assert service.url is not None
    running = Running(service.url, store_url, service)
    try:
        yield running
    finally:
        for made in running.clients:
            made.close()
        service.request_drain()
        thread.join(30)
        assert not thread.is_alive(), "the service did not stop after its drain"
        if failure:
            raise failure[0]


@dataclass
class ServeProcess:
    proc: subprocess.Popen[str]
    url: str
    log: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str | None = None) -> httpx.Client:
        made = _client(self.url, key)
        self.clients.append(made)
        return made

    def close_clients(self) -> None:
        for made in self.clients:
            made.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_serve(store_url: str, tmp: Path, *args: str, name: str = "serve") -> ServeProcess:
    """``tether serve`` in a subprocess; returns once ``/healthz`` answers."""
    port = free_port()
    log = tmp / f"{name}.log"
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [TETHER, "serve", AGENTS_SPEC, "--port", str(port), "--store", store_url,
             "--lease-ttl", "2", "--poll", "0.05", "--log-text", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    served = ServeProcess(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tether serve exited {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(served.url + "/healthz", timeout=1).status_code == 200:
                return served
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"tether serve did not answer:\n{log.read_text()}")


@dataclass
class Event:
    event: str
    data: dict[str, Any]
    id: int | None


def read_events(
    client: httpx.Client,
    task_id: str,
    *,
    last_event_id: int | None = None,
    stop_after: int | None = None,
    until: str | None = None,
) -> list[Event]:
    """Read a task's event stream until it ends (or ``stop_after`` events with an id, or
    the first event named ``until``, then hang up). Closing events (``stream.end``,
    ``stream.reconnect``) are included."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    out: list[Event] = []
    with client.stream("GET", f"/v1/tasks/{task_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line == "":
                if "event" in fields:
                    event_id = int(fields["id"]) if "id" in fields else None
                    out.append(Event(fields["event"], json.loads(fields["data"]), event_id))
                    if stop_after is not None and sum(e.id is not None for e in out) >= stop_after:
                        return out
                    if until is not None and out[-1].event == until:
                        return out
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    return out
