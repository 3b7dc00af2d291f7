"""The workload of the parallel-tool-call kill test (a spec for `tether`).

One model turn (``tool_choice="required"``) calls ``effect`` for n = 1, 2, 3 at once;
the answer is structured (``output_type=Recorded``, sent as ``response_format``). Every
start is logged with its idempotency key. With KILL_MODE=hold, effect 1 runs until it
is killed, so the test can SIGKILL the child while effects 2 and 3 have finished.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pydantic

from tether import Agent, OpenAIModel, Runtime, ToolContext, tool

KILL_DIR = Path(os.environ.get("KILL_DIR", "."))
MODE = os.environ.get("KILL_MODE", "none")


@tool
def effect(n: int, ctx: ToolContext) -> str:
    """Record the number n."""
    with open(KILL_DIR / "ledger.jsonl", "a") as f:
        f.write(json.dumps({"n": n, "key": ctx.idempotency_key, "pid": os.getpid()}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    if MODE == "hold" and n == 1:
        while True:  # until SIGKILL
            time.sleep(0.05)
            ctx.heartbeat()
    return f"effect {n} under {ctx.idempotency_key}"


class Recorded(pydantic.BaseModel):
    """The structured answer: which numbers were recorded."""

    numbers: list[int]


agent = Agent(
    name="fanout",
    model=OpenAIModel(
        base_url=os.environ.get("TETHER_TEST_MODEL_URL", "http://127.0.0.1:9/v1"),
        model="stand-in",
        timeout=90,
    ),
    instructions="Record 1, 2 and 3 at once, then say done.",
    tools=[effect],
    tool_choice="required",
    output_type=Recorded,
)

runtime = Runtime()
runtime.register(agent)
