"""A stuck step under ``on_stuck="handover"``: the worker gives the task up, the attempt
is journaled, and a fresh run continues from the journal."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tether import Agent, Runtime, ScriptedModel, ToolContext, tool
from tether.execution.settings import ExecutionSettings

runs: list[int] = []
_lock = threading.Lock()


@tool(heartbeat_timeout=0.3, timeout=30)
def fetch(ctx: ToolContext) -> str:
    """Fetch a page; the first try hangs after one heartbeat."""
    with _lock:
        runs.append(ctx.attempt)
        first = len(runs) == 1
    ctx.heartbeat()
    if first:
        time.sleep(2.0)  # silent: no heartbeat, so the step is declared stuck
    return f"page for {ctx.idempotency_key}"


def test_a_stuck_step_hands_the_task_over(tmp_path: Path) -> None:
    runs.clear()
    agent = Agent("fetcher", ScriptedModel([ScriptedModel.call("fetch"), "fetched"]), tools=[fetch])
    settings = ExecutionSettings(on_stuck="handover", lease_ttl=5.0)
    with Runtime(f"sqlite:///{tmp_path / 't.db'}", worker_id="w", settings=settings) as rt:
        rt.register(agent)
        task = rt.submit("fetcher", "go")
        result = rt.run(task.id)
        history = rt.run_on_store(lambda s: s.list_runs(task.id))
        attempts = rt.run_on_store(lambda s: s.list_attempts(task.id))
        events = rt.run_on_store(lambda s: s.list_events(task.id))
        journal = rt.run_on_store(lambda s: s.load_journal(task.id))
    assert result.status == "completed" and result.output == "fetched"
    assert [r.reason for r in history] == ["start", "handover"]
    assert history[1].from_step == 1
    assert [(a.index, a.attempt, a.error["error_class"]) for a in attempts] == [(1, 1, "StepStuck")]
    names = [e.name for e in events]
    assert names.index("step.stuck") < names.index("task.released") < names.index("task.completed")
    released = next(e for e in events if e.name == "task.released")
    assert released.data["from_step"] == 1
    assert runs == [1, 2], "the fresh run retried the stuck step as attempt 2"
    assert [(s.index, s.kind, s.attempts) for s in journal] == [
        (0, "model", 1),
        (1, "tool", 2),
        (2, "model", 1),
    ]
