"""What OpenAIModel does about the servers' quirks (docs/models.md), one test each."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from tether import OpenAIModel, errors, types
from tether.models import openai, streaming
from tether.testing import Fault, StandInModelServer


def body(message: dict[str, object]) -> dict[str, object]:
    return {"choices": [{"message": message, "finish_reason": "tool_calls"}]}


def test_a_tool_call_without_id_or_arguments_gets_a_mistral_safe_id_and_an_object() -> None:
    response = openai.response_from_wire(
        body(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": ""}}],
            }
        ),
        "m",
    )
    (call,) = response.message.tool_calls
    assert re.fullmatch(r"[a-zA-Z0-9]{9}", call.id)
    assert call.arguments == "{}"


def test_arguments_sent_as_an_object_become_json_text() -> None:
    response = openai.response_from_wire(
        body(
            {
                "role": "assistant",
                "tool_calls": [{"id": "a1", "function": {"name": "f", "arguments": {"n": 1}}}],
            }
        ),
        "m",
    )
    assert response.message.tool_calls[0].arguments == '{"n": 1}'


def test_a_tools_only_assistant_turn_goes_out_with_empty_text_not_null() -> None:
    call = types.ToolCall(id="a1", name="f", arguments="{}")
    wire = openai.message_to_wire(types.Message(role="assistant", tool_calls=(call,)))
    assert wire["content"] == ""
    assert openai.message_to_wire(types.Message(role="tool", tool_call_id="a1"))["content"] is None


@pytest.mark.parametrize(
    "said",
    [
        "tools param requires --jinja flag",
        "Failed to parse tools: [json.exception.type_error.302] type must be string",
        '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
    ],
)
def test_a_server_not_set_up_for_tools_is_rejected_at_once_not_retried(said: str) -> None:
    with StandInModelServer(["x"]) as server:
        server.inject(Fault.status(500, body={"error": {"message": said, "code": 500}}))
        model = OpenAIModel(server.base_url, "m")
        request = types.ModelRequest(messages=(types.Message(role="user", content="hi"),))

        async def go() -> None:
            try:
                await model.complete(request)
            finally:
                await model.aclose()

        with pytest.raises(errors.ModelRejected, match="not set up for this request") as info:
            asyncio.run(go())
    assert info.value.retryable is False


def test_a_stream_assembles_calls_by_index_and_a_mid_stream_error_is_a_server_error() -> None:
    def line(delta: dict[str, object], finish: str | None = None) -> str:
        chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return "data: " + json.dumps(chunk)

    pieces: list[str] = []
    assembler = streaming.Assembler("m")
    with streaming.deltas_to(pieces.append):
        for raw in (
            ": keep-alive",
            line({"content": "a"}),
            line({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g"}}]}),
            line({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f"}}]}),
            line({"tool_calls": [{"index": 0, "function": {"arguments": '{"n"'}}]}),
            line({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
            line({"tool_calls": [{"index": 1, "function": {"arguments": {"m": 2}}}]}),
            line({}, "tool_calls"),
            "data: [DONE]",
        ):
            assembler.feed_line(raw)
    response = assembler.response("u")
    assert pieces == ["a"]
    assert [(c.id, c.name, c.arguments) for c in response.message.tool_calls] == [
        ("a", "f", '{"n": 1}'),
        ("b", "g", '{"m": 2}'),
    ]
    with pytest.raises(errors.ServerError, match="stream failed"):
        streaming.Assembler("m").feed_line('data: {"error": {"message": "boom"}}')
    cut = streaming.Assembler("m")
    cut.feed_line(line({"content": "half"}))
    with pytest.raises(errors.StreamInterrupted, match="without a finish_reason"):
        cut.response("u")


def test_the_published_window_of_this_model_or_of_a_listing_with_one_entry() -> None:
    vllm = {"data": [{"id": "a", "max_model_len": 4096}, {"id": "m", "max_model_len": 2048}]}
    assert openai.published_window(vllm, "m") == 2048
    assert openai.published_window({"data": [{"id": "x", "context_length": 999}]}, "m") == 999
    assert openai.published_window(vllm, "other") is None
    assert openai.published_window({"data": [{"id": "m"}]}, "m") is None
    assert openai.published_window("not json", "m") is None


def test_the_output_room_goes_in_the_field_the_server_takes() -> None:
    request = types.ModelRequest(messages=(types.Message(role="user", content="x"),))
    plain = OpenAIModel("http://127.0.0.1:9/v1", "m", max_output_tokens=33)
    reasoning = OpenAIModel(
        "http://127.0.0.1:9/v1", "o", max_output_tokens=33, max_tokens_field="max_completion_tokens"
    )
    assert plain.request_body(request)["max_tokens"] == 33
    body = reasoning.request_body(request)
    assert body["max_completion_tokens"] == 33 and "max_tokens" not in body
