"""Pydantic AI agents with ``TetherDurability``, run as tether tasks in this process.

Real Pydantic AI (``FunctionModel``), a real SQLite store, tether's own Runtime.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pai_workload
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel
from pydantic_ai import Agent, ModelRetry, RunContext, Tool
from pydantic_ai import exceptions as pai_errors
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from tether import errors, integrations, retry, types
from tether.integrations.pydantic_ai import TetherDurability, _messages, workflow_for
from tether.integrations.pydantic_ai import _errors as classify_module
from tether.observe import metrics as obsmetrics
from tether.observe import tracing
from tether.runtime import Runtime


@pytest.fixture
def work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TETHER_PAI_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(store=f"sqlite:///{tmp_path / 'tether.db'}", metrics=obsmetrics.Metrics())
    try:
        yield rt
    finally:
        rt.close()


def _dump(messages: list[ModelMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = ModelMessagesTypeAdapter.dump_python(messages, mode="json")
    return out


def test_an_agent_runs_as_a_task_each_unit_one_step(runtime: Runtime, work_dir: Path) -> None:
    runtime.register(pai_workload.agent)
    runtime.register(pai_workload.agent)  # the same agent again: a no-op
    task = runtime.submit(agent="pai_counter", input="count to 2", tenant="acme", session=None)
    done = runtime.run(task.id)

    assert done.status == "completed", done.error
    assert done.output == "counted: recorded 1, recorded 2"
    journal = runtime.run_on_store(lambda s: s.load_journal(task.id))
    assert [(s.kind, s.name) for s in journal] == [
        ("model", "counter-model"),
        ("tool", "record"),
        ("model", "counter-model"),
        ("tool", "record"),
        ("model", "counter-model"),
    ]
    assert all(s.usage is not None and s.usage.prompt_tokens > 0 for s in journal[::2])
    # The tool's idempotency key is its step's: task id and step index.
    assert (work_dir / "effects.log").read_text() == f"{task.id}:1 1\n{task.id}:3 2\n"

    names = [e.name for e in runtime.run_on_store(lambda s: s.list_events(task.id))]
    assert names.count("step.started") == 5 and names.count("step.completed") == 5
    metrics = runtime.metrics
    assert metrics is not None
    completed = metrics.registry.get_sample_value(
        "tether_task_steps_completed_total", {"task_type": "pai_counter", "step": "1"}
    )
    assert completed == 1.0

    session = runtime.run_on_store(lambda s: s.get_session(task.session_id))
    last = session.state["last"]
    assert last["reported"] == journal[-1].usage.prompt_tokens  # type: ignore[union-attr]
    assert last["budget"] == 1000 and last["counter"] == "pydantic-ai usage"


def test_steps_are_traced_as_tethers_genai_spans(tmp_path: Path, work_dir: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rt = Runtime(
        store=f"sqlite:///{tmp_path / 'traced.db'}",
        observers=[tracing.TracingObserver(provider)],
    )
    try:
        rt.register(pai_workload.agent)
        task = rt.submit(agent="pai_counter", input="count to 2", tenant="acme", session=None)
        assert rt.run(task.id).status == "completed"
    finally:
        rt.close()
        provider.shutdown()
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert names.count("invoke_agent pai_counter") == 1
    assert names.count("chat counter-model") == 3
    assert names.count("execute_tool record") == 2
    tool = next(s for s in spans if s.name == "execute_tool record")
    assert tool.attributes is not None and tool.attributes["gen_ai.tool.call.id"] == "c1"
    chat = next(s for s in spans if s.name == "chat counter-model")
    assert chat.attributes is not None and int(chat.attributes["gen_ai.usage.input_tokens"]) > 0


def test_the_session_is_the_conversation_history_round_trips_exactly(
    runtime: Runtime, tmp_path: Path
) -> None:
    seen: list[list[ModelMessage]] = []

    def talk(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(list(messages))
        if len(seen) == 1:
            return ModelResponse(parts=[ToolCallPart("lookup", {"q": "plan"}, tool_call_id="t1")])
        return ModelResponse(parts=[TextPart(f"answer {len(seen)}")])

    agent = Agent(FunctionModel(talk), name="talker", capabilities=[TetherDurability()])

    @agent.tool_plain
    def lookup(q: str) -> str:
        return f"found {q}"

    runtime.register(agent)
    first = runtime.submit(agent="talker", input="hello", tenant="acme", session=None)
    assert runtime.run(first.id).output == "answer 2"
    second = runtime.submit(
        agent="talker", input="and now?", tenant="acme", session=first.session_id
    )
    assert runtime.run(second.id).output == "answer 3"

    # Task 2's model got task 1's conversation exactly as Pydantic AI had it (the
    # requests' JSON, timestamps included), then task 1's answer, then the new prompt.
    task1_last, task2_first = seen[1], seen[2]
    assert _dump(task2_first[: len(task1_last)]) == _dump(task1_last)
    answer = task2_first[len(task1_last)]
    assert isinstance(answer, ModelResponse) and answer.parts == [TextPart("answer 2")]
    assert len(task2_first) == len(task1_last) + 2

    messages = runtime.run_on_store(lambda s: s.list_messages(first.session_id))
    readable = [(m.message.role, m.message.content) for m in messages]
    assert readable == [
        ("user", "hello"),
        ("assistant", None),
        ("tool", "found plan"),
        ("assistant", "answer 2"),
        ("user", "and now?"),
        ("assistant", "answer 3"),
    ]
    call = messages[1].message.tool_calls[0]
    assert (call.id, call.name, json.loads(call.arguments)) == ("t1", "lookup", {"q": "plan"})
    assert messages[2].message.tool_call_id == "t1"


class Ticket(BaseModel):
    category: str
    priority: int


def test_a_structured_output_is_the_task_output_as_json(runtime: Runtime) -> None:
    agent = Agent(
        TestModel(custom_output_args={"category": "billing", "priority": 2}),
        name="triage",
        output_type=Ticket,
        capabilities=[TetherDurability()],
    )
    runtime.register(agent)
    task = runtime.submit(
        agent="triage", input="my card was charged twice", tenant="a", session=None
    )
    done = runtime.run(task.id)
    assert done.status == "completed", done.error
    assert done.output == {"category": "billing", "priority": 2}
    messages = runtime.run_on_store(lambda s: s.list_messages(task.session_id))
    roles = [m.message.role for m in messages]
    # the output tool's call and its result are in the session, after the input
    assert roles == ["user", "assistant", "tool"]
    assert messages[1].message.tool_calls[0].name == "final_result"

    again = runtime.submit(agent="triage", input="and again", tenant="a", session=task.session_id)
    assert runtime.run(again.id).output == {"category": "billing", "priority": 2}


def test_model_errors_are_classified_and_retried_by_the_step(runtime: Runtime) -> None:
    calls: list[int] = []

    def flaky(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        if len(calls) == 1:
            raise pai_errors.ModelHTTPError(503, "flaky-model", body="overloaded")
        if "refuse" in str(messages[-1].parts[-1]):
            raise pai_errors.ModelHTTPError(400, "flaky-model", body="bad request")
        return ModelResponse(parts=[TextPart("fine")])

    fast = retry.RetryPolicy(initial=0.01, max_delay=0.05)
    agent = Agent(
        FunctionModel(flaky, model_name="flaky-model"),
        name="flaky",
        capabilities=[TetherDurability(model_retry=fast)],
    )
    runtime.register(agent)
    ok = runtime.submit(agent="flaky", input="hi", tenant="a", session=None)
    assert runtime.run(ok.id).output == "fine"
    journal = runtime.run_on_store(lambda s: s.load_journal(ok.id))
    assert [(s.kind, s.attempts) for s in journal] == [("model", 2)]
    attempts = runtime.run_on_store(lambda s: s.list_attempts(ok.id))
    assert attempts[0].error["error_class"] == "ServerError" and attempts[0].error["retryable"]

    bad = runtime.submit(agent="flaky", input="please refuse", tenant="a", session=None)
    failed = runtime.run(bad.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error["type"], failed.error["error_class"], failed.error["retryable"]) == (
        "model",
        "ModelRejected",
        False,
    )
    assert "400" in failed.error["message"]


def test_tool_errors_are_retried_when_transient_and_end_the_task_when_not(
    runtime: Runtime,
) -> None:
    tries: list[str] = []

    def use_tool(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("fetch", {"what": "x"}, tool_call_id="f1")])
        return ModelResponse(parts=[TextPart("got it")])

    agent = Agent(
        FunctionModel(use_tool),
        name="fetcher",
        capabilities=[TetherDurability(tool_retry=retry.RetryPolicy(initial=0.01))],
    )

    @agent.tool_plain
    def fetch(what: str) -> str:
        tries.append(what)
        if len(tries) == 1:
            raise ConnectionResetError("the backend hung up")
        if "broken" in what or len(tries) > 3:
            raise ValueError("no such thing")
        return "fetched"

    runtime.register(agent)
    ok = runtime.submit(agent="fetcher", input="go", tenant="a", session=None)
    assert runtime.run(ok.id).output == "got it"
    journal = runtime.run_on_store(lambda s: s.load_journal(ok.id))
    assert [(s.kind, s.name, s.attempts) for s in journal][1] == ("tool", "fetch", 2)

    tries.extend(["x", "x"])  # from now on the tool fails for good
    bad = runtime.submit(agent="fetcher", input="go", tenant="a", session=None)
    failed = runtime.run(bad.id)
    assert failed.status == "failed" and failed.error is not None
    assert (failed.error["type"], failed.error["error_class"]) == ("tool", "ToolFailed")
    assert "ValueError: no such thing" in failed.error["message"]


def test_a_custom_argument_validator_is_a_step_and_its_model_retry_a_value(
    runtime: Runtime,
) -> None:
    def ask(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returned = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
        if returned and returned[-1].outcome == "success":
            return ModelResponse(parts=[TextPart(str(returned[-1].content))])
        amount = 5 if returned else -5  # the first try is refused by the validator
        return ModelResponse(parts=[ToolCallPart("pay", {"amount": amount})])

    def positive(ctx: RunContext[None], amount: int) -> None:
        if amount <= 0:
            raise ModelRetry("the amount must be positive")

    def pay(amount: int) -> str:
        """Pay an amount."""
        return f"paid {amount}"

    agent = Agent(
        FunctionModel(ask, model_name="payer"),
        name="payer",
        tools=[Tool(pay, args_validator=positive)],
        capabilities=[TetherDurability()],
    )
    runtime.register(agent)
    task = runtime.submit(agent="payer", input="pay", tenant="a", session=None)
    assert runtime.run(task.id).output == "paid 5"
    journal = runtime.run_on_store(lambda s: s.load_journal(task.id))
    assert [(s.kind, s.name, s.status) for s in journal] == [
        ("model", "payer", "completed"),
        ("custom", "pay.validate", "completed"),  # its ModelRetry, journaled as a value
        ("model", "payer", "completed"),
        ("custom", "pay.validate", "completed"),
        ("tool", "pay", "completed"),
        ("model", "payer", "completed"),
    ]


def test_deps_are_built_from_the_task(runtime: Runtime) -> None:
    def ask(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returned = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
        if returned:
            return ModelResponse(parts=[TextPart(str(returned[-1].content))])
        return ModelResponse(parts=[ToolCallPart("whoami", {})])

    agent = Agent(
        FunctionModel(ask),
        name="deps",
        deps_type=str,
        capabilities=[TetherDurability(deps=lambda task: f"tenant {task.tenant}")],
    )

    @agent.tool
    def whoami(ctx: RunContext[str]) -> str:
        return ctx.deps

    runtime.register(agent)
    task = runtime.submit(agent="deps", input="who?", tenant="acme", session=None)
    assert runtime.run(task.id).output == "tenant acme"


def test_the_task_retry_budget_bounds_model_retries(runtime: Runtime) -> None:
    def down(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise pai_errors.ModelHTTPError(429, "down", body="slow down")

    agent = Agent(
        FunctionModel(down, model_name="down"),
        name="down",
        capabilities=[
            TetherDurability(model_retry=retry.RetryPolicy(initial=0.01), retry_budget=2)
        ],
    )
    runtime.register(agent)
    task = runtime.submit(agent="down", input="hi", tenant="a", session=None)
    failed = runtime.run(task.id)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["error_class"] == "BudgetExhausted"
    assert "RateLimited" in failed.error["message"]
    attempts = runtime.run_on_store(lambda s: s.list_attempts(task.id))
    assert [a.error["error_class"] for a in attempts] == ["RateLimited", "RateLimited"]


def test_a_session_written_by_another_agent_becomes_pydantic_ai_history() -> None:
    plain = [
        types.StoredMessage(1, types.Message(role="user", content="hi"), created_at=1.0),
        types.StoredMessage(
            2,
            types.Message(
                role="assistant",
                tool_calls=(types.ToolCall(id="k1", name="look", arguments='{"q": 1}'),),
            ),
            created_at=2.0,
        ),
        types.StoredMessage(
            3, types.Message(role="tool", content="seen", tool_call_id="k1", name="look")
        ),
        types.StoredMessage(4, types.Message(role="assistant", content="done")),
    ]
    history = _messages.history(plain)
    assert [m.kind for m in history] == ["request", "response", "request", "response"]
    assert history[1].parts == [ToolCallPart("look", '{"q": 1}', tool_call_id="k1")]
    returned = history[2].parts[0]
    assert isinstance(returned, ToolReturnPart)
    assert (returned.tool_call_id, returned.content) == ("k1", "seen")
    # and back: the readable messages of a group are what the plain ones were
    group = _messages.group(history[1:])
    assert [(m.role, m.content) for m in group] == [
        ("assistant", None),
        ("tool", "seen"),
        ("assistant", "done"),
    ]
    raw = _messages.ours(group[-1])
    assert raw is not None
    assert _messages.load(raw["pydantic_ai"])[0].parts == history[1].parts


def test_context_pressure_fires_at_80_percent_of_the_window(runtime: Runtime) -> None:
    agent = Agent(
        TestModel(custom_output_text="ok"),
        name="tight",
        capabilities=[TetherDurability(context_window=60)],
    )
    runtime.register(agent)
    task = runtime.submit(agent="tight", input="word " * 60, tenant="a", session=None)
    assert runtime.run(task.id).status == "completed"
    events = runtime.run_on_store(lambda s: s.list_events(task.id))
    pressure = [e for e in events if e.name == "context.pressure"]
    assert len(pressure) == 1
    assert pressure[0].data["limit"] == 60 and pressure[0].data["tokens"] >= 48
    session = runtime.run_on_store(lambda s: s.get_session(task.session_id))
    assert session.state["pressure"] is True


def test_only_agents_with_the_capability_register() -> None:
    plain = Agent(TestModel(), name="plain")
    with pytest.raises(errors.InvalidInput, match=r"capabilities=\[TetherDurability\(\)\]"):
        integrations.workflow_for(plain)
    with pytest.raises(pai_errors.UserError, match="needs to have a unique `name`"):
        Agent(TestModel(), capabilities=[TetherDurability()])
    aliased = integrations.workflow_for(
        Agent(TestModel(), capabilities=[TetherDurability(name="alias")])
    )
    assert aliased is not None and aliased.name == "alias"
    assert workflow_for(TestModel()) is None
    adapted = integrations.workflow_for(pai_workload.agent)
    assert adapted is not None and adapted.name == "pai_counter"
    assert getattr(adapted, "wraps", None) is pai_workload.agent


@pytest.mark.parametrize(
    ("exc", "cls", "retryable"),
    [
        (pai_errors.ModelHTTPError(429, "m", body=None), errors.RateLimited, True),
        (pai_errors.ModelHTTPError(502, "m", body=None), errors.ServerError, True),
        (pai_errors.ModelHTTPError(404, "m", body=None), errors.ModelRejected, False),
        (pai_errors.UnexpectedModelBehavior("no"), errors.ModelProtocolError, False),
        (pai_errors.UsageLimitExceeded("too many"), errors.MaxStepsExceeded, False),
        (pai_errors.UserError("wrong"), errors.InvalidInput, False),
        (TimeoutError("slow"), errors.ToolTimeout, True),
    ],
)
def test_pydantic_ai_exceptions_map_to_the_taxonomy(
    exc: Exception, cls: type[errors.TetherError], retryable: bool
) -> None:
    err = classify_module.classify(exc, where="tool")
    assert type(err) is cls and err.retryable is retryable
