from __future__ import annotations

import asyncio
import email.utils
import gc
import json
import pickle
import socket
import time

import httpx
import pytest

from tether import errors, types
from tether.models.openai import OpenAIModel
from tether.models.scripted import ScriptedModel, estimate_tokens
from tether.testing import Fault, StandInModelServer

ADD = types.ToolSpec(
    name="add",
    description="Add two numbers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
)


def user(text: str) -> types.ModelRequest:
    return types.ModelRequest(messages=(types.Message(role="user", content=text),))


def run(model: OpenAIModel, request: types.ModelRequest) -> types.ModelResponse:
    async def go() -> types.ModelResponse:
        try:
            return await model.complete(request)
        finally:
            await model.aclose()

    return asyncio.run(go())


def failure(model: OpenAIModel, request: types.ModelRequest) -> errors.ModelError:
    with pytest.raises(errors.ModelError) as info:
        run(model, request)
    return info.value


def test_round_trip_with_tools_and_tool_calls(server: StandInModelServer) -> None:
    server.use([ScriptedModel.call("add", a=1, b=2), "3"])
    model = OpenAIModel(server.base_url, "m1", max_output_tokens=64)
    first = types.ModelRequest(
        messages=(
            types.Message(role="system", content="You add."),
            types.Message(role="user", content="1+2?"),
        ),
        tools=(ADD,),
        temperature=0.0,
    )
    response = run(model, first)
    assert response.finish_reason == "tool_calls"
    assert response.message.content is None
    (call,) = response.message.tool_calls
    assert call.name == "add"
    assert json.loads(call.arguments) == {"a": 1, "b": 2}
    assert call.id.startswith("call_")

    second = types.ModelRequest(
        messages=(
            *first.messages,
            response.message,
            types.Message(role="tool", content="3", tool_call_id=call.id, name="add"),
        ),
        tools=(ADD,),
    )
    answer = run(model, second)
    assert answer.message == types.Message(role="assistant", content="3")
    assert answer.finish_reason == "stop"
    assert answer.model == "m1"

    sent_first, sent_second = server.requests
    assert sent_first["model"] == "m1"
    assert sent_first["max_tokens"] == 64
    assert sent_first["temperature"] == 0.0
    assert sent_first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "Add two numbers.",
                "parameters": ADD.parameters,
            },
        }
    ]
    assert sent_second["messages"][2] == {
        "role": "assistant",
        "content": "",  # not null: llama-cpp-python's server refuses null (docs/models.md)
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": "add", "arguments": call.arguments},
            }
        ],
    }
    assert sent_second["messages"][3] == {
        "role": "tool",
        "content": "3",
        "tool_call_id": call.id,
        "name": "add",
    }
    assert "temperature" not in sent_second


def test_usage_and_max_tokens(server: StandInModelServer) -> None:
    model = OpenAIModel(server.base_url, "m", max_output_tokens=100)
    request = types.ModelRequest(
        messages=(types.Message(role="user", content="count my tokens please"),),
        max_tokens=7,
    )
    response = run(model, request)
    assert response.usage == types.Usage(estimate_tokens(request.messages), 2)
    assert server.requests[0]["max_tokens"] == 7
    assert "tools" not in server.requests[0]


def test_finish_reason_length_comes_back_as_is(server: StandInModelServer) -> None:
    server.inject(Fault.length("half an ans"))
    response = run(OpenAIModel(server.base_url, "m"), user("hi"))
    assert response.finish_reason == "length"
    assert response.message.content == "half an ans"


def test_429_with_retry_after_seconds_is_rate_limited(server: StandInModelServer) -> None:
    server.inject(Fault.status(429, retry_after=2))
    err = failure(OpenAIModel(server.base_url, "m"), user("hi"))
    assert isinstance(err, errors.RateLimited)
    assert err.retryable
    assert err.retry_after == 2.0
    assert server.base_url + "/chat/completions" in err.message
    assert "429" in err.message
    assert "Rate limit reached" in err.message


def test_429_with_retry_after_http_date(server: StandInModelServer) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.inject(Fault.status(429, retry_after=when))
    err = failure(OpenAIModel(server.base_url, "m"), user("hi"))
    assert isinstance(err, errors.RateLimited)
    assert err.retry_after is not None
    assert 20 <= err.retry_after <= 31


def test_429_without_retry_after(server: StandInModelServer) -> None:
    server.inject(Fault.status(429))
    err = failure(OpenAIModel(server.base_url, "m"), user("hi"))
    assert isinstance(err, errors.RateLimited)
    assert err.retry_after is None


@pytest.mark.parametrize("code", [500, 502, 503])
def test_5xx_is_server_error(server: StandInModelServer, code: int) -> None:
    server.inject(Fault.status(code))
    err = failure(OpenAIModel(server.base_url, "m"), user("hi"))
    assert type(err) is errors.ServerError
    assert err.retryable
    assert str(code) in err.message


def test_reset_is_connection_error(server: StandInModelServer) -> None:
    server.inject(Fault.reset())
    err = failure(OpenAIModel(server.base_url, "m"), user("hi"))
    assert type(err) is errors.ModelConnectionError
    assert err.retryable
    assert isinstance(err.__cause__, httpx.TransportError)
    assert server.base_url in err.message


def test_connection_refused_is_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    err = failure(OpenAIModel(f"http://127.0.0.1:{port}/v1", "m"), user("hi"))
    assert type(err) is errors.ModelConnectionError
    assert "running and reachable" in err.message


def test_delay_past_timeout_is_model_timeout(server: StandInModelServer) -> None:
    server.inject(Fault.delay(2.0))
    err = failure(OpenAIModel(server.base_url, "m", timeout=0.2), user("hi"))
    assert type(err) is errors.ModelTimeout
    assert err.retryable
    assert isinstance(err.__cause__, httpx.TimeoutException)
    assert "0.2s" in err.message


def test_delay_within_timeout_answers(server: StandInModelServer) -> None:
    server.inject(Fault.delay(0.05))
    assert run(OpenAIModel(server.base_url, "m"), user("hi")).message.content == "hello"


def test_context_length_400_is_context_overflow() -> None:
    with StandInModelServer("hello", context_window=50) as server:
        model = OpenAIModel(server.base_url, "m", context_window=50, max_output_tokens=40)
        err = failure(model, user("x" * 80))
    assert type(err) is errors.ContextOverflow
    assert not err.retryable
    assert "maximum context length is 50 tokens" in err.message
    assert "400" in err.message


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "x", "code": "context_length_exceeded", "type": "invalid"}},
        {"error": {"code": 400, "message": "the request exceeds the available context size"}},
        {"error": "the input length exceeds the context length"},
    ],
)
def test_other_servers_context_overflow(
    server: StandInModelServer, body: dict[str, object]
) -> None:
    server.inject(Fault.status(400, body=body))
    assert type(failure(OpenAIModel(server.base_url, "m"), user("hi"))) is errors.ContextOverflow


@pytest.mark.parametrize("code", [400, 404, 422])
def test_other_4xx_is_rejected(server: StandInModelServer, code: int) -> None:
    server.inject(Fault.status(code))
    err = failure(OpenAIModel(server.base_url, "m"), user("hi"))
    assert type(err) is errors.ModelRejected
    assert not err.retryable
    assert str(code) in err.message


@pytest.mark.parametrize("code", [401, 403])
def test_auth_failure_says_check_the_key(server: StandInModelServer, code: int) -> None:
    server.inject(Fault.status(code))
    err = failure(OpenAIModel(server.base_url, "m", api_key="wrong"), user("hi"))
    assert type(err) is errors.ModelRejected
    assert "API key" in err.message


def test_garbage_body_is_protocol_error(server: StandInModelServer) -> None:
    server.inject(Fault.garbage())
    err = failure(OpenAIModel(server.base_url, "m"), user("hi"))
    assert type(err) is errors.ModelProtocolError
    assert "not a chat completion" in err.message


def test_json_that_is_not_a_completion_is_protocol_error(server: StandInModelServer) -> None:
    server.inject(Fault.garbage('{"object": "list", "data": []}'))
    err = failure(OpenAIModel(server.base_url, "m"), user("hi"))
    assert type(err) is errors.ModelProtocolError
    assert "no choices" in err.message


def test_url_without_scheme_is_rejected_not_retried() -> None:
    err = failure(OpenAIModel("127.0.0.1:1/v1", "m"), user("hi"))
    assert type(err) is errors.ModelRejected
    assert "http://" in err.message


def test_client_follows_the_running_loop(server: StandInModelServer) -> None:
    model = OpenAIModel(server.base_url, "m")

    async def ask() -> str | None:
        return (await model.complete(user("hi"))).message.content

    async def ask_and_close() -> str | None:
        try:
            return await ask()
        finally:
            await model.aclose()

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(ask()) == "hello"
        # Another loop (a worker's) gets its own client while the first is still open.
        assert asyncio.run(ask_and_close()) == "hello"
        assert loop.run_until_complete(ask_and_close()) == "hello"
    finally:
        loop.close()
    assert server.count == 3
    gc.collect()  # a client left open would warn (ResourceWarning) here, failing the test


def test_model_pickles_without_its_client(server: StandInModelServer) -> None:
    model = OpenAIModel(server.base_url, "m", api_key="k", context_window=4096)

    async def use_then_pickle() -> bytes:
        await model.complete(user("hi"))
        data = pickle.dumps(model)
        await model.aclose()
        return data

    copy = pickle.loads(asyncio.run(use_then_pickle()))
    assert (copy.name, copy.context_window, copy.max_output_tokens) == ("m", 4096, 1024)
    assert run(copy, user("again")).message.content == "hello"


def test_invalid_sizes_are_refused() -> None:
    with pytest.raises(errors.InvalidInput, match="must be positive"):
        OpenAIModel("http://127.0.0.1:1/v1", "m", context_window=0)
