"""Replay and fingerprints: a recorded step returns its output without running again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tether import Agent, Runtime, ScriptedModel, ToolContext, errors, tool
from tether.execution.context import TaskContext
from tether.execution.fingerprint import fingerprint


def make_runtime(tmp_path: Path, name: str = "t.db") -> Runtime:
    return Runtime(f"sqlite:///{tmp_path / name}", worker_id="test:run")


def test_fingerprint_is_stable_and_sensitive() -> None:
    a = fingerprint("tool", "read", {"arguments": {"x": 1, "y": [1, 2]}})
    b = fingerprint("tool", "read", {"arguments": {"y": [1, 2], "x": 1}})
    assert a == b
    assert a != fingerprint("tool", "read", {"arguments": {"x": 2, "y": [1, 2]}})
    assert a != fingerprint("tool", "write", {"arguments": {"x": 1, "y": [1, 2]}})
    assert a != fingerprint("custom", "read", {"arguments": {"x": 1, "y": [1, 2]}})


def test_a_raising_workflow_fails_classified(tmp_path: Path) -> None:
    calls: list[str] = []

    with make_runtime(tmp_path) as rt:

        @rt.workflow
        async def pipeline(ctx: TaskContext, input: str) -> list[Any]:
            def work(label: str) -> str:
                calls.append(label)
                return label.upper()

            await ctx.step("a", work, "a")
            await ctx.step("b", work, "b")
            raise RuntimeError("logic bug after step b")

        task = rt.submit("pipeline", "go")
        result = rt.run(task.id)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["error_class"] == "WorkflowFailed"
    assert result.error["type"] == "agent"
    assert "logic bug after step b" in result.error["message"]
    assert task.id in result.error["message"]
    assert calls == ["a", "b"]


def test_interrupted_task_resumes_and_replays(tmp_path: Path) -> None:
    calls: list[str] = []

    class Stop(BaseException):
        """Stands in for a process dying between two steps."""

    stop_after = {"b": True}

    def build(rt: Runtime) -> None:
        @rt.workflow
        async def pipeline(ctx: TaskContext, input: str) -> list[Any]:
            def work(label: str) -> str:
                calls.append(label)
                return label.upper()

            a = await ctx.step("a", work, "a")
            b = await ctx.step("b", work, "b")
            if stop_after["b"]:
                raise Stop
            c = await ctx.step("c", work, "c")
            return [a, b, c]

    rt = make_runtime(tmp_path)
    build(rt)
    task = rt.submit("pipeline", "go")
    with pytest.raises(Stop):
        rt.run(task.id)
    rt.close()
    assert calls == ["a", "b"]

    stop_after["b"] = False
    with make_runtime(tmp_path) as rt2:
        build(rt2)
        result = rt2.run(task.id)
        assert result.status == "completed"
        assert result.output == ["A", "B", "C"]
        journal = rt2.run_on_store(lambda s: s.load_journal(task.id))
        runs = rt2.run_on_store(lambda s: s.list_runs(task.id))
    assert calls == ["a", "b", "c"], "a and b must replay, only c runs"
    assert [r.name for r in journal] == ["a", "b", "c"]
    assert [r.reason for r in runs] == ["start", "resume"]


def test_changed_steps_raise_nondeterminism(tmp_path: Path) -> None:
    class Stop(BaseException):
        pass

    version = {"v": 1}

    def build(rt: Runtime) -> None:
        @rt.workflow(name="flow")
        async def flow(ctx: TaskContext, input: str) -> str:
            await ctx.step("first", lambda: 1)
            if version["v"] == 1:
                await ctx.step("second", lambda x: x, "old input")
                raise Stop
            await ctx.step("second", lambda x: x, "new input")
            return "done"

    rt = make_runtime(tmp_path)
    build(rt)
    task = rt.submit("flow", "go")
    with pytest.raises(Stop):
        rt.run(task.id)
    rt.close()

    version["v"] = 2
    with make_runtime(tmp_path) as rt2:
        build(rt2)
        result = rt2.run(task.id)
    assert result.status == "failed"
    error = result.error
    assert error is not None
    assert error["error_class"] == "NonDeterminism"
    assert error["type"] == "agent" and error["retryable"] is False
    assert "step 1" in error["message"] and task.id in error["message"]
    assert "second" in error["message"] and "new input" in error["message"]


def test_renamed_step_names_both_steps(tmp_path: Path) -> None:
    class Stop(BaseException):
        pass

    version = {"v": 1}

    def build(rt: Runtime) -> None:
        @rt.workflow(name="flow")
        async def flow(ctx: TaskContext, input: str) -> str:
            if version["v"] == 1:
                await ctx.step("fetch", lambda: 1)
                raise Stop
            await ctx.sleep(0)
            return "done"

    rt = make_runtime(tmp_path)
    build(rt)
    task = rt.submit("flow", "go")
    with pytest.raises(Stop):
        rt.run(task.id)
    rt.close()
    version["v"] = 2
    with make_runtime(tmp_path) as rt2:
        build(rt2)
        result = rt2.run(task.id)
    assert result.error is not None
    assert "custom step 'fetch'" in result.error["message"]
    assert "sleep step 'sleep'" in result.error["message"]


def test_agent_tool_errors_go_back_to_the_model(tmp_path: Path) -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @tool
    def explode() -> str:
        """Always fails."""
        raise ValueError("boom")

    model = ScriptedModel(
        [
            ScriptedModel.calls(
                [
                    ("nope", {}),
                    ("add", "{not json"),
                    ("add", {"a": "x", "b": 2}),
                    ("explode", {}),
                    ("add", {"a": 2, "b": 3}),
                ]
            ),
            "finished",
        ]
    )
    agent = Agent("calc", model, "Add.", [add, explode])
    with make_runtime(tmp_path) as rt:
        rt.register(agent)
        task = rt.submit("calc", "go")
        result = rt.run(task.id)
        messages = rt.run_on_store(lambda s: s.list_messages(task.session_id))
        journal = rt.run_on_store(lambda s: s.load_journal(task.id))
    assert result.status == "completed" and result.output == "finished"
    tool_messages = [m.message.content or "" for m in messages if m.message.role == "tool"]
    assert tool_messages[0].startswith("Error (UnknownTool)")
    assert tool_messages[1].startswith("Error (InvalidToolArguments)")
    assert "JSON" in tool_messages[1]
    assert tool_messages[2].startswith("Error (InvalidToolArguments)") and "a:" in tool_messages[2]
    assert tool_messages[3].startswith("Error (ToolFailed)") and "boom" in tool_messages[3]
    assert tool_messages[4] == "5"
    assert [r.status for r in journal if r.kind == "tool"] == [
        "failed",
        "failed",
        "failed",
        "failed",
        "completed",
    ]


def test_max_steps_fails_with_a_classified_error(tmp_path: Path) -> None:
    @tool
    def ping() -> str:
        """Ping."""
        return "pong"

    agent = Agent("looper", ScriptedModel(ScriptedModel.call("ping")), tools=[ping], max_steps=3)
    with make_runtime(tmp_path) as rt:
        rt.register(agent)
        task = rt.submit("looper", "go")
        result = rt.run(task.id)
    assert result.status == "failed"
    assert result.error == {
        "type": "agent",
        "error_class": "MaxStepsExceeded",
        "retryable": False,
        "message": result.error["message"] if result.error else "",
    }
    assert "3 model calls" in result.error["message"]


def test_unknown_agent_is_an_input_error(tmp_path: Path) -> None:
    with make_runtime(tmp_path) as rt, pytest.raises(errors.UnknownAgent):
        rt.submit("ghost", "go")


def test_tool_schema_comes_from_hints_and_docstring() -> None:
    @tool
    def search(query: str, ctx: Any = None, limit: int = 5) -> list[str]:
        """Search the library."""
        return []

    spec = search.spec
    assert spec.name == "search"
    assert spec.description == "Search the library."
    assert spec.parameters["required"] == ["query"]
    assert set(spec.parameters["properties"]) == {"query", "ctx", "limit"}

    @tool
    def keyed(n: int, ctx: ToolContext) -> str:
        """Keyed."""
        return ctx.idempotency_key

    assert set(keyed.spec.parameters["properties"]) == {"n"}
    with pytest.raises(errors.InvalidToolArguments):
        keyed.parse_arguments({"n": 1, "extra": 2})
