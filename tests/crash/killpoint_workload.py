"""The workload the kill-point tests run in a child process (a spec for `tether`).

Every tool execution is logged with its idempotency key, so the test can count how
often each step really ran. KILL_MODE decides where the child stops for the kill:
``tool`` (inside tool n=3), ``after_tool`` (tool n=3 has returned, its commit is
blocked by the test holding the database's write lock), ``after_commit`` (right after
step 5 committed). ``model`` is arranged by the test's model server.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tether import Agent, OpenAIModel, Runtime, ToolContext, tool
from tether.observe import events

KILL_DIR = Path(os.environ.get("KILL_DIR", "."))
MODE = os.environ.get("KILL_MODE", "none")


def _log(record: dict[str, object]) -> None:
    with open(KILL_DIR / "ledger.jsonl", "a") as f:
        f.write(json.dumps({**record, "pid": os.getpid()}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _wait_for(name: str) -> None:
    while not (KILL_DIR / name).exists():
        time.sleep(0.01)


@tool
def effect(n: int, ctx: ToolContext) -> str:
    """Record the number n."""
    _log({"phase": "start", "n": n, "key": ctx.idempotency_key})
    if MODE == "tool" and n == 3:
        time.sleep(60)
    if MODE == "after_tool" and n == 3:
        _log({"phase": "returning", "n": n, "key": ctx.idempotency_key})
        _wait_for("lock-held")
    return f"effect {n} under {ctx.idempotency_key}"


class BlockAfterCommit:
    """Observers hear step.completed right after the step's commit."""

    def on_event(self, event: events.TaskEvent) -> None:
        if MODE == "after_commit" and event.name == events.STEP_COMPLETED and event.step == 5:
            _log({"phase": "committed", "step": 5})
            time.sleep(60)


agent = Agent(
    name="killer",
    model=OpenAIModel(
        base_url=os.environ.get("TETHER_TEST_MODEL_URL", "http://127.0.0.1:9/v1"),
        model="stand-in",
        timeout=90,
    ),
    instructions="Record 1, 2, 3 and 4, then say done.",
    tools=[effect],
)

runtime = Runtime(observers=[BlockAfterCommit()])
runtime.register(agent)
