"""The HTTP service against a hostile client, on both engines: malformed ids, junk bodies,
amplifying bodies, half-sent requests, too many streams, a revoked key's stream, a store
that goes away. Nothing answers 500, nothing is unbounded, and no answer and no log line
carries the store's password (the PostgreSQL URL has one, in its userinfo and its query).

One server per engine for the module (a real ``Service`` with its uvicorn, API only),
so the whole module runs in seconds.
"""

from __future__ import annotations

import io
import json
import logging
import random
import socket
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from server_support import Running, make_key, serve_in_thread

import pg
from store_view import call_with_store
from tether.observe.logging import configure_logging
from tether.server import keys
from waiting import wait_until

SECRET = "Hostile-S3cret-pw"
STREAM_CAP = 3

# What every test in this module saw: each HTTP body, each log line (checked at the end).
BODIES: list[str] = []
LOGS = io.StringIO()


def with_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = f"{parts.username}:{SECRET}@{parts.hostname}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=f"password={SECRET}"))


def _record(response: httpx.Response) -> None:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return  # a stream: its lines are recorded by the test that reads them
    response.read()
    BODIES.append(response.text)
    assert response.status_code < 500 or response.status_code == 503, (
        response.request.url,
        response.status_code,
        response.text,
    )


@dataclass
class Served:
    engine: str
    running: Running
    key: str
    session_id: str
    task_id: str
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str | None = None) -> httpx.Client:
        made = httpx.Client(
            base_url=self.running.url,
            headers={"Authorization": f"Bearer {key or self.key}"},
            timeout=20.0,
            event_hooks={"response": [_record]},
        )
        self.clients.append(made)
        return made


@pytest.fixture(scope="module", autouse=True)
def _logs_captured() -> Iterator[None]:
    handler = configure_logging("INFO", json=True, stream=LOGS)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    if request.param == "postgres":
        plain = pg.fresh_url()
        request.addfinalizer(lambda: pg.drop_url(plain))
        url = with_password(plain)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'h.db'}"
    key = make_key(url, "acme")
    with serve_in_thread(
        url,
        workers=0,  # tasks stay queued: their event streams stay open
        sse_keepalive=0.2,
        sse_poll_interval=0.05,
        sse_max_streams_per_key=STREAM_CAP,
        header_timeout=0.5,
        body_timeout=0.5,
    ) as running:
        c = httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {key}"})
        session = c.post("/v1/sessions", json={"agent": "echo"}).json()["id"]
        task = c.post(f"/v1/sessions/{session}/tasks", json={"input": "hi"}).json()["id"]
        c.close()
        made = Served(request.param, running, key, session, task)
        try:
            yield made
        finally:
            for client in made.clients:
                client.close()


ID_ROUTES = [
    ("GET", "/v1/sessions/{id}"),
    ("POST", "/v1/sessions/{id}/tasks"),
    ("GET", "/v1/sessions/{id}/messages"),
    ("GET", "/v1/sessions/{id}/context"),
    ("GET", "/v1/tasks/{id}"),
    ("GET", "/v1/tasks/{id}/events"),
    ("POST", "/v1/tasks/{id}/cancel"),
]
BAD_IDS = ["%00", "a%00b", "%01", "%1b%5b31m", "%7f", "x" * 300]
ODD_BUT_VALID_IDS = ["%C3%A9t%C3%A9", "..", "'%20OR%201=1--", "%E2%80%AE", "%FF%FE"]


def test_malformed_ids_are_refused_at_the_edge_on_every_id_route(served: Served) -> None:
    c = served.client()
    for method, route in ID_ROUTES:
        for bad in BAD_IDS:
            answer = c.request(method, route.replace("{id}", bad), json={"input": "x"})
            assert answer.status_code == 422, (served.engine, route, bad, answer.text)
            assert answer.json()["error"]["error_class"] == "InvalidInput"
        for odd in ODD_BUT_VALID_IDS:
            answer = c.request(method, route.replace("{id}", odd), json={"input": "x"})
            assert answer.status_code == 404, (served.engine, route, odd, answer.text)


def test_random_paths_and_bodies_never_answer_500(served: Served) -> None:
    rng = random.Random(14)
    c = served.client()
    alphabet = [chr(i) for i in range(0, 128)] + ["é", "\u202e", "\ud800", "😀"]
    for _ in range(60):
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        encoded = urllib.parse.quote(junk.encode("utf-8", "surrogatepass"), safe="")
        method, route = rng.choice(ID_ROUTES)
        answer = c.request(method, route.replace("{id}", encoded))
        assert answer.status_code in (404, 422), (route, junk, answer.text)
    bodies: list[Any] = [
        b"", b"null", b"[]", b"{", b"\xff\xfe", b'{"agent": null}', b'{"agent": 7}',
        b'{"agent": "echo", "agent": "x"}', b'{"agent": "\\u0000"}', b"[" * 50_000,
        json.dumps({"agent": "e" * 10_000}).encode(), json.dumps({"input": ["x"]}).encode(),
    ]  # fmt: skip
    for body in bodies:
        for path in ("/v1/sessions", f"/v1/sessions/{served.session_id}/tasks"):
            answer = c.post(path, content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code in (404, 422), (path, body[:40], answer.text)
            assert len(answer.content) < 2_000


def test_a_body_of_many_unknown_keys_gets_one_small_422(served: Served) -> None:
    c = served.client()
    body = json.dumps({str(i): 1 for i in range(90_000)} | {"agent": "echo"}, separators=(",", ":"))
    assert len(body) > 800_000
    answer = c.post(
        "/v1/sessions",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert len(answer.content) < 2_000, len(answer.content)
    assert "89995 more" in answer.json()["error"]["message"]


def _raw(served: Served, data: bytes) -> socket.socket:
    parts = urllib.parse.urlsplit(served.running.url)
    sock = socket.create_connection((parts.hostname or "", parts.port or 80), timeout=10)
    sock.sendall(data)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def test_half_sent_requests_are_closed(served: Served) -> None:
    """Headers that never finish: closed. A body that stops: 408, then closed."""
    headers_only = _raw(served, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    body_cut = _raw(
        served,
        b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + served.key.encode() + b"\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"agent": ',
    )
    with headers_only, body_cut:
        assert _read_until_closed(headers_only) == b""
        answer = _read_until_closed(body_cut)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    BODIES.append(answer.decode("utf-8", "replace"))


def _open_stream(client: httpx.Client, task_id: str) -> tuple[httpx.Response, Any]:
    cm = client.stream("GET", f"/v1/tasks/{task_id}/events")
    response = cm.__enter__()
    return response, cm


def test_one_key_holds_a_bounded_number_of_streams(served: Served) -> None:
    c = served.client()
    opened = [_open_stream(c, served.task_id) for _ in range(STREAM_CAP)]
    try:
        assert [r.status_code for r, _ in opened] == [200] * STREAM_CAP
        refused = c.get(f"/v1/tasks/{served.task_id}/events")
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) > 0
        assert refused.json()["error"]["error_class"] == "TooManyRequests"
        other = make_key(served.running.store_url, "acme")
        response, cm = _open_stream(served.client(other), served.task_id)
        assert response.status_code == 200  # the cap is per key
        cm.__exit__(None, None, None)
    finally:
        first, rest = opened[0], opened[1:]
        first[1].__exit__(None, None, None)
    # a slot comes back when its client hangs up
    wait_until(lambda: _try_stream(c, served.task_id), what="a stream slot freed by a hang-up")
    for _, cm in rest:
        cm.__exit__(None, None, None)


def _try_stream(client: httpx.Client, task_id: str) -> bool:
    response, cm = _open_stream(client, task_id)
    try:
        return response.status_code == 200
    finally:
        cm.__exit__(None, None, None)


def test_a_revoked_keys_stream_ends_at_its_next_heartbeat(served: Served) -> None:
    made = keys.new_key()
    record = call_with_store(
        served.running.store_url,
        lambda s: s.create_api_key("acme", made.key_hash, prefix=made.prefix),
    )
    c = served.client(made.key)
    seen: list[str] = []
    with c.stream("GET", f"/v1/tasks/{served.task_id}/events") as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        while not any("task.queued" in line or "task.submitted" in line for line in seen):
            seen.append(next(lines))
            if len(seen) > 20:
                break
        call_with_store(served.running.store_url, lambda s: s.revoke_api_key(record.id))
        began = time.monotonic()
        seen.extend(lines)  # ends by itself, or the test times out
    assert "event: stream.revoked" in seen, seen
    assert time.monotonic() - began < 15
    BODIES.extend(seen)
    assert c.get(f"/v1/tasks/{served.task_id}").status_code == 401


def test_readyz_names_nothing_of_a_store_that_went_away() -> None:
    """PostgreSQL's database dropped under a running server: readyz says only
    "store unavailable"; the database's name, host and user go to the log."""
    plain = pg.fresh_url()
    name = urllib.parse.urlsplit(plain).path.lstrip("/")
    url = with_password(plain)
    try:
        with serve_in_thread(url, workers=0) as running:
            c = httpx.Client(base_url=running.url, event_hooks={"response": [_record]})
            with c:
                assert c.get("/readyz").status_code == 200
                pg.drop_database(name)
                answer = wait_until(
                    lambda: (r := c.get("/readyz")).status_code == 503 and r,
                    what="readyz 503 once the database is gone",
                )
            assert answer.json() == {"status": "unavailable", "detail": "store unavailable"}
            for part in (name, "127.0.0.1", "postgres", SECRET):
                assert part not in answer.text
    finally:
        pg.drop_database(name)
    assert name in LOGS.getvalue()  # the details are in the log


def test_no_answer_and_no_log_line_carries_the_password() -> None:
    """Runs last in this module: everything the tests above made the server say."""
    logged = LOGS.getvalue()
    assert BODIES and logged
    for text in (*BODIES, logged):
        assert SECRET not in text
        assert urllib.parse.quote(SECRET) not in text
