"""Faults of a real model server (the stand-in, over HTTP) and of tools: each is
classified, retried or not by policy, journaled with its delay, and a final failure
is the task's visible error. Backoff is checked through the injectable sleep and
jitter source, never by wall time."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tether import Agent, OpenAIModel, RetryPolicy, Runtime, ScriptedModel, errors, tool
from tether.execution.settings import ExecutionSettings
from tether.observe import events
from tether.runtime import TaskResult
from tether.testing import Fault, StandInModelServer
from tether.types import Message, ModelResponse, StepAttempt, StepRecord, Usage


@dataclass
class Recorder:
    """A recording sleep, a scripted jitter source and an event collector."""

    rands: list[float] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    seen: list[events.TaskEvent] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)

    def rand(self) -> float:
        return self.rands.pop(0) if self.rands else 0.5

    def on_event(self, event: events.TaskEvent) -> None:
        self.seen.append(event)

    def named(self, name: str) -> list[events.TaskEvent]:
        return [e for e in self.seen if e.name == name]


@dataclass
class Harness:
    server: StandInModelServer
    recorder: Recorder
    db: Path

    def runtime(self) -> Runtime:
        settings = ExecutionSettings(sleep=self.recorder.sleep, rand=self.recorder.rand)
        return Runtime(
            f"sqlite:///{self.db}",
            worker_id="faults:run",
            settings=settings,
            observers=[self.recorder],
        )

    def model(self, **kwargs: Any) -> OpenAIModel:
        return OpenAIModel(base_url=self.server.base_url, model="stand-in", **kwargs)

    def run(self, agent: Agent, prompt: str = "go") -> tuple[TaskResult, Runtime]:
        rt = self.runtime()
        rt.register(agent)
        task = rt.submit(agent.name, prompt)
        return rt.run(task.id), rt


def attempts_of(rt: Runtime, task_id: str) -> list[StepAttempt]:
    return rt.run_on_store(lambda s: s.list_attempts(task_id))


def journal_of(rt: Runtime, task_id: str) -> list[StepRecord]:
    return rt.run_on_store(lambda s: s.load_journal(task_id))


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    with StandInModelServer("done") as server:
        yield Harness(server, Recorder(), tmp_path / "faults.db")


MODEL_POLICY = RetryPolicy(initial=0.5, multiplier=2.0, max_delay=10.0, max_attempts=5)


# ---- model server faults that are retried ----------------------------------------


def test_429_honours_retry_after(harness: Harness) -> None:
    harness.server.inject(Fault.status(429, retry_after=7))
    harness.recorder.rands = [0.1]
    agent = Agent("a", harness.model(), model_retry=MODEL_POLICY)
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "completed", result.error
        assert result.output == "done"
        [attempt] = attempts_of(rt, result.id)
        [step] = journal_of(rt, result.id)
    assert harness.server.count == 2
    assert attempt.index == 0 and attempt.attempt == 1
    assert attempt.error["type"] == "model"
    assert attempt.error["error_class"] == "RateLimited"
    assert attempt.error["retryable"] is True
    assert attempt.error["retry_after"] == 7.0
    assert attempt.delay == 7.0
    assert harness.recorder.delays == [7.0]
    assert step.status == "completed" and step.attempts == 2
    [retrying] = harness.recorder.named(events.STEP_RETRYING)
    assert retrying.data["delay"] == 7.0
    assert retrying.data["error"]["error_class"] == "RateLimited"


def test_a_retry_after_beyond_max_delay_is_capped(harness: Harness) -> None:
    harness.server.inject(Fault.status(429, retry_after=3600))
    agent = Agent("a", harness.model(), model_retry=MODEL_POLICY)
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "completed"
    assert harness.recorder.delays == [MODEL_POLICY.max_delay]


def test_429_without_retry_after_backs_off_with_jitter(harness: Harness) -> None:
    harness.server.inject(Fault.status(429), Fault.status(429))
    harness.recorder.rands = [0.4, 0.9]
    agent = Agent("a", harness.model(), model_retry=MODEL_POLICY)
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "completed"
    assert harness.recorder.delays == pytest.approx([0.4 * 0.5, 0.9 * 1.0])


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_5xx_is_retried_within_the_backoff_bounds(harness: Harness, code: int) -> None:
    harness.server.inject(Fault.status(code), Fault.status(code), Fault.status(code))
    harness.recorder.rands = [0.999, 0.0, 0.5]
    agent = Agent("a", harness.model(), model_retry=MODEL_POLICY)
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "completed", result.error
        attempts = attempts_of(rt, result.id)
        [step] = journal_of(rt, result.id)
    assert harness.server.count == 4
    assert [a.attempt for a in attempts] == [1, 2, 3]
    assert {a.error["error_class"] for a in attempts} == {"ServerError"}
    assert all(a.error["retryable"] for a in attempts)
    assert [a.delay for a in attempts] == harness.recorder.delays
    for n, delay in enumerate(harness.recorder.delays, start=1):
        assert 0.0 <= delay <= MODEL_POLICY.ceiling(n)
    assert harness.recorder.delays == pytest.approx([0.999 * 0.5, 0.0, 0.5 * 2.0])
    assert step.attempts == 4


def test_connection_resets_are_retried(harness: Harness) -> None:
    harness.server.inject(Fault.reset(), Fault.reset())
    agent = Agent("a", harness.model(), model_retry=MODEL_POLICY)
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "completed", result.error
        attempts = attempts_of(rt, result.id)
    assert [(a.error["type"], a.error["error_class"]) for a in attempts] == [
        ("model", "ConnectionLost"),
        ("model", "ConnectionLost"),
    ]
    assert harness.server.count == 3


def test_a_garbage_answer_is_not_retried(harness: Harness) -> None:
    harness.server.inject(Fault.garbage())
    agent = Agent("a", harness.model(), model_retry=MODEL_POLICY)
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "failed"
        assert attempts_of(rt, result.id) == []
    assert result.error is not None
    assert result.error["error_class"] == "ModelProtocolError"
    assert harness.server.count == 1


def test_a_step_gives_up_after_its_max_attempts(harness: Harness) -> None:
    harness.server.inject(*[Fault.status(503)] * 3)
    policy = RetryPolicy(initial=0.1, max_attempts=3)
    agent = Agent("a", harness.model(), model_retry=policy)
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "failed"
        assert len(attempts_of(rt, result.id)) == 2
        [step] = journal_of(rt, result.id)
    assert harness.server.count == 3
    assert result.error is not None
    assert result.error["type"] == "model"
    assert result.error["error_class"] == "ServerError"
    assert "gave up after 3 attempts" in result.error["message"]
    assert result.id in result.error["message"]
    assert step.status == "failed" and step.attempts == 3
    assert step.error is not None and step.error["error_class"] == "ServerError"


# ---- model server faults that are not retried -------------------------------------


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
def test_other_4xx_fail_at_once(harness: Harness, code: int) -> None:
    harness.server.inject(Fault.status(code))
    agent = Agent("a", harness.model(), model_retry=MODEL_POLICY)
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "failed"
        assert attempts_of(rt, result.id) == []
    assert harness.server.count == 1
    assert harness.recorder.delays == []
    assert result.error is not None
    assert (result.error["type"], result.error["error_class"]) == ("model", "ModelRejected")
    assert result.error["retryable"] is False
    assert str(code) in result.error["message"]


def _assert_context_overflow(harness: Harness, result: TaskResult, rt: Runtime) -> None:
    with rt:
        assert result.status == "failed"
        assert attempts_of(rt, result.id) == []
        [step] = journal_of(rt, result.id)
    assert harness.server.count == 1, "a context overflow is never retried blindly"
    assert harness.recorder.delays == []
    assert result.error is not None
    assert result.error["type"] == "model"
    assert result.error["error_class"] == "ContextOverflow"
    assert result.error["retryable"] is False
    assert "context" in result.error["message"]
    assert step.status == "failed" and step.kind == "model"
    [failed] = harness.recorder.named(events.STEP_FAILED)
    assert failed.data["error"]["error_class"] == "ContextOverflow"


def test_a_context_length_400_fails_visibly(tmp_path: Path) -> None:
    # The server's real window is far smaller than the model is configured for.
    with StandInModelServer("done", context_window=64) as server:
        harness = Harness(server, Recorder(), tmp_path / "overflow.db")
        agent = Agent(
            "a", harness.model(context_window=8192), "be brief " * 40, model_retry=MODEL_POLICY
        )
        result, rt = harness.run(agent)
        _assert_context_overflow(harness, result, rt)
        assert result.error is not None
        assert "maximum context length is 64 tokens" in result.error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "too long", "code": "context_length_exceeded"}},
        {"error": {"message": "the request exceeds the available context size, try increasing"}},
        {"error": "the input length exceeds the context length"},
    ],
)
def test_context_overflow_as_other_servers_say_it(harness: Harness, body: dict[str, Any]) -> None:
    harness.server.inject(Fault.status(400, body=body))
    agent = Agent("a", harness.model(), model_retry=MODEL_POLICY)
    result, rt = harness.run(agent)
    _assert_context_overflow(harness, result, rt)


# ---- truncated output ---------------------------------------------------------------


def test_a_truncated_answer_is_retried_once_with_more_room(harness: Harness) -> None:
    harness.server.inject(Fault.length("the answer was cu"))
    agent = Agent("a", harness.model(max_output_tokens=64), model_retry=MODEL_POLICY)
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "completed", result.error
        [attempt] = attempts_of(rt, result.id)
        [step] = journal_of(rt, result.id)
    assert result.output == "done", "the cut-off text is never passed on"
    assert [r["max_tokens"] for r in harness.server.requests] == [64, 128]
    assert attempt.error["error_class"] == "OutputTruncated"
    assert attempt.delay == 0.0, "more room, not more waiting"
    assert step.attempts == 2
    [truncated] = harness.recorder.named(events.OUTPUT_TRUNCATED)
    assert truncated.data["max_tokens"] == 64


def test_a_second_truncation_fails_the_task_visibly(harness: Harness) -> None:
    harness.server.inject(Fault.length(), Fault.length())
    agent = Agent("a", harness.model(max_output_tokens=64), model_retry=MODEL_POLICY)
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "failed"
        assert len(attempts_of(rt, result.id)) == 1
        [step] = journal_of(rt, result.id)
    assert [r["max_tokens"] for r in harness.server.requests] == [64, 128]
    assert result.error is not None
    assert (result.error["type"], result.error["error_class"]) == ("model", "OutputTruncated")
    assert result.error["retryable"] is False
    assert "max_tokens=128" in result.error["message"]
    assert "max_output_tokens" in result.error["message"], "the message names the remedy"
    assert step.status == "failed"
    assert len(harness.recorder.named(events.OUTPUT_TRUNCATED)) == 2


def test_more_room_stops_at_the_models_window(tmp_path: Path) -> None:
    with StandInModelServer("done", context_window=200) as server:
        harness = Harness(server, Recorder(), tmp_path / "window.db")
        server.inject(Fault.length())
        agent = Agent(
            "a", harness.model(context_window=200, max_output_tokens=120), model_retry=MODEL_POLICY
        )
        result, rt = harness.run(agent)
        with rt:
            assert result.status == "completed", result.error
        first, second = server.requests
    assert first["max_tokens"] == 120
    # Grown to exactly what the window leaves after the prompt, not twice 120:
    # the server (window 200) accepted it.
    assert 120 < second["max_tokens"] < 200


def test_no_room_to_grow_fails_at_the_first_truncation(tmp_path: Path) -> None:
    # The server counts the prompt with its own tokenizer: 150 of the 200 tokens, so
    # the 100 reserved for the answer cannot grow.
    counted = ModelResponse(
        message=Message(role="assistant", content="done"),
        usage=Usage(prompt_tokens=150, completion_tokens=1),
    )
    with StandInModelServer(counted) as server:
        harness = Harness(server, Recorder(), tmp_path / "full.db")
        server.inject(Fault.length())
        agent = Agent(
            "a", harness.model(context_window=200, max_output_tokens=100), model_retry=MODEL_POLICY
        )
        result, rt = harness.run(agent)
        with rt:
            assert result.status == "failed"
            assert attempts_of(rt, result.id) == []
    assert server.count == 1
    assert result.error is not None and result.error["error_class"] == "OutputTruncated"
    assert "no more room" in result.error["message"]


def test_truncation_retries_can_be_turned_off(harness: Harness) -> None:
    harness.server.inject(Fault.length())
    agent = Agent("a", harness.model(max_output_tokens=64), model_retry=MODEL_POLICY)
    agent.retries = dataclasses.replace(agent.retries, truncation_retries=0)
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "failed"
    assert harness.server.count == 1
    assert result.error is not None and result.error["error_class"] == "OutputTruncated"


# ---- tool faults ---------------------------------------------------------------------

calls: dict[str, int] = {}


def _count(name: str) -> int:
    calls[name] = calls.get(name, 0) + 1
    return calls[name]


@tool(retry=RetryPolicy(initial=0.01, max_attempts=4))
def flaky(n: int) -> str:
    """Fail three times on purpose, then work."""
    if _count("flaky") <= 3:
        raise errors.ToolRetryable(f"upstream busy (try {calls['flaky']})")
    return f"flaky ok {n}"


@tool
def broken(n: int) -> str:
    """Raise an exception tether does not know."""
    _count("broken")
    raise ValueError(f"cannot handle {n}")


@tool
def disconnected(n: int) -> str:
    """Lose the connection once."""
    if _count("disconnected") == 1:
        raise ConnectionResetError("peer reset")
    return "reconnected"


@tool
def refuses(n: int) -> str:
    """Refuse for good, on purpose."""
    _count("refuses")
    raise errors.ToolFailed("the account is closed; nothing to retry")


def _tool_agent(harness: Harness, name: str, **kwargs: Any) -> Agent:
    harness.server.use([ScriptedModel.call(name, n=1), "done"])
    return Agent(
        "a",
        harness.model(),
        tools=[flaky, broken, disconnected, refuses],
        model_retry=MODEL_POLICY,
        tool_retry=RetryPolicy(initial=0.5, max_attempts=2),
        **kwargs,
    )


def _tool_message(harness: Harness) -> dict[str, Any]:
    last = harness.server.requests[-1]["messages"][-1]
    assert last["role"] == "tool"
    return dict(last)


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


def test_a_tool_policy_overrides_the_agents(harness: Harness) -> None:
    agent = _tool_agent(harness, "flaky")
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "completed", result.error
        attempts = attempts_of(rt, result.id)
        journal = journal_of(rt, result.id)
    assert calls["flaky"] == 4, "the tool's own max_attempts=4 beats the agent's 2"
    assert [(a.index, a.attempt) for a in attempts] == [(1, 1), (1, 2), (1, 3)]
    assert {a.error["error_class"] for a in attempts} == {"ToolFailed"}
    assert all(a.error["type"] == "tool" and a.error["retryable"] for a in attempts)
    for n, a in enumerate(attempts, start=1):
        assert 0.0 <= a.delay <= flaky.retry.ceiling(n)  # type: ignore[union-attr]
    assert journal[1].attempts == 4 and journal[1].status == "completed"
    assert _tool_message(harness)["content"] == "flaky ok 1"


def test_an_unknown_tool_exception_is_permanent(harness: Harness) -> None:
    agent = _tool_agent(harness, "broken")
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "completed"
        assert attempts_of(rt, result.id) == []
        journal = journal_of(rt, result.id)
    assert calls["broken"] == 1
    assert journal[1].status == "failed"
    assert journal[1].error is not None
    assert journal[1].error["error_class"] == "ToolFailed"
    content = _tool_message(harness)["content"]
    assert content.startswith("Error (ToolFailed): ValueError: cannot handle 1")


def test_a_lost_connection_in_a_tool_is_retried(harness: Harness) -> None:
    agent = _tool_agent(harness, "disconnected")
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "completed"
        [attempt] = attempts_of(rt, result.id)
    assert attempt.error["error_class"] == "ConnectionLost"
    assert attempt.error["type"] == "tool"
    assert _tool_message(harness)["content"] == "reconnected"


def test_a_tool_refusing_on_purpose_is_not_retried(harness: Harness) -> None:
    agent = _tool_agent(harness, "refuses")
    result, rt = harness.run(agent)
    with rt:
        assert result.status == "completed"
        assert attempts_of(rt, result.id) == []
    assert calls["refuses"] == 1
    assert "account is closed" in _tool_message(harness)["content"]


# ---- the operator's view ----------------------------------------------------------------


def _cli(db: Path, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "tether", *args, "--store", f"sqlite:///{db}", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_tasks_show_lists_every_attempt_with_its_error_and_delay(harness: Harness) -> None:
    harness.server.inject(Fault.status(429, retry_after=2), Fault.status(500), Fault.reset())
    harness.recorder.rands = [0.0, 0.25, 0.75]
    agent = Agent("a", harness.model(), model_retry=MODEL_POLICY)
    result, rt = harness.run(agent)
    rt.close()
    assert result.status == "completed"
    shown = _cli(harness.db, "tasks", "show", result.id)
    assert shown["status"] == "completed"
    [step] = shown["steps"]
    assert (step["index"], step["kind"], step["status"], step["attempts"]) == (
        0,
        "model",
        "completed",
        4,
    )
    got: Sequence[tuple[int, int, str, float]] = [
        (a["step"], a["attempt"], a["error"]["error_class"], a["delay"]) for a in shown["attempts"]
    ]
    assert got == [
        (0, 1, "RateLimited", 2.0),
        (0, 2, "ServerError", pytest.approx(0.25 * 1.0)),
        (0, 3, "ConnectionLost", pytest.approx(0.75 * 2.0)),
    ]
    for a in shown["attempts"]:
        assert set(a["error"]) == {"type", "error_class", "retryable", "message"}
        assert result.id in a["error"]["message"]
