"""The agent's model features against the stand-in server over real HTTP: ``tool_choice``
(on the Agent and per request), concurrent tool calls of one turn, structured output
(``response_format`` json_schema, or the final-answer tool) with bounded retries."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from tether import Agent, OpenAIModel, Runtime, errors, tool, types
from tether.models.scripted import ScriptedModel
from tether.testing import StandInModelServer


class City(pydantic.BaseModel):
    name: str
    population: int


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


class InTurn:
    """Replies in the order of the requests (a validation error goes back as a user
    message, which restarts a ScriptedModel's list)."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = replies
        self.seen = 0

    def __call__(self, request: types.ModelRequest) -> str:
        self.seen += 1
        return self.replies[min(self.seen, len(self.replies)) - 1]


@pytest.fixture
def server() -> Iterator[StandInModelServer]:
    with StandInModelServer(["unused"]) as srv:
        yield srv


def run_agent(tmp_path: Path, agent: Agent, store: str | None = None) -> Any:
    with Runtime(store or f"sqlite:///{tmp_path / 'r.db'}") as runtime:
        runtime.register(agent)
        task = runtime.submit(agent.name, "go")
        result = runtime.run(task.id)
        journal = runtime.run_on_store(lambda s: s.load_journal(task.id))
        messages = runtime.run_on_store(lambda s: s.list_messages(task.session_id))
    return result, journal, [m.message for m in messages]


def model(server: StandInModelServer, **kwargs: Any) -> OpenAIModel:
    return OpenAIModel(server.base_url, "m", max_output_tokens=64, **kwargs)


# ---- tool_choice ---------------------------------------------------------------


def test_agent_tool_choice_goes_on_the_first_turn_then_back_to_auto(
    tmp_path: Path, server: StandInModelServer
) -> None:
    server.use([ScriptedModel.call("add", a=1, b=2), "3"])
    agent = Agent("adder", model(server), tools=[add], tool_choice="required")
    result, _, _ = run_agent(tmp_path, agent)
    assert result.output == "3"
    first, second = server.requests
    assert first["tool_choice"] == "required"
    assert "tool_choice" not in second  # a forced choice kept would loop for ever


def test_named_tool_choice_and_a_choice_kept_on_every_turn(
    tmp_path: Path, server: StandInModelServer
) -> None:
    server.use([ScriptedModel.call("add", a=1, b=2), "3"])
    agent = Agent("adder", model(server), tools=[add], tool_choice="add", reset_tool_choice=False)
    run_agent(tmp_path, agent)
    named = {"type": "function", "function": {"name": "add"}}
    assert [r["tool_choice"] for r in server.requests] == [named, named]


def test_a_tool_choice_naming_no_tool_is_refused(server: StandInModelServer) -> None:
    with pytest.raises(errors.InvalidInput, match="tool_choice 'sub' is neither"):
        Agent("adder", model(server), tools=[add], tool_choice="sub")


def test_tool_choice_per_request(server: StandInModelServer) -> None:
    server.use(["fine"])
    request = types.ModelRequest(
        messages=(types.Message(role="user", content="hi"),),
        tools=(add.spec,),
        tool_choice="none",
    )
    bare = types.ModelRequest(messages=request.messages, tool_choice="required")

    async def go() -> None:
        client = model(server)
        try:
            await client.complete(request)
            await client.complete(bare)  # no tools: no tool_choice on the wire (a 400 else)
        finally:
            await client.aclose()

    asyncio.run(go())
    assert server.requests[0]["tool_choice"] == "none"
    assert "tool_choice" not in server.requests[1]


# ---- concurrent tool calls -----------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_the_calls_of_one_turn_run_at_once_and_answer_in_the_models_order(
    tmp_path: Path, server: StandInModelServer, engine: str, request: pytest.FixtureRequest
) -> None:
    store = request.getfixturevalue("pg_url") if engine == "postgres" else None
    barrier = threading.Barrier(3, timeout=30)  # passes only if all three run together

    @tool
    def slow_add(a: int, b: int) -> int:
        """Add two numbers, slowly."""
        barrier.wait()
        return a + b

    turn = ScriptedModel.calls([ScriptedModel.call("slow_add", a=n, b=n) for n in (3, 1, 2)])
    server.use([turn, "done"])
    agent = Agent("fan", model(server), tools=[slow_add])
    result, journal, messages = run_agent(tmp_path, agent, store)
    assert result.output == "done"
    assert [(s.index, s.kind) for s in journal] == [
        (0, "model"), (1, "tool"), (2, "tool"), (3, "tool"), (4, "model")
    ]  # fmt: skip
    calls = messages[1].tool_calls
    assert [(m.tool_call_id, m.content) for m in messages[2:5]] == [
        (calls[0].id, "6"), (calls[1].id, "2"), (calls[2].id, "4")
    ]  # fmt: skip


def test_parallel_tool_calls_off_runs_them_in_turn_with_the_same_steps(
    tmp_path: Path, server: StandInModelServer
) -> None:
    order: list[int] = []

    @tool
    def note(n: int) -> int:
        """Note n."""
        order.append(n)
        return n

    server.use([ScriptedModel.calls([ScriptedModel.call("note", n=n) for n in (1, 2, 3)]), "ok"])
    agent = Agent("seq", model(server), tools=[note], parallel_tool_calls=False)
    result, journal, _ = run_agent(tmp_path, agent)
    assert result.output == "ok"
    assert order == [1, 2, 3]
    assert [s.kind for s in journal] == ["model", "tool", "tool", "tool", "model"]
    assert [s.message_seqs for s in journal[1:4]] == [(3,), (4,), (5,)]


# ---- structured output ---------------------------------------------------------


def test_json_schema_answer_is_validated_and_a_bad_one_sent_back(
    tmp_path: Path, server: StandInModelServer
) -> None:
    server.use(InTurn(['{"name": "Oslo"}', '{"name": "Oslo", "population": 709000}']))
    agent = Agent("city", model(server), output_type=City)
    result, journal, messages = run_agent(tmp_path, agent)
    assert result.output == {"name": "Oslo", "population": 709000}
    wire = server.requests[0]["response_format"]
    assert wire["type"] == "json_schema"
    assert wire["json_schema"]["name"] == "City"
    assert wire["json_schema"]["schema"]["required"] == ["name", "population"]
    assert [(s.kind, s.name) for s in journal] == [
        ("model", "m"), ("custom", "output.invalid"), ("model", "m")
    ]  # fmt: skip
    told = messages[2]
    assert told.role == "user"
    assert "not a valid City: population: Field required" in (told.content or "")


def test_json_object_form_for_llama_cpp_python(server: StandInModelServer) -> None:
    server.use(['{"name": "Oslo", "population": 1}'])
    client = model(server, structured_output="json_object")
    body = client.request_body(
        types.ModelRequest(
            messages=(types.Message(role="user", content="x"),),
            output_schema={"name": "City", "schema": {"type": "object"}},
        )
    )
    assert body["response_format"] == {"type": "json_object", "schema": {"type": "object"}}


def test_final_answer_tool_where_the_server_has_no_response_format(
    tmp_path: Path, server: StandInModelServer
) -> None:
    server.use(
        [
            ScriptedModel.call("final_result", name="Oslo", population="many"),
            ScriptedModel.call("final_result", name="Oslo", population=709000),
        ]
    )
    agent = Agent("city", model(server, structured_output="tool"), output_type=City)
    result, journal, messages = run_agent(tmp_path, agent)
    assert result.output == {"name": "Oslo", "population": 709000}
    first = server.requests[0]
    assert "response_format" not in first
    assert first["tool_choice"] == "required"
    assert [t["function"]["name"] for t in first["tools"]] == ["final_result"]
    assert [s.kind for s in journal] == ["model", "tool", "model", "tool"]
    assert "population" in (messages[2].content or "")  # the error went back as the result
    assert journal[1].status == "failed"
    assert messages[-1].content == "Final answer accepted."


def test_answers_that_never_validate_fail_the_task_as_output_invalid(
    tmp_path: Path, server: StandInModelServer
) -> None:
    server.use(["not json"])
    agent = Agent("city", model(server), output_type=City, output_retries=1)
    result, journal, _ = run_agent(tmp_path, agent)
    assert result.status == "failed"
    assert result.error["type"] == "model"
    assert result.error["error_class"] == "OutputInvalid"
    assert result.error["retryable"] is False
    assert "2 answers did not validate as City" in result.error["message"]
    assert [s.kind for s in journal] == ["model", "custom", "model"]
    assert json.loads(json.dumps(result.error))  # the contract's JSON form
