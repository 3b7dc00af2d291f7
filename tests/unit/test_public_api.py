"""The public door: `tether.__all__` is pinned, and DESIGN.md's example runs as written."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

import tether
from tether.testing import StandInModelServer

EXPECTED = sorted(
    [
        "Agent",
        "BudgetExhausted",
        "ContextBudgetExceeded",
        "ContextOverflow",
        "ContextPolicy",
        "ExecutionSettings",
        "LeaseLost",
        "Model",
        "ModelRequest",
        "ModelResponse",
        "NonDeterminismError",
        "OpenAIModel",
        "OutputInvalid",
        "OutputTruncated",
        "Retries",
        "RetryPolicy",
        "Runtime",
        "ScriptedModel",
        "SignalTimeout",
        "StoreVersionError",
        "TaskCancelled",
        "TaskContext",
        "TaskResult",
        "TetherError",
        "Tool",
        "ToolContext",
        "ToolFailed",
        "ToolRetryable",
        "current_step",
        "tool",
    ]
)

DESIGN_EXAMPLE = '''
from tether import Agent, OpenAIModel, Runtime, ToolContext, tool

@tool
def record(n: int, ctx: ToolContext) -> str:
    """Record a number."""          # the docstring and type hints make the JSON schema
    ctx.heartbeat()                  # long tools report liveness
    return f"recorded {n} with key {ctx.idempotency_key}"   # "task_id:step_index", stable across re-runs

agent = Agent(
    name="counter",
    model=OpenAIModel(base_url="http://127.0.0.1:8000/v1", model="any", context_window=8192),
    instructions="Call record for 1..10, then say done.",
    tools=[record],
)

runtime = Runtime(store="sqlite:///tether.db")     # or "postgresql://…"
runtime.register(agent)
task = runtime.submit(agent="counter", input="go", tenant="acme", session=None)  # None: a new session
result = runtime.run(task.id)                    # runs to the end in this process; resumes if journaled
print(result.status, result.output)
'''


def test_all_is_pinned_and_sorted() -> None:
    assert tether.__all__ == EXPECTED
    for name in tether.__all__:
        assert hasattr(tether, name), name


def test_all_is_exactly_what_the_package_exports() -> None:
    """A name bound in ``tether/__init__.py`` but left out of ``__all__`` (or the other way
    round) is a public surface nobody decided on."""
    exported = {
        name
        for name, value in vars(tether).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)  # submodules bound by their import
        and name != "annotations"  # ``from __future__ import annotations``
    }
    assert exported == set(tether.__all__)


TASK_CONTEXT_MEMBERS = sorted(
    [
        "call_model",
        "call_tool",
        "replaying",
        "session_id",
        "sleep",
        "sleep_until",
        "step",
        "step_index",
        "task_id",
        "tenant",
        "wait_for_signal",
    ]
)
"""What a workflow's ``ctx`` offers (README, docs/upgrading.md): the journaled steps and
the task's ids. The run underneath is ``execution.context.TaskRun``, for tether's layers."""


def test_task_context_offers_exactly_the_documented_members() -> None:
    public = sorted(name for name in dir(tether.TaskContext) if not name.startswith("_"))
    assert public == TASK_CONTEXT_MEMBERS


def test_task_context_holds_nothing_but_its_run() -> None:
    # __slots__: no attribute can be added to (or read off) a ctx besides the members
    assert tether.TaskContext.__slots__ == ("_run",)


def test_examples_import_only_from_the_public_door_or_documented_modules() -> None:
    """The ``Model`` protocol and model requests come from ``tether``, not from the
    internal modules that define them."""
    internal = {"tether.models.base", "tether.types", "tether.execution.settings"}
    examples = Path(tether.__file__).parents[2] / "examples"
    found = []
    for path in sorted(examples.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in internal:
                found.append(f"{path.name}: from {node.module} import ...")
    assert not found, found


def test_no_module_imports_the_package_root() -> None:
    src = Path(tether.__file__).parent
    for path in src.rglob("*.py"):
        if path.name == "__init__.py" and path.parent == src:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "tether":
                names = [a.name for a in node.names]
                # importing sibling modules (`from tether import errors`) is fine; names are not
                assert all((src / f"{n}.py").exists() or (src / n).is_dir() for n in names), (
                    f"{path} imports {names} from the package root"
                )


def test_design_example_runs_as_written(tmp_path: Path) -> None:
    script = [
        *({"call": "record", "n": n} for n in range(1, 11)),
    ]
    from tether import ScriptedModel

    replies = [ScriptedModel.call("record", n=item["n"]) for item in script] + ["done"]
    with StandInModelServer(replies) as server:
        code = DESIGN_EXAMPLE.replace("http://127.0.0.1:8000/v1", server.base_url)
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "completed done"
        sent = server.requests
    assert len(sent) == 11
    assert sent[0]["tools"][0]["function"]["name"] == "record"
    assert "ctx" not in sent[0]["tools"][0]["function"]["parameters"]["properties"]
    tool_results = [m for m in sent[-1]["messages"] if m["role"] == "tool"]
    assert len(tool_results) == 10
    keys = [m["content"].split("with key ")[1] for m in tool_results]
    task_id = keys[0].split(":")[0]
    assert keys == [f"{task_id}:{i}" for i in range(1, 21, 2)]
    assert (tmp_path / "tether.db").exists()


def test_runtime_store_call_is_a_deprecated_name_of_run_on_store(tmp_path: Path) -> None:
    runtime = tether.Runtime(f"sqlite:///{tmp_path / 'd.db'}")

    @runtime.workflow
    async def noop(ctx: tether.TaskContext, input: str) -> str:
        return input

    with runtime:
        task = runtime.submit("noop", "go")
        with pytest.warns(DeprecationWarning, match="run_on_store"):
            old = runtime.store_call(lambda s: s.get_task(task.id))
        assert old == runtime.run_on_store(lambda s: s.get_task(task.id))
        assert old.id == task.id
