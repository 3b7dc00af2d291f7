from __future__ import annotations

import asyncio
import json

import pytest

from tether import errors, types
from tether.models import scripted
from tether.models.scripted import ScriptedModel, estimate_tokens

SYSTEM = types.Message(role="system", content="be brief")


def msg(role: types.Role, content: str | None = None, **kw: object) -> types.Message:
    return types.Message(role=role, content=content, **kw)  # type: ignore[arg-type]


def request(*messages: types.Message) -> types.ModelRequest:
    return types.ModelRequest(messages=(SYSTEM, *messages))


def test_same_request_same_reply_and_stable_tool_call_ids() -> None:
    model = ScriptedModel([ScriptedModel.calls([("a", {"x": 1}), ScriptedModel.call("b", y=2)])])
    req = request(msg("user", "go"))
    first, second = model.reply(req), model.reply(req)
    assert first == second
    ids = [c.id for c in first.message.tool_calls]
    assert len(set(ids)) == 2
    # A fresh model with the same script gives the same ids: nothing depends on state.
    assert ScriptedModel(model._script).reply(req) == first
    assert first.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in first.message.tool_calls] == [
        ("a", {"x": 1}),
        ("b", {"y": 2}),
    ]


def test_tool_call_ids_differ_across_turns() -> None:
    model = ScriptedModel([ScriptedModel.call("t")])
    turn_one = model.reply(request(msg("user", "one"))).message
    history = (
        msg("user", "one"),
        turn_one,
        msg("tool", "r", tool_call_id=turn_one.tool_calls[0].id),
        msg("assistant", "done"),
        msg("user", "two"),
    )
    turn_two = model.reply(request(*history)).message
    assert turn_two.tool_calls[0].id != turn_one.tool_calls[0].id


def test_sequence_index_counts_assistant_messages_since_last_user() -> None:
    model = ScriptedModel([ScriptedModel.call("lookup", q="x"), "second", "third"])
    call = model.reply(request(msg("user", "hi"))).message
    assert call.tool_calls[0].name == "lookup"
    after_tool = request(
        msg("user", "hi"), call, msg("tool", "found", tool_call_id=call.tool_calls[0].id)
    )
    assert model.reply(after_tool).message.content == "second"
    two_more = request(msg("user", "hi"), msg("assistant", "a"), msg("assistant", "b"))
    assert model.reply(two_more).message.content == "third"
    # Past the end, the last reply repeats.
    many = request(msg("user", "hi"), *[msg("assistant", str(i)) for i in range(5)])
    assert model.reply(many).message.content == "third"
    # A new user turn replays the script from the start.
    new_turn = request(msg("user", "hi"), msg("assistant", "a"), msg("user", "again"))
    assert model.reply(new_turn).message.tool_calls[0].name == "lookup"


def test_callable_script_gets_the_request() -> None:
    def echo(req: types.ModelRequest) -> scripted.Reply:
        last = req.messages[-1].content or ""
        return ScriptedModel.truncated(last[:3]) if req.max_tokens == 1 else last.upper()

    model = ScriptedModel(echo, name="echo")
    assert model.reply(request(msg("user", "abc"))).message.content == "ABC"
    cut = model.reply(types.ModelRequest(messages=(msg("user", "abcdef"),), max_tokens=1))
    assert (cut.finish_reason, cut.message.content, cut.model) == ("length", "abc", "echo")


def test_single_reply_and_model_response() -> None:
    assert ScriptedModel("only").reply(request(msg("user", "x"))).message.content == "only"
    given = types.ModelResponse(message=msg("assistant", "exact"), finish_reason="stop")
    out = ScriptedModel([given], name="n").reply(request(msg("user", "x")))
    assert out.message == given.message
    assert out.model == "n"
    assert out.usage is not None and out.usage.completion_tokens == 2


def test_raw_argument_text_is_sent_verbatim() -> None:
    reply = ScriptedModel([ScriptedModel.calls([("t", "{not json")])]).reply(
        request(msg("user", "x"))
    )
    assert reply.message.tool_calls[0].arguments == "{not json"


def test_estimate_tokens_is_the_documented_formula() -> None:
    tool = types.ToolSpec("add", "Add.", {"type": "object"})
    messages = (
        msg("user", "12345"),  # 4 + 2
        msg("assistant", None, tool_calls=(types.ToolCall("c1", "add", '{"a":1}'),)),  # 4+4+1+2
        msg("tool", "2", tool_call_id="c1", name="add"),  # 4 + 1 + 1
    )
    schema_tokens = scripted.text_tokens('{"type":"object"}')  # 17 chars -> 5
    expected = 3 + 6 + 11 + 6 + (8 + 1 + 1 + schema_tokens)
    assert estimate_tokens(messages, (tool,)) == expected == 41
    assert estimate_tokens(()) == 3


def test_request_counts_carried_on_equal_a_count_from_scratch() -> None:
    """An extended request reuses its prefix's counts; a diverging one, another
    conversation, or a request of the same length with other messages is counted anew:
    every answer equals ``estimate_tokens`` and a plain count of assistant messages."""
    counts = scripted.RequestCounts(size=2)
    call = types.ToolCall(id="c1", name="note", arguments='{"text": "abc"}')
    turns = [msg("user", "go"), msg("assistant", None, tool_calls=(call,))]
    turns += [msg("tool", "x" * 37, tool_call_id="c1", name="note"), msg("assistant", "ok")]
    other = [msg("user", "another conversation"), msg("assistant", "hi")]
    asked = [
        (SYSTEM, *turns[:1]),
        (SYSTEM, *turns[:3]),
        (SYSTEM, *turns),  # extends the last one
        (SYSTEM, turns[0], msg("assistant", "a different answer")),  # diverges
        tuple(other),
        (SYSTEM, *turns[:2]),  # shorter than the known prefix
        (*other, msg("user", "more")),
        (SYSTEM, *turns),
    ]
    for messages in asked:
        tokens, assistants = counts.messages(messages)
        assert tokens + scripted.REPLY_OVERHEAD == estimate_tokens(messages)
        assert assistants == sum(m.role == "assistant" for m in messages)
    assert counts.messages(()) == (0, 0)
    tools = (types.ToolSpec(name="note", description="Write.", parameters={"type": "object"}),)
    assert counts.tools(tools) == counts.tools(tools) == estimate_tokens((), tools) - 3
    more = (*tools, types.ToolSpec(name="add", description="Add.", parameters={}))
    assert counts.tools(more) == estimate_tokens((), more) - 3  # another task's tools
    assert counts.tools(()) == 0


def test_usage_uses_the_estimates() -> None:
    req = request(msg("user", "what is up"))
    usage = ScriptedModel("abcdefgh").reply(req).usage
    assert usage == types.Usage(estimate_tokens(req.messages), 2)


def test_complete_and_aclose_are_async() -> None:
    model = ScriptedModel(["hi"])

    async def go() -> types.ModelResponse:
        response = await model.complete(request(msg("user", "x")))
        await model.aclose()
        return response

    assert asyncio.run(go()).message.content == "hi"


def test_bad_scripts_are_refused() -> None:
    with pytest.raises(errors.InvalidInput, match="empty"):
        ScriptedModel([])
    with pytest.raises(errors.InvalidInput, match=r"script\[1\] is a int"):
        ScriptedModel(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(errors.InvalidInput):
        ScriptedModel.calls([])


def test_callable_errors_become_model_errors() -> None:
    def broken(req: types.ModelRequest) -> scripted.Reply:
        raise KeyError("oops")

    with pytest.raises(errors.ModelProtocolError, match="KeyError") as info:
        ScriptedModel(broken).reply(request(msg("user", "x")))
    assert isinstance(info.value.__cause__, KeyError)

    def wrong_type(req: types.ModelRequest) -> scripted.Reply:
        return 42  # type: ignore[return-value]

    with pytest.raises(errors.ModelProtocolError, match="returned a int"):
        ScriptedModel(wrong_type).reply(request(msg("user", "x")))

    def limited(req: types.ModelRequest) -> scripted.Reply:
        raise errors.RateLimited("slow down", retry_after=1.0)

    with pytest.raises(errors.RateLimited):
        ScriptedModel(limited).reply(request(msg("user", "x")))
