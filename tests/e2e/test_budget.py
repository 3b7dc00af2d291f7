"""The task retry budget: total retries a task may spend. Completed steps consume
nothing, every retry resumes from the journal, attempts journaled by an earlier
(killed) run count, and exhaustion fails the task with ``BudgetExhausted`` naming
the step and its last error."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tether import Agent, OpenAIModel, RetryPolicy, Runtime, ScriptedModel, errors, tool
from tether.execution.context import TaskContext
from tether.execution.settings import ExecutionSettings
from tether.retry import Retries
from tether.testing import StandInModelServer
from tether.types import StepAttempt, StepRecord

# The durable function under test, as a module a subprocess can run and this process
# can import: ten custom steps; step index 8 ("s8", the ninth) loses its connection
# FAIL_TOTAL times (counted across processes in the MARKS file), then works.
SCRIPT = """
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tether import RetryPolicy, Runtime
from tether.execution.context import TaskContext
from tether.execution.settings import ExecutionSettings
from tether.retry import Retries

FLAKY = 8


def work(i: int) -> int:
    marks = Path(os.environ["MARKS"])
    with marks.open("a") as f:
        f.write(f"{i}\\n")
    if i == FLAKY:
        tries = marks.read_text().split().count(str(FLAKY))
        if tries <= int(os.environ["FAIL_TOTAL"]):
            raise ConnectionError(f"try {tries}: the upstream went away")
    return i * i


def build(store: str, sleep: Callable[[float], Awaitable[None]], budget: int) -> Runtime:
    settings = ExecutionSettings(sleep=sleep, lease_ttl=30.0)
    rt = Runtime(store, worker_id="budget:run", settings=settings)
    policy = RetryPolicy(initial=0.5, multiplier=2.0, max_delay=4.0, max_attempts=10)

    @rt.workflow(name="ten", retries=Retries(custom=policy, budget=budget))
    async def ten(ctx: TaskContext, input: str) -> list[int]:
        return [await ctx.step(f"s{i}", work, i) for i in range(10)]

    return rt


if __name__ == "__main__":
    store, task_id, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) >= int(os.environ["PARK_AFTER"]):
            # Two failed attempts are journaled (record_attempt precedes the sleep):
            # say so and wait here to be killed.
            Path(os.environ["PARKED"]).write_text("parked")
            await asyncio.sleep(3600)

    build(store, sleep, budget).run(task_id)
"""


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def load_script(tmp_path: Path) -> ModuleType:
    path = tmp_path / "ten_steps.py"
    path.write_text(SCRIPT)
    spec = importlib.util.spec_from_file_location(f"ten_steps_{id(tmp_path)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def marks(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def attempts_of(rt: Runtime, task_id: str) -> list[StepAttempt]:
    return rt.run_on_store(lambda s: s.list_attempts(task_id))


def journal_of(rt: Runtime, task_id: str) -> list[StepRecord]:
    return rt.run_on_store(lambda s: s.load_journal(task_id))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MARKS", str(tmp_path / "marks"))
    monkeypatch.setenv("PARKED", str(tmp_path / "parked"))
    monkeypatch.setenv("PARK_AFTER", "2")
    return tmp_path


# ---- in one process ------------------------------------------------------------------


def test_step_nine_failing_transiently_resumes_with_the_whole_budget(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL_TOTAL", "3")
    module = load_script(env)
    sleeps = Sleeps()
    with module.build(f"sqlite:///{env / 'b.db'}", sleeps, 3) as rt:
        task = rt.submit("ten", "go")
        result = rt.run(task.id)
        assert result.status == "completed", result.error
        attempts = attempts_of(rt, task.id)
        journal = journal_of(rt, task.id)
    assert result.output == [i * i for i in range(10)]
    # Steps 0..7 ran once; the eight completed steps consumed nothing, so step 8 had
    # all 3 retries; step 9 ran once.
    assert marks(env / "marks") == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8, 9]
    assert [(a.index, a.attempt) for a in attempts] == [(8, 1), (8, 2), (8, 3)]
    assert {a.error["error_class"] for a in attempts} == {"ConnectionLost"}
    assert {a.error["type"] for a in attempts} == {"agent"}
    assert [s.attempts for s in journal] == [1] * 8 + [4, 1]
    policy = RetryPolicy(initial=0.5, multiplier=2.0, max_delay=4.0, max_attempts=10)
    assert sleeps.delays == [a.delay for a in attempts]
    for a in attempts:
        assert 0.0 <= a.delay <= policy.ceiling(a.attempt)


def test_exhaustion_names_the_step_and_the_last_error(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL_TOTAL", "100")
    module = load_script(env)
    with module.build(f"sqlite:///{env / 'b.db'}", Sleeps(), 2) as rt:
        task = rt.submit("ten", "go")
        result = rt.run(task.id)
        assert result.status == "failed"
        attempts = attempts_of(rt, task.id)
        journal = journal_of(rt, task.id)
    assert marks(env / "marks") == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8]
    assert len(attempts) == 2
    err = result.error
    assert err is not None
    assert (err["type"], err["error_class"], err["retryable"]) == (
        "agent",
        "BudgetExhausted",
        False,
    )
    assert "retry budget of 2 retries" in err["message"]
    assert "custom step 's8'" in err["message"]
    assert "ConnectionLost" in err["message"] and "try 3" in err["message"]
    assert "step 8" in err["message"] and task.id in err["message"]
    assert journal[8].status == "failed" and journal[8].attempts == 3
    assert journal[8].error is not None
    assert journal[8].error["error_class"] == "BudgetExhausted"
    # Resuming a failed task does not run anything again.
    with module.build(f"sqlite:///{env / 'b.db'}", Sleeps(), 2) as rt:
        again = rt.run(task.id)
    assert again.status == "failed"
    assert len(marks(env / "marks")) == 11


def _workflow_runtime(
    tmp_path: Path,
    fail: dict[int, int],
    *,
    budget: int | None,
    max_attempts: int = 10,
) -> tuple[Runtime, list[int], Sleeps]:
    ran: list[int] = []
    sleeps = Sleeps()
    rt = Runtime(
        f"sqlite:///{tmp_path / 'w.db'}",
        worker_id="budget:w",
        settings=ExecutionSettings(sleep=sleeps, rand=lambda: 0.5),
    )
    policy = RetryPolicy(initial=0.1, max_attempts=max_attempts)

    @rt.workflow(name="steps", retries=Retries(custom=policy, budget=budget))
    async def steps(ctx: TaskContext, input: str) -> int:
        def work(i: int) -> int:
            ran.append(i)
            if fail.get(i, 0) > 0:
                fail[i] -= 1
                raise errors.ToolFailed(f"step {i} is busy", retryable=True)
            return i

        return sum([await ctx.step(f"s{i}", work, i) for i in range(6)])

    return rt, ran, sleeps


def test_retries_on_different_steps_share_one_budget(tmp_path: Path) -> None:
    rt, ran, _ = _workflow_runtime(tmp_path, {2: 2, 5: 2}, budget=3)
    with rt:
        task = rt.submit("steps", "go")
        result = rt.run(task.id)
        attempts = attempts_of(rt, task.id)
    assert result.status == "failed"
    assert result.error is not None and result.error["error_class"] == "BudgetExhausted"
    assert "'s5'" in result.error["message"]
    assert [(a.index, a.attempt) for a in attempts] == [(2, 1), (2, 2), (5, 1)]
    assert ran == [0, 1, 2, 2, 2, 3, 4, 5, 5]


def test_a_zero_budget_fails_at_the_first_transient_error(tmp_path: Path) -> None:
    rt, ran, sleeps = _workflow_runtime(tmp_path, {1: 1}, budget=0)
    with rt:
        task = rt.submit("steps", "go")
        result = rt.run(task.id)
    assert result.status == "failed"
    assert result.error is not None and result.error["error_class"] == "BudgetExhausted"
    assert ran == [0, 1]
    assert sleeps.delays == []


def test_no_budget_leaves_only_the_step_policy(tmp_path: Path) -> None:
    rt, ran, sleeps = _workflow_runtime(tmp_path, {1: 50}, budget=None, max_attempts=6)
    with rt:
        task = rt.submit("steps", "go")
        result = rt.run(task.id)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["error_class"] == "ToolFailed"
    assert "gave up after 6 attempts" in result.error["message"]
    assert ran == [0] + [1] * 6
    assert len(sleeps.delays) == 5


def test_the_step_policy_is_named_when_both_limits_meet(tmp_path: Path) -> None:
    # max_attempts=3 and budget=2: the third attempt ends by the policy, not the budget.
    rt, _, _ = _workflow_runtime(tmp_path, {1: 50}, budget=2, max_attempts=3)
    with rt:
        task = rt.submit("steps", "go")
        result = rt.run(task.id)
    assert result.error is not None
    assert result.error["error_class"] == "ToolFailed"
    assert "gave up after 3 attempts" in result.error["message"]


# ---- the agent: a spent budget ends the task, it is not a tool message ------------------

tries: list[int] = []


@tool(retry=RetryPolicy(initial=0.1, max_attempts=10))
def busy(n: int) -> str:
    """Always busy."""
    tries.append(n)
    raise errors.ToolRetryable("the backend is busy")


def test_an_agent_tool_that_spends_the_budget_fails_the_task(tmp_path: Path) -> None:
    tries.clear()
    with StandInModelServer([ScriptedModel.call("busy", n=1), "done"]) as server:
        rt = Runtime(
            f"sqlite:///{tmp_path / 'a.db'}",
            worker_id="budget:agent",
            settings=ExecutionSettings(sleep=Sleeps()),
        )
        model = OpenAIModel(base_url=server.base_url, model="stand-in")
        rt.register(Agent("a", model, tools=[busy], retry_budget=2))
        with rt:
            task = rt.submit("a", "go")
            result = rt.run(task.id)
            journal = journal_of(rt, task.id)
        assert server.count == 1, "the model never saw the spent budget as a tool result"
    assert tries == [1, 1, 1]
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["error_class"] == "BudgetExhausted"
    assert "tool step 'busy'" in result.error["message"]
    assert [s.kind for s in journal] == ["model", "tool"]
    assert journal[1].status == "failed" and journal[1].output is None


# ---- across a real process kill ------------------------------------------------------------


def _run_until_parked(module: ModuleType, env: Path, db: Path, budget: int) -> str:
    with module.build(f"sqlite:///{db}", Sleeps(), budget) as rt:
        task_id: str = rt.submit("ten", "go").id
    proc = subprocess.Popen(
        [sys.executable, str(env / "ten_steps.py"), f"sqlite:///{db}", task_id, str(budget)],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (env / "parked").exists():
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"the worker exited before it parked: {err.decode()}")
            if time.monotonic() > deadline:
                pytest.fail("the worker never journaled two attempts")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.communicate()
    return task_id


def _resume(
    module: ModuleType, db: Path, task_id: str, budget: int
) -> tuple[Any, list[StepAttempt], list[StepRecord], list[float]]:
    sleeps = Sleeps()
    with module.build(f"sqlite:///{db}", sleeps, budget) as rt:
        before = attempts_of(rt, task_id)
        assert [(a.index, a.attempt) for a in before] == [(8, 1), (8, 2)]
        assert len(journal_of(rt, task_id)) == 8, "the killed run committed steps 0..7"
        result = rt.run(task_id)
        attempts = attempts_of(rt, task_id)
        journal = journal_of(rt, task_id)
        runs = rt.run_on_store(lambda s: s.list_runs(task_id))
    assert [(r.run, r.reason, r.from_step) for r in runs][-1][1:] == ("resume", 8)
    return result, attempts, journal, sleeps.delays


def test_after_a_kill_the_journaled_attempts_count_and_no_step_reruns(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Step 8 fails three times: twice in the killed process, once after the resume.
    # Budget 3 covers exactly those three retries.
    monkeypatch.setenv("FAIL_TOTAL", "3")
    module = load_script(env)
    db = env / "kill.db"
    task_id = _run_until_parked(module, env, db, budget=3)
    assert marks(env / "marks") == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8]

    result, attempts, journal, delays = _resume(module, db, task_id, budget=3)
    assert result.status == "completed", result.error
    assert result.output == [i * i for i in range(10)]
    assert marks(env / "marks") == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8, 9]
    assert [(a.index, a.attempt) for a in attempts] == [(8, 1), (8, 2), (8, 3)]
    assert len(delays) == 1, "only the one retry after the resume waited in this process"
    assert journal[8].attempts == 4 and journal[8].status == "completed"
    assert [s.attempts for s in journal[:8]] == [1] * 8


def test_after_a_kill_the_budget_is_what_the_killed_run_left(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Step 8 needs four retries; the killed run spent two of the budget of 3, so the
    # resumed run may spend one more and then fails, instead of starting afresh.
    monkeypatch.setenv("FAIL_TOTAL", "4")
    module = load_script(env)
    db = env / "kill.db"
    task_id = _run_until_parked(module, env, db, budget=3)

    result, attempts, journal, _ = _resume(module, db, task_id, budget=3)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["error_class"] == "BudgetExhausted"
    assert "'s8'" in result.error["message"] and "try 4" in result.error["message"]
    assert marks(env / "marks") == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8]
    assert [(a.index, a.attempt) for a in attempts] == [(8, 1), (8, 2), (8, 3)]
    assert journal[8].status == "failed" and journal[8].attempts == 4
