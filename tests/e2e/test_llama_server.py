"""tether's OpenAIModel against a real llama.cpp server (``llama-cpp-python[server]``,
installed by ``make llama``) running a tiny random-weight model the tests write.

The model's text is garbage; what is asserted is protocol behaviour: statuses, the
``finish_reason``, usage, tool calls the server makes under a named ``tool_choice``,
and that a history holding tool calls and tool results is accepted turn after turn.
See ``llama_support`` for how the model is made to stop at once (``terse``) or never
(``chatty``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
from llama_support import N_CTX, LlamaServer

from tether import Agent, OpenAIModel, Runtime, errors, tool, types
from tether.models import errors as http_errors
from tether.models import streaming


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer(tmp_path_factory.mktemp("llama"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def model(llama: LlamaServer, name: str = "terse", **kwargs: Any) -> OpenAIModel:
    options: dict[str, Any] = {"context_window": N_CTX, "max_output_tokens": 16, "timeout": 120}
    options.update(kwargs)
    return OpenAIModel(llama.base_url, name, **options)


def complete(client: OpenAIModel, request: types.ModelRequest) -> types.ModelResponse:
    async def go() -> types.ModelResponse:
        try:
            return await client.complete(request)
        finally:
            await client.aclose()

    return asyncio.run(go())


@tool
def record(n: int) -> str:
    """Record the number n."""
    return f"recorded {n}"


def call(call_id: str, n: int) -> types.ToolCall:
    return types.ToolCall(id=call_id, name="record", arguments=json.dumps({"n": n}))


HISTORY = (
    types.Message(role="system", content="Record numbers."),
    types.Message(role="user", content="record 1 and 2"),
    types.Message(role="assistant", content=None, tool_calls=(call("c1", 1), call("c2", 2))),
    types.Message(role="tool", content="recorded 1", tool_call_id="c1", name="record"),
    types.Message(role="tool", content="recorded 2", tool_call_id="c2", name="record"),
    types.Message(role="assistant", content="done"),
    types.Message(role="user", content="and 3?"),
    types.Message(role="assistant", content=None, tool_calls=(call("c3", 3),)),
    types.Message(role="tool", content="recorded 3", tool_call_id="c3", name="record"),
)


def test_history_with_tool_calls_and_results_is_accepted(llama: LlamaServer) -> None:
    response = complete(model(llama), types.ModelRequest(messages=HISTORY, tools=(record.spec,)))
    assert response.finish_reason == "stop"
    assert response.message.role == "assistant"
    assert response.message.tool_calls == ()
    assert response.usage is not None
    assert 100 < response.usage.prompt_tokens < N_CTX  # one token a byte of the template
    assert response.model == "terse"


def test_agent_turns_with_server_made_tool_calls_across_tasks_of_a_session(
    tmp_path: Path, llama: LlamaServer
) -> None:
    # A named tool_choice makes llama.cpp produce a real tool call (grammar-constrained
    # arguments); the next turn goes back to auto and the terse model ends.
    agent = Agent("rec", model(llama), tools=[record], tool_choice="record")
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime:
        runtime.register(agent)
        first = runtime.run(runtime.submit("rec", "record a number").id)
        assert first.status == "completed", first.error
        second = runtime.run(runtime.submit("rec", "again", session=first.task.session_id).id)
        assert second.status == "completed", second.error
        messages = runtime.run_on_store(lambda s: s.list_messages(first.task.session_id))
    roles = [m.message.role for m in messages]
    assert roles == ["user", "assistant", "tool", "assistant"] * 2
    made = messages[1].message.tool_calls
    assert [c.name for c in made] == ["record"]
    assert isinstance(json.loads(made[0].arguments)["n"], int)
    assert messages[2].message.tool_call_id == made[0].id
    assert (messages[2].message.content or "").startswith("recorded ")


def test_a_prompt_past_the_context_is_context_overflow(llama: LlamaServer) -> None:
    request = types.ModelRequest(
        messages=(types.Message(role="user", content="x" * (N_CTX + 100)),)
    )
    with pytest.raises(errors.ContextOverflow) as info:
        complete(model(llama), request)
    assert f"maximum context length is {N_CTX} tokens" in str(info.value)
    assert info.value.retryable is False


def test_an_agent_told_a_larger_window_fails_as_context_overflow(
    tmp_path: Path, llama: LlamaServer
) -> None:
    agent = Agent("big", model(llama, context_window=8192))
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime:
        runtime.register(agent)
        result = runtime.run(runtime.submit("big", "y" * (N_CTX + 100)).id)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["error_class"] == "ContextOverflow"
    assert result.error["type"] == "model"


def test_an_answer_cut_at_max_tokens_says_length(llama: LlamaServer) -> None:
    request = types.ModelRequest(
        messages=(types.Message(role="user", content="talk"),), max_tokens=6
    )
    response = complete(model(llama, "chatty"), request)
    assert response.finish_reason == "length"
    assert response.usage is not None
    assert response.usage.completion_tokens == 6
    assert response.message.content


def test_an_agent_whose_answers_never_end_fails_as_output_truncated(
    tmp_path: Path, llama: LlamaServer
) -> None:
    agent = Agent("talker", model(llama, "chatty", max_output_tokens=4))
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime:
        runtime.register(agent)
        result = runtime.run(runtime.submit("talker", "talk").id)
        task_id = result.id
        (step,) = runtime.run_on_store(lambda s: s.load_journal(task_id))
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["error_class"] == "OutputTruncated"
    assert step.attempts == 2  # asked again once with twice the room, then failed


def test_the_raw_quirks_tether_works_around(llama: LlamaServer) -> None:
    """What this server does with the wire forms tether no longer sends (docs/models.md):
    a null content beside tool calls and a json_schema response_format are refused with
    a 500, which tether would otherwise retry; both are ModelRejected at once."""
    client = model(llama)
    null_content = client.request_body(types.ModelRequest(messages=HISTORY, tools=(record.spec,)))
    null_content["messages"][2]["content"] = None
    schema = {"name": "Count", "schema": {"type": "object"}}
    json_schema = model(llama, structured_output="json_schema").request_body(
        types.ModelRequest(messages=HISTORY[:2], output_schema=schema)
    )

    async def post(body: dict[str, Any]) -> None:
        async with httpx.AsyncClient(timeout=60) as raw:
            response = await raw.post(client.url, json=body)
        http_errors.raise_for_status(response, client.url)

    for body in (null_content, json_schema):
        with pytest.raises(errors.ModelRejected, match="not set up for this request"):
            asyncio.run(post(body))


class Count(pydantic.BaseModel):
    n: int


def test_structured_output_through_json_object_with_a_schema(
    tmp_path: Path, llama: LlamaServer
) -> None:
    agent = Agent(
        "counter",
        model(llama, structured_output="json_object", max_output_tokens=48),
        output_type=Count,
    )
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime:
        runtime.register(agent)
        result = runtime.run(runtime.submit("counter", "count").id)
    assert result.status == "completed", result.error
    assert isinstance(result.output["n"], int)
    assert set(result.output) == {"n"}


def test_streaming_text_and_tool_calls(llama: LlamaServer) -> None:
    pieces: list[str] = []
    talk = types.ModelRequest(messages=(types.Message(role="user", content="talk"),), max_tokens=6)
    forced = types.ModelRequest(
        messages=(types.Message(role="user", content="record"),),
        tools=(record.spec,),
        tool_choice="record",
        max_tokens=48,
    )
    with streaming.deltas_to(pieces.append):
        text = complete(model(llama, "chatty", stream=True), talk)
    called = complete(model(llama, stream=True), forced)

    assert text.finish_reason == "length"
    assert pieces and "".join(pieces) == text.message.content
    assert text.usage is None  # this server sends no usage chunk (stream_options ignored)
    assert called.finish_reason == "tool_calls"
    (made,) = called.message.tool_calls
    assert made.name == "record"
    assert isinstance(json.loads(made.arguments)["n"], int)
