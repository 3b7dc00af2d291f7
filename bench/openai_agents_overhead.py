"""Per-step overhead of durability under the OpenAI Agents SDK: tether beside DBOS.

    python -m bench.openai_agents_overhead [--turns 20] [--runs 5] [--json PATH]

One Agents SDK agent, one instant in-process model (a ``Model`` whose answer is a pure
function of its input: ``note(i)`` until ``--turns`` tool calls were made, then a final
answer) and one instant function tool, run three ways in this process, one after
another, side by side:

- ``sdk``: ``Runner.run`` alone, nothing journaled (the baseline);
- ``tether``: the agent registered as it is (``Runtime.register(agent)``) on a SQLite
  store, each model call and each tool call a journaled step (``runtime.run``);
- ``dbos``: ``DBOSRunner.run`` (dbos-openai-agents) inside a ``@DBOS.workflow`` on a
  SQLite system database, each model call a step and the tool an ``@DBOS.step``, as
  dbos-openai-agents asks.

A run has ``turns`` model calls + ``turns`` tool calls + 1 final model call; tether
adds one step that appends the run's items to the session. Overhead per step =
(median run time − the SDK's median) / (2 × turns + 1). Needs ``pip install
dbos-openai-agents`` beside tether's ``openai-agents`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage

from tether import Runtime

VERSIONED = ("openai-agents", "dbos", "dbos-openai-agents")


class InstantModel(Model):
    """Calls ``note`` until ``turns`` tool results are in the input, then answers."""

    def __init__(self, turns: int) -> None:
        self.turns = turns

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        items = kwargs.get("input", args[1] if len(args) > 1 else [])
        done = sum(
            1 for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"
        )
        usage = Usage(requests=1, input_tokens=10 + done, output_tokens=5, total_tokens=15 + done)
        if done < self.turns:
            call = ResponseFunctionToolCall(
                type="function_call",
                call_id=f"call_{done}",
                name="note",
                arguments=f'{{"i": {done}}}',
            )
            return ModelResponse(output=[call], usage=usage, response_id=None)
        message = ResponseOutputMessage.model_validate(
            {
                "id": "msg",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": f"noted {done}", "annotations": []}],
            }
        )
        return ModelResponse(output=[message], usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the instant benchmark model answers whole responses only")


def _note(i: int) -> str:
    """Note a number."""
    return f"noted {i}"


def _agent(turns: int, note: Callable[[int], str]) -> Agent[Any]:
    tool = function_tool(note, name_override="note")
    return Agent(name="noter", model=InstantModel(turns), tools=[tool])


def _timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def run_sdk(turns: int, runs: int) -> list[float]:
    agent = _agent(turns, _note)
    return _timed(lambda: asyncio.run(Runner.run(agent, "go", max_turns=turns + 2)), runs)


def run_tether(turns: int, runs: int, workdir: Path) -> list[float]:
    from tether.integrations.openai_agents import OpenAIAgentsWorkflow

    agent = _agent(turns, _note)
    with Runtime(f"sqlite:///{workdir / 'tether.db'}") as runtime:
        runtime.register(OpenAIAgentsWorkflow(agent, max_turns=turns + 2))

        def once() -> None:
            result = runtime.run(runtime.submit("noter", "go").id)
            assert result.status == "completed", result.task.error

        once()  # warm up: the store, the loop, the imports
        return _timed(once, runs)


def run_dbos(turns: int, runs: int, workdir: Path) -> list[float]:
    from dbos import DBOS
    from dbos_openai_agents import DBOSRunner

    DBOS(config={"name": "bench-oa", "system_database_url": f"sqlite:///{workdir / 'dbos.db'}"})

    @DBOS.step()
    def note(i: int) -> str:
        """Note a number."""
        return _note(i)

    agent = _agent(turns, note)

    @DBOS.workflow()
    async def noter(text: str) -> str:
        result = await DBOSRunner.run(agent, text, max_turns=turns + 2)
        return str(result.final_output)

    DBOS.launch()
    try:

        def once() -> None:
            assert asyncio.run(noter("go")) == f"noted {turns}"

        once()
        return _timed(once, runs)
    finally:
        DBOS.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=20, help="tool calls per run")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per system")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    set_tracing_disabled(True)
    steps = 2 * args.turns + 1
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        times = {
            "sdk": run_sdk(args.turns, args.runs),
            "tether": run_tether(args.turns, args.runs, workdir),
            "dbos": run_dbos(args.turns, args.runs, workdir),
        }
    base = statistics.median(times["sdk"])
    print(f"Agents SDK run of {steps} steps ({args.turns} tool calls), SQLite, median of "
          f"{args.runs} runs")  # fmt: skip
    print(f"{'system':<8} {'run (ms)':>10} {'overhead/step (ms)':>20}")
    figures: dict[str, Any] = {
        "turns": args.turns,
        "steps": steps,
        "runs": args.runs,
        "load_average": os.getloadavg(),
        "versions": {p: importlib.metadata.version(p) for p in VERSIONED},
        "systems": {},
    }
    for name, values in times.items():
        median = statistics.median(values)
        overhead = (median - base) / steps * 1000 if name != "sdk" else 0.0
        print(f"{name:<8} {median * 1000:>10.1f} {overhead:>20.2f}")
        figures["systems"][name] = {
            "run_ms": [round(v * 1000, 2) for v in values],
            "median_ms": round(median * 1000, 2),
            "overhead_per_step_ms": round(overhead, 3),
        }
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
