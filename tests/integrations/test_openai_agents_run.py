"""Agents SDK agents run as tether tasks, in this process, against the stand-in server:
registration, steps and their kinds, the session as the conversation, handoffs,
agents as tools, structured output, guardrails, errors and token accounting."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

import oa_agents
import oa_support
import pytest
from agents import (
    Agent,
    GuardrailFunctionOutput,
    ModelSettings,
    RunContextWrapper,
    function_tool,
    handoff,
    output_guardrail,
)
from agents.items import ModelResponse
from agents.usage import Usage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tether
from tether import Runtime, errors, retry, types
from tether.context.view import context_view
from tether.execution.settings import ExecutionSettings
from tether.integrations import workflow_for
from tether.integrations.openai_agents import OpenAIAgentsWorkflow, codec, conversation
from tether.observe import metrics
from tether.observe.tracing import TracingObserver
from tether.testing import Fault, StandInModelServer
from waiting import wait_until

oa_server = pytest.fixture(name="oa_server")(oa_support.serve_script)


def journal(runtime: Runtime, task_id: str) -> list[tuple[str, str, str]]:
    steps = runtime.run_on_store(lambda s: s.load_journal(task_id))
    return [(s.kind, s.name, s.status) for s in steps]


def event_names(runtime: Runtime, task_id: str) -> list[str]:
    return [e.name for e in runtime.run_on_store(lambda s: s.list_events(task_id))]


def test_an_agent_registers_as_it_is_and_each_call_is_a_step(
    tmp_path: Path, oa_server: StandInModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_TEST_EFFECTS", str(tmp_path / "effects.jsonl"))
    agents = oa_agents.build()
    counter = agents["counter"]
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime:
        runtime.register(counter)
        runtime.register(counter)  # the same agent again: nothing changes
        assert list(runtime.workflows) == ["counter"]
        assert runtime.workflows["counter"].wraps is counter  # type: ignore[attr-defined]
        with pytest.raises(errors.InvalidInput, match="already registered"):
            runtime.register(agents["counter"].clone())
        task = runtime.submit("counter", "count 2")
        result = runtime.run(task.id)
        assert (result.status, result.output) == ("completed", "recorded 1..2 (turn 1)")
        assert journal(runtime, task.id) == [
            ("custom", "input_guardrail:polite", "completed"),
            ("model", "stand-in", "completed"),
            ("tool", "record", "completed"),
            ("model", "stand-in", "completed"),
            ("tool", "record", "completed"),
            ("model", "stand-in", "completed"),
            ("custom", "openai_agents.turn", "completed"),
        ]
        names = event_names(runtime, task.id)
        assert names.count("step.started") == names.count("step.completed") == 7
        steps = runtime.run_on_store(lambda s: s.load_journal(task.id))
        model_steps = [s for s in steps if s.kind == "model"]
        assert all(s.usage is not None and s.usage.prompt_tokens > 0 for s in model_steps)
    # the tool's key is its step's: task id and step index
    ledger = oa_agents.effects(tmp_path / "effects.jsonl")
    assert ledger == [{"key": f"{task.id}:2", "n": 1}, {"key": f"{task.id}:4", "n": 2}]
    # the user's agent is untouched: still the SDK's own model and tool objects
    assert type(counter.model).__name__ == "OpenAIChatCompletionsModel"
    assert counter.input_guardrails[0].run_in_parallel is True
    assert workflow_for(counter.tools[0]) is None


def test_the_session_is_the_conversation_across_tasks(
    tmp_path: Path, oa_server: StandInModelServer
) -> None:
    agents = oa_agents.build()
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime:
        runtime.register(agents["counter"])
        first = runtime.submit("counter", "count 1")
        assert runtime.run(first.id).output == "recorded 1..1 (turn 1)"
        second = runtime.submit("counter", "count 1", session=first.session_id)
        assert runtime.run(second.id).output == "recorded 1..1 (turn 2)"
        stored = runtime.run_on_store(lambda s: s.list_messages(first.session_id))
    # the second task's first request carried the first task's whole turn
    second_request = oa_server.requests[2]["messages"]
    assert [m["role"] for m in second_request] == [
        "system", "user", "assistant", "tool", "assistant", "user",
    ]  # fmt: skip
    readable = [(m.message.role, m.message.content, m.task_id) for m in stored]
    assert readable == [
        ("user", "count 1", first.id),
        ("assistant", None, first.id),
        ("tool", "recorded 1", first.id),
        ("assistant", "recorded 1..1 (turn 1)", first.id),
        ("user", "count 1", second.id),
        ("assistant", None, second.id),
        ("tool", "recorded 1", second.id),
        ("assistant", "recorded 1..1 (turn 2)", second.id),
    ]
    assert stored[1].message.tool_calls[0].name == "record"
    # items -> messages -> items is exact
    items = [m.message.raw["openai_agents"] for m in stored if m.message.raw]
    assert conversation.to_items(conversation.to_messages(items)) == items


def test_messages_of_other_writers_become_items() -> None:
    call = types.ToolCall("c1", "record", '{"n": 1}')
    messages = [
        types.Message("system", "be brief"),
        types.Message("user", "hi"),
        types.Message("assistant", "let me see", tool_calls=(call,)),
        types.Message("tool", "recorded 1", tool_call_id="c1"),
    ]
    assert conversation.to_items(messages) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "let me see"},
        {"type": "function_call", "call_id": "c1", "name": "record", "arguments": '{"n": 1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "recorded 1"},
    ]


def test_a_model_response_round_trips_exactly() -> None:
    response = ModelResponse(
        output=[
            ResponseOutputMessage.model_validate(
                {
                    "id": "m1",
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "hi", "annotations": []}],
                }
            ),
            ResponseFunctionToolCall(
                type="function_call", call_id="c1", name="record", arguments="{}"
            ),
        ],
        usage=Usage(requests=1, input_tokens=12, output_tokens=3, total_tokens=15),
        response_id="r1",
        request_id="q1",
    )
    back = codec.decode_response(json.loads(json.dumps(codec.encode_response(response))))
    assert back == response
    assert [i.model_dump(exclude_unset=True) for i in back.output] == [
        i.model_dump(exclude_unset=True) for i in response.output
    ]


def test_tool_and_guardrail_values_round_trip_through_json() -> None:
    ticket = oa_agents.Ticket(topic="billing", urgent=True)
    value = {"ticket": ticket, "pair": (1, "a"), "$str": "looks tagged", "items": [ticket, None]}
    back = codec.decode_value(json.loads(json.dumps(codec.encode_value(value))))
    assert back == value
    assert codec.decode_value(codec.encode_value(Path("/x"))) == "/x"  # as the SDK would send it


def test_handoffs_and_agents_as_tools_journal_the_nested_agents(
    tmp_path: Path, oa_server: StandInModelServer
) -> None:
    agents = oa_agents.build()
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime:
        runtime.register(agents["triage"])
        runtime.register(agents["manager"])
        handed = runtime.run(runtime.submit("triage", "I was charged twice").id)
        assert (handed.status, handed.output) == ("completed", "refunded 5")
        assert journal(runtime, handed.id) == [
            ("model", "stand-in", "completed"),  # triage: transfer_to_billing
            ("model", "stand-in", "completed"),  # billing: refund
            ("tool", "refund", "completed"),
            ("model", "stand-in", "completed"),  # billing: the answer
            ("custom", "openai_agents.turn", "completed"),
        ]
        stored = runtime.run_on_store(lambda s: s.list_messages(handed.task.session_id))
        assert [c.name for m in stored for c in m.message.tool_calls] == [
            "transfer_to_billing",
            "refund",
        ]
        tooled = runtime.run(runtime.submit("manager", "say hello in French").id)
        assert (tooled.status, tooled.output) == ("completed", "translated: bonjour")
        assert journal(runtime, tooled.id) == [
            ("model", "stand-in", "completed"),  # manager: translate
            ("model", "stand-in", "completed"),  # translator (nested): lookup
            ("tool", "lookup", "completed"),
            ("model", "stand-in", "completed"),  # translator: bonjour
            ("model", "stand-in", "completed"),  # manager: the answer
            ("custom", "openai_agents.turn", "completed"),
        ]


def test_a_handoff_callback_is_a_step_of_its_own(
    tmp_path: Path, oa_server: StandInModelServer
) -> None:
    calls: list[str] = []

    def on_handoff(ctx: RunContextWrapper[Any]) -> None:
        calls.append(tether.current_step().idempotency_key)

    billing = oa_agents.build()["triage"].handoffs[0]
    assert isinstance(billing, Agent)
    desk = Agent(
        name="desk",
        instructions="DESK",
        model=oa_agents.model(),
        handoffs=[handoff(billing, on_handoff=on_handoff)],
    )
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime:
        runtime.register(desk)
        result = runtime.run(runtime.submit("desk", "refund me").id)
        assert (result.status, result.output) == ("completed", "refunded 5")
        assert journal(runtime, result.id)[:2] == [
            ("model", "stand-in", "completed"),
            ("custom", "handoff:transfer_to_billing", "completed"),
        ]
    assert calls == [f"{result.id}:1"]


def test_a_structured_output_is_the_tasks_json_and_its_guardrail_a_step(
    tmp_path: Path, oa_server: StandInModelServer
) -> None:
    checked: list[Any] = []

    @output_guardrail
    def urgent_only(
        ctx: RunContextWrapper[Any], agent: Agent[Any], output: Any
    ) -> GuardrailFunctionOutput:
        checked.append(output)
        return GuardrailFunctionOutput(output_info=output, tripwire_triggered=not output.urgent)

    ticketer = oa_agents.build()["ticketer"].clone(output_guardrails=[urgent_only])
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime:
        runtime.register(ticketer)
        result = runtime.run(runtime.submit("ticketer", "my card was charged twice").id)
        assert journal(runtime, result.id) == [
            ("model", "stand-in", "completed"),
            ("custom", "output_guardrail:urgent_only", "completed"),
            ("custom", "openai_agents.turn", "completed"),
        ]
    assert result.output == {"topic": "billing", "urgent": True}
    assert checked == [oa_agents.Ticket(topic="billing", urgent=True)]


def failure(result: Any) -> dict[str, Any]:
    assert result.status == "failed"
    error: dict[str, Any] = result.task.error
    return error


def test_the_sdks_errors_are_classified(tmp_path: Path, oa_server: StandInModelServer) -> None:
    agents = oa_agents.build()
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime:
        runtime.register(agents["counter"])
        runtime.register(OpenAIAgentsWorkflow(agents["triage"], name="short", max_turns=1))
        refused = failure(runtime.run(runtime.submit("counter", "forbidden count 1").id))
        assert (refused["error_class"], refused["retryable"]) == ("InvalidInput", False)
        assert "input guardrail 'polite'" in refused["message"]

        too_long = failure(runtime.run(runtime.submit("short", "refund me").id))
        assert (too_long["type"], too_long["error_class"]) == ("agent", "MaxStepsExceeded")

        oa_server.inject(Fault.status(429, retry_after=0), Fault.status(503, retry_after=0))
        retried = runtime.run(runtime.submit("counter", "count 1").id)
        assert retried.status == "completed"
        steps = runtime.run_on_store(lambda s: s.load_journal(retried.id))
        assert [s.attempts for s in steps if s.kind == "model"] == [3, 1]
        attempts = runtime.run_on_store(lambda s: s.list_attempts(retried.id))
        assert [a.error["error_class"] for a in attempts] == ["RateLimited", "ServerError"]

        tight = OpenAIAgentsWorkflow(
            agents["counter"].clone(name="tight"), retries=retry.Retries(budget=1)
        )
        runtime.register(tight)
        oa_server.inject(Fault.status(503, retry_after=0), Fault.status(503, retry_after=0))
        spent = failure(runtime.run(runtime.submit("tight", "count 1").id))
        assert spent["error_class"] == "BudgetExhausted"

        oa_server.inject(Fault.status(401))
        rejected = failure(runtime.run(runtime.submit("counter", "count 1").id))
        assert (rejected["type"], rejected["error_class"]) == ("model", "ModelRejected")
        assert rejected["retryable"] is False
        assert "401" in rejected["message"]


def test_tool_errors_are_retried_by_tether_then_told_to_the_model_or_fail_the_task(
    tmp_path: Path, oa_server: StandInModelServer
) -> None:
    tries: list[int] = []

    @function_tool(name_override="record")
    def flaky(n: int) -> str:
        """Record a number; busy on the first try."""
        tries.append(tether.current_step().attempt)
        if len(tries) == 1:
            raise errors.ToolRetryable("busy, try again")
        if n == 2:
            raise ValueError("no twos here")
        return f"recorded {n}"

    @function_tool(name_override="record", failure_error_function=None)
    def strict(n: int) -> str:
        """Record a number, or fail the run."""
        raise ValueError(f"cannot record {n}")

    fast = retry.Retries(tool=retry.RetryPolicy(initial=0.001, max_delay=0.002))
    model = oa_agents.model()
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime:
        for name, tool in (("flaky", flaky), ("strict", strict)):
            agent = Agent(name=name, instructions="COUNTER", model=model, tools=[tool])
            runtime.register(OpenAIAgentsWorkflow(agent, retries=fast))
        told = runtime.run(runtime.submit("flaky", "count 2").id)
        assert (told.status, told.output) == ("completed", "recorded 1..2 (turn 1)")
        steps = runtime.run_on_store(lambda s: s.load_journal(told.id))
        tools = [(s.status, s.attempts) for s in steps if s.kind == "tool"]
        assert tools == [("completed", 2), ("failed", 1)]  # retried; then told to the model
        said = runtime.run_on_store(lambda s: s.list_messages(told.task.session_id))
        assert said[4].message.content == (
            "An error occurred while running the tool. Please try again."
        )
        failed = failure(runtime.run(runtime.submit("strict", "count 1").id))
    assert (failed["type"], failed["error_class"]) == ("tool", "ToolFailed")
    assert "cannot record 1" in failed["message"]
    assert tries == [1, 2, 1]


def test_timeouts_are_enforced_inside_steps_so_the_journal_has_no_gap(
    tmp_path: Path, oa_server: StandInModelServer
) -> None:
    tries: list[int] = []

    @function_tool(name_override="record", timeout=0.3)
    async def slow(n: int) -> str:
        """Record a number; slow on its first try, and always for n == 2."""
        tries.append(n)
        if len(tries) == 1 or n == 2:
            await asyncio.sleep(30)
        return f"recorded {n}"

    fast = retry.Retries(
        tool=retry.RetryPolicy(max_attempts=2, initial=0.001, max_delay=0.002),
        model=retry.RetryPolicy(max_attempts=2, initial=0.001, max_delay=0.002),
    )
    agent = Agent(
        name="slow",
        instructions="COUNTER",
        model=oa_agents.model(),
        model_settings=ModelSettings(timeout=1.0),
        tools=[slow],
    )
    oa_server.inject(Fault.delay(20))  # the first model call outlives its timeout
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime:
        runtime.register(OpenAIAgentsWorkflow(agent, retries=fast))
        result = runtime.run(runtime.submit("slow", "count 2").id)
        steps = runtime.run_on_store(lambda s: s.load_journal(result.id))
        said = runtime.run_on_store(lambda s: s.list_messages(result.task.session_id))
    assert (result.status, result.output) == ("completed", "recorded 1..2 (turn 1)")
    assert [s.index for s in steps] == list(range(len(steps)))  # no step lost its place
    assert [(s.kind, s.status, s.attempts) for s in steps[:4]] == [
        ("model", "completed", 2),  # timed out once, asked again
        ("tool", "completed", 2),  # timed out once, run again
        ("model", "completed", 1),
        ("tool", "failed", 2),  # timed out twice: the SDK's timeout text for the model
    ]
    assert "Tool 'record' timed out after 0.3 seconds." in [m.message.content for m in said]


def test_a_task_cancelled_mid_tool_stops_at_the_next_step(
    tmp_path: Path, oa_server: StandInModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = tmp_path / "gate"
    monkeypatch.setenv("TETHER_TEST_GATE", str(gate))
    monkeypatch.setenv("TETHER_TEST_MARKS", str(tmp_path / "marks"))
    settings = ExecutionSettings(lease_ttl=0.6, poll_interval=0.05)
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}", settings=settings) as runtime:
        runtime.register(oa_agents.build()["counter"])
        task = runtime.submit("counter", "count 3")
        ran: list[Any] = []
        thread = threading.Thread(target=lambda: ran.append(runtime.run(task.id)))
        thread.start()
        wait_until(
            lambda: (
                "record 2" in (tmp_path / "marks").read_text()
                if (tmp_path / "marks").exists()
                else None
            ),
            what="record 2 to start",
        )
        asked = runtime.cancel(task.id).lease_expires_at or 0.0

        def renewed() -> bool:
            # a lease renewal after the request carries it to the running task
            return (runtime.get_task(task.id).lease_expires_at or 0.0) > asked

        wait_until(renewed, what="a lease renewal after the cancel request")
        gate.touch()
        thread.join(60)
        steps = runtime.run_on_store(lambda s: s.load_journal(task.id))
    assert ran[0].status == "cancelled"
    # the tool in flight finished and was journaled; no model step came after it
    assert [(s.kind, s.name) for s in steps][-2:] == [("model", "stand-in"), ("tool", "record")]


def test_tokens_count_per_session_and_pressure_fires_at_80_percent(
    tmp_path: Path, oa_server: StandInModelServer
) -> None:
    agent: Agent[Any] = oa_agents.build()["counter"]
    # the stand-in counts about 60 prompt tokens for a first request of this agent
    small = OpenAIAgentsWorkflow(agent, context_window=90, reserve_output=10)
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}") as runtime:
        runtime.register(small)
        result = runtime.run(runtime.submit("counter", "count 1").id)
        assert result.status == "completed"
        session = runtime.run_on_store(lambda s: s.get_session(result.task.session_id))
        events = runtime.run_on_store(lambda s: s.list_events(result.id))
    view = context_view(session.state)
    steps = [e for e in events if e.name == "step.completed" and e.data.get("kind") == "model"]
    last_prompt = steps[-1].data["usage"]["prompt_tokens"]
    assert (view["tokens"], view["limit"], view["window"]) == (last_prompt, 80, 90)
    pressure = [e for e in events if e.name == "context.pressure"]
    assert len(pressure) == 1  # once, at the first call past 80% of the budget
    assert pressure[0].data["tokens"] >= 64 and pressure[0].data["limit"] == 80


def test_the_handoff_example_runs_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_MODEL_URL", raising=False)
    path = Path(__file__).resolve().parents[2] / "examples" / "openai_agents_handoff.py"
    spec = importlib.util.spec_from_file_location("openai_agents_handoff_example", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    try:
        with Runtime(f"sqlite:///{tmp_path / 'ex.db'}") as runtime:
            runtime.register(example.triage)
            result = runtime.run(runtime.submit("triage", "I was charged twice").id)
    finally:
        example.OFFLINE.close()
    assert result.status == "completed"
    assert result.output.startswith("Done: refunded 1999 cents on order 42")
    assert list(example.REFUNDS) == [f"{result.id}:2"]


def test_metrics_and_spans_are_tethers_own(tmp_path: Path, oa_server: StandInModelServer) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = metrics.Metrics()
    try:
        with Runtime(
            f"sqlite:///{tmp_path / 'r.db'}",
            observers=[TracingObserver(provider)],
            metrics=registry,
        ) as runtime:
            runtime.register(oa_agents.build()["triage"])
            result = runtime.run(runtime.submit("triage", "refund me").id)
    finally:
        provider.shutdown()
    assert result.status == "completed"
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == sorted(
        [
            "invoke_agent triage",
            *["chat stand-in"] * 3,
            "execute_tool refund",
            "step openai_agents.turn",
        ]
    )
    chat = next(s for s in exporter.get_finished_spans() if s.name == "chat stand-in")
    assert dict(chat.attributes or {})["gen_ai.usage.input_tokens"] > 0

    def sample(name: str, **labels: str) -> float | None:
        value: float | None = registry.registry.get_sample_value(name, labels)
        return value

    assert sample("tether_tasks_finished_total", task_type="triage", outcome="completed") == 1
    for step in range(5):
        assert sample("tether_task_steps_completed_total", task_type="triage", step=str(step)) == 1
