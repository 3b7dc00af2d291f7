from __future__ import annotations

import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tether import errors, types
from tether.models.scripted import ScriptedModel
from tether.testing import Fault, StandInModelServer, hashed_embedding


@pytest.fixture
def server() -> Iterator[StandInModelServer]:
    with StandInModelServer(["first", "second"], model_name="stand") as stand_in:
        yield stand_in


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def chat(content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "any", "messages": [{"role": "user", "content": content}], **extra}


def test_chat_completion_shape(server: StandInModelServer, client: httpx.Client) -> None:
    r = client.post(f"{server.base_url}/chat/completions", json=chat())
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "any"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "first"}
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_tool_calls_on_the_wire(client: httpx.Client) -> None:
    with StandInModelServer(ScriptedModel.call("add", a=1)) as server:
        r = client.post(f"{server.base_url}/chat/completions", json=chat())
    message = r.json()["choices"][0]["message"]
    assert r.json()["choices"][0]["finish_reason"] == "tool_calls"
    (call,) = message["tool_calls"]
    assert call["type"] == "function"
    assert call["function"] == {"name": "add", "arguments": '{"a": 1}'}
    assert call["id"].startswith("call_")


def test_context_window_is_enforced_like_vllm(client: httpx.Client) -> None:
    with StandInModelServer("ok", context_window=40) as server:
        url = f"{server.base_url}/chat/completions"
        # prompt: 3 (reply) + 4 (message) + 10 (40 chars) = 17 tokens
        too_big = client.post(url, json=chat("x" * 40, max_tokens=30))
        fits = client.post(url, json=chat("x" * 40, max_tokens=23))
        no_max = client.post(url, json=chat("x" * 40))
        prompt_alone = client.post(url, json=chat("x" * 200))
    assert too_big.status_code == 400
    assert too_big.json() == {
        "object": "error",
        "message": (
            "This model's maximum context length is 40 tokens. However, you requested 47 "
            "tokens (17 in the messages, 30 in the completion). Please reduce the length of "
            "the messages or completion."
        ),
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
    assert fits.status_code == 200
    assert no_max.status_code == 200
    assert prompt_alone.status_code == 400
    assert server.count == 4


def test_faults_apply_in_order(server: StandInModelServer, client: httpx.Client) -> None:
    server.inject(Fault.status(503, retry_after=1.5), Fault.length("cut"), Fault.garbage("nope"))
    url = f"{server.base_url}/chat/completions"
    unavailable = client.post(url, json=chat())
    assert unavailable.status_code == 503
    assert unavailable.headers["retry-after"] == "1.5"
    assert unavailable.json()["error"]["type"] == "server_error"
    cut = client.post(url, json=chat()).json()["choices"][0]
    assert (cut["finish_reason"], cut["message"]["content"]) == ("length", "cut")
    assert client.post(url, json=chat()).text == "nope"
    assert client.post(url, json=chat()).json()["choices"][0]["message"]["content"] == "first"


def test_status_fault_with_custom_body(server: StandInModelServer, client: httpx.Client) -> None:
    server.inject(Fault.status(400, body={"detail": "custom"}), Fault.status(502, body="raw"))
    url = f"{server.base_url}/chat/completions"
    assert client.post(url, json=chat()).json() == {"detail": "custom"}
    assert client.post(url, json=chat()).text == "raw"
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Fault.status(200)


def test_reset_closes_without_answer(server: StandInModelServer, client: httpx.Client) -> None:
    server.inject(Fault.reset())
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(f"{server.base_url}/chat/completions", json=chat())
    assert client.post(f"{server.base_url}/chat/completions", json=chat()).status_code == 200


def test_requests_are_recorded_from_many_threads(server: StandInModelServer) -> None:
    def send(i: int) -> None:
        with httpx.Client(timeout=10) as http:
            http.post(f"{server.base_url}/chat/completions", json=chat(f"n{i}"))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.count == 8
    contents = sorted(r["messages"][0]["content"] for r in server.requests)
    assert contents == sorted(f"n{i}" for i in range(8))


def test_sequence_script_follows_the_conversation(
    server: StandInModelServer, client: httpx.Client
) -> None:
    body = chat()
    body["messages"] += [{"role": "assistant", "content": "first"}]
    r = client.post(f"{server.base_url}/chat/completions", json=body)
    assert r.json()["choices"][0]["message"]["content"] == "second"


def test_script_errors_become_http_errors(client: httpx.Client) -> None:
    def limited(req: types.ModelRequest) -> str:
        raise errors.RateLimited("busy", retry_after=2)

    with StandInModelServer(limited) as server:
        r = client.post(f"{server.base_url}/chat/completions", json=chat())
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"


def test_bad_requests(server: StandInModelServer, client: httpx.Client) -> None:
    url = f"{server.base_url}/chat/completions"
    assert client.post(url, content=b"{not json").status_code == 400
    assert client.post(url, json={"model": "m"}).status_code == 400
    assert client.post(url, json=chat(max_tokens=0)).status_code == 400
    assert client.post(f"{server.base_url}/nothing", json={}).status_code == 404
    assert client.get(f"{server.base_url}/nothing").status_code == 404


def test_models_endpoint(client: httpx.Client) -> None:
    with StandInModelServer("ok", model_name="local", context_window=2048) as server:
        body = client.get(f"{server.base_url}/models").json()
    assert body["object"] == "list"
    assert body["data"][0]["id"] == "local"
    assert body["data"][0]["max_model_len"] == 2048


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_deterministic_and_normalised(
    server: StandInModelServer, client: httpx.Client
) -> None:
    texts = ["the cat sat on the mat", "The cat sat on a mat!", "quarterly revenue report"]
    url = f"{server.base_url}/embeddings"
    body = client.post(url, json={"model": "e", "input": texts}).json()
    again = client.post(url, json={"model": "e", "input": texts}).json()
    vectors = [item["embedding"] for item in body["data"]]
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    assert vectors == [item["embedding"] for item in again["data"]]
    assert vectors[0] == hashed_embedding(texts[0])
    assert all(len(v) == 64 for v in vectors)
    assert all(math.isclose(math.sqrt(cosine(v, v)), 1.0) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert body["usage"]["prompt_tokens"] > 0
    small = client.post(url, json={"input": "one", "dimensions": 8}).json()
    assert len(small["data"][0]["embedding"]) == 8
    assert client.post(url, json={"input": [1, 2]}).status_code == 400
    assert server.embedding_requests[0]["input"] == texts
    assert server.count == 0


def test_empty_text_embeds_to_zero() -> None:
    assert hashed_embedding("  ...  ", 4) == [0.0, 0.0, 0.0, 0.0]


def test_close_cuts_kept_alive_connections_and_pending_delays() -> None:
    server = StandInModelServer("ok")
    http = httpx.Client(timeout=30)
    try:
        assert http.post(f"{server.base_url}/chat/completions", json=chat()).status_code == 200
        server.inject(Fault.delay(60))
        outcome: list[BaseException | int] = []

        def slow() -> None:
            try:
                with httpx.Client(timeout=90) as other:
                    r = other.post(f"{server.base_url}/chat/completions", json=chat())
                outcome.append(r.status_code)
            except httpx.TransportError as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=slow)
        waiter.start()
        while server.count < 2:
            threading.Event().wait(0.01)
        server.close()
        waiter.join()
        assert len(outcome) == 1 and isinstance(outcome[0], httpx.TransportError)
        server.close()  # idempotent
    finally:
        http.close()
        server.close()


def test_standalone_command() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether.testing", "--port", "0", "--reply", "from cli"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("stand-in model server listening at http://127.0.0.1:")
        base_url = line.rsplit(" ", 1)[1].strip()
        with httpx.Client(timeout=10) as http:
            r = http.post(f"{base_url}/chat/completions", json=chat())
        assert r.json()["choices"][0]["message"]["content"] == "from cli"
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
