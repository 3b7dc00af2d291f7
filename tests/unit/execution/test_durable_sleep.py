"""Durable sleeps in-process on a real SQLite store: past the threshold a sleep parks the
task (no lease) and wakes when due, never early; below it the worker sleeps itself."""

from __future__ import annotations

import datetime
import threading
import time
from pathlib import Path

from tether import Runtime
from tether.execution.context import TaskContext
from tether.execution.settings import ExecutionSettings
from waiting import wait_until


def test_sleep_until_parks_the_task_and_a_short_sleep_does_not(tmp_path: Path) -> None:
    settings = ExecutionSettings(durable_sleep_after=0.5, poll_interval=0.05)
    runtime = Runtime(f"sqlite:///{tmp_path / 'w.db'}", settings=settings)

    @runtime.workflow
    async def timers(ctx: TaskContext, input: str) -> list[float]:
        await ctx.sleep(0.1)  # below the threshold: slept here, no wait
        due = await ctx.step("due", lambda: time.time() + 1.5)
        await ctx.sleep_until(datetime.datetime.fromtimestamp(due, tz=datetime.UTC))
        return [due, await ctx.step("woke", time.time)]

    with runtime:
        task = runtime.submit("timers", "go")
        seen: list[str] = []

        def watch() -> None:
            wait_until(lambda: runtime.get_task(task.id).status == "waiting", what="parked")
            record = runtime.get_task(task.id)
            seen.append(f"{record.status}:{record.lease_owner}:{record.wait['kind']}")

        watcher = threading.Thread(target=watch)
        watcher.start()
        result = runtime.run(task.id)
        watcher.join()
        assert result.status == "completed", result.error
        due, woke = result.output
        assert woke >= due, "a durable sleep must never end early"
        assert seen == ["waiting:None:sleep"]
        runs = runtime.run_on_store(lambda s: s.list_runs(task.id))
        assert [r.reason for r in runs] == ["start", "wake"]  # one park: the long sleep only
        steps = runtime.run_on_store(lambda s: s.load_journal(task.id))
        assert [(st.kind, st.name) for st in steps] == [
            ("sleep", "sleep"),
            ("custom", "due"),
            ("sleep", "sleep_until"),
            ("custom", "woke"),
        ]
