"""tether's per-step overhead under Pydantic AI, beside Pydantic AI on DBOS, in one run.

    python -m bench.suite_frameworks                  # both systems, SQLite and PostgreSQL
    python -m bench.suite_frameworks --backends sqlite --runs 5

(run it in bench/.venv-peers, which has DBOS; ``bench/requirements.txt``). The same
Pydantic AI agent, unchanged but for its durability capability, runs on an instant
``FunctionModel`` that calls a no-op tool K times, one call per model turn, then
answers: 2K + 1 durable units (model requests and tool calls). It runs

- plain (no capability): Pydantic AI's own cost, the baseline;
- with ``TetherDurability``, as a tether task (``Runtime.run``);
- with ``DBOSDurability`` inside a ``@DBOS.workflow``, the tool a ``@DBOS.step``, so
  that both engines journal the same units;
- and, for reference, tether's own ``Agent`` on the same workload (no Pydantic AI):
  its "plain" column is still Pydantic AI's, so read its per-step column.

Each runs at K = 5 and K = 25; the cost of a durable unit is the slope between them
(the per-task cost, a claim or a workflow row, drops out), and the overhead per step
is that slope minus the plain run's. Every system and store runs in a process of its
own (``--system``); the driver prints one table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import common

LABELS = {
    "tether": "PAI + tether",
    "dbos": "PAI + DBOS",
    "tether-agent": "tether Agent (ref.)",
}
SIZES = (5, 25)
"""Tool calls per run: 2K + 1 durable units."""


def _agent(capability: Any | None, tool: Callable[[int], str] | None = None) -> Any:
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        target = int(str(messages[0].parts[-1].content).split()[-1])  # type: ignore[union-attr]
        done = sum(1 for m in messages for p in m.parts if p.part_kind == "tool-return")
        if done < target:
            return ModelResponse(parts=[ToolCallPart("noop", {"n": done})])
        return ModelResponse(parts=[TextPart(common.body(done)[:80])])

    def noop(n: int) -> str:
        """Do nothing, quickly."""
        return f"ok {n}"

    return Agent(
        FunctionModel(model, model_name="instant"),
        name="bench_agent",
        tools=[tool or noop],
        capabilities=[capability] if capability is not None else [],
    )


def _timed(run: Callable[[int], Any], runs: int) -> dict[str, float]:
    """Median seconds of one run at each size."""
    out: dict[str, float] = {}
    for k in SIZES:
        run(k)  # warm: imports, first connections, schema
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            run(k)
            times.append(time.perf_counter() - started)
        out[str(k)] = statistics.median(times)
    return out


def _per_step_ms(seconds: dict[str, float]) -> float:
    small, large = SIZES
    return (seconds[str(large)] - seconds[str(small)]) / (2 * (large - small)) * 1000


def plain(runs: int) -> dict[str, float]:
    agent = _agent(None)
    return _timed(lambda k: asyncio.run(agent.run(f"count to {k}")), runs)


def tether(backend: str, workdir: str, runs: int) -> dict[str, float]:
    from tether.integrations.pydantic_ai import TetherDurability
    from tether.runtime import Runtime

    url = (
        f"sqlite:///{os.path.join(workdir, 'tether-fw.db')}"
        if backend == "sqlite"
        else common.fresh_pg_database("bench_fw_tether")
    )
    rt = Runtime(store=url)
    rt.register(_agent(TetherDurability()))

    def run(k: int) -> None:
        task = rt.submit(agent="bench_agent", input=f"count to {k}", tenant="b", session=None)
        assert rt.run(task.id).status == "completed"

    try:
        return _timed(run, runs)
    finally:
        rt.close()


def tether_agent(backend: str, workdir: str, runs: int) -> dict[str, float]:
    """tether's own ``Agent`` on the same workload (``ScriptedModel``): what the steps
    cost without Pydantic AI, to tell the integration's share from the store's."""
    from tether import Agent, ScriptedModel, tool
    from tether.runtime import Runtime

    @tool
    def noop(n: int) -> str:
        """Do nothing, quickly."""
        return f"ok {n}"

    url = (
        f"sqlite:///{os.path.join(workdir, 'tether-agent.db')}"
        if backend == "sqlite"
        else common.fresh_pg_database("bench_fw_tether_agent")
    )
    rt = Runtime(store=url)
    for k in SIZES:
        script = [*(ScriptedModel.call("noop", n=i) for i in range(k)), common.body(k)[:80]]
        model = ScriptedModel(script)
        rt.register(Agent(name=f"own{k}", model=model, tools=[noop], max_steps=k + 2))

    def run(k: int) -> None:
        task = rt.submit(agent=f"own{k}", input=f"count to {k}", tenant="b", session=None)
        assert rt.run(task.id).status == "completed"

    try:
        return _timed(run, runs)
    finally:
        rt.close()


def dbos(backend: str, workdir: str, runs: int) -> dict[str, float]:
    from dbos import DBOS, DBOSConfig
    from pydantic_ai.durable_exec.dbos import DBOSDurability

    url = (
        f"sqlite:///{os.path.join(workdir, 'dbos-fw.db')}"
        if backend == "sqlite"
        else common.fresh_pg_database("bench_fw_dbos")
    )
    config: DBOSConfig = {"name": "bench-fw", "system_database_url": url, "log_level": "WARNING"}
    DBOS(config=config)

    @DBOS.step()
    def noop(n: int) -> str:
        """Do nothing, quickly."""
        return f"ok {n}"

    agent = _agent(DBOSDurability(), noop)

    @DBOS.workflow()
    async def run_agent(prompt: str) -> str:
        result = await agent.run(prompt)
        return str(result.output)

    DBOS.launch()
    loop = asyncio.new_event_loop()

    def run(k: int) -> None:
        loop.run_until_complete(_call(run_agent, f"count to {k}"))

    try:
        return _timed(run, runs)
    finally:
        loop.close()
        DBOS.destroy(destroy_registry=True)


async def _call(fn: Callable[[str], Awaitable[str]], prompt: str) -> str:
    return await fn(prompt)


def one(system: str, backend: str, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-fw-") as workdir:
        base = plain(runs)
        durable = {"tether": tether, "dbos": dbos, "tether-agent": tether_agent}[system](
            backend, workdir, runs
        )
    step_ms = _per_step_ms(durable)
    return {
        "system": system,
        "backend": backend,
        "seconds": durable,
        "plain_seconds": base,
        "step_ms": round(step_ms, 3),
        "plain_step_ms": round(_per_step_ms(base), 3),
        "overhead_ms": round(step_ms - _per_step_ms(base), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--system", choices=("tether", "dbos", "tether-agent"), help="run one, print RESULT"
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--runs", type=int, default=10, help="runs per size (median)")
    args = parser.parse_args()
    if args.system:
        common.emit_result(one(args.system, args.backend, args.runs))
        return
    rows = []
    for backend in args.backends.split(","):
        for system in ("tether", "dbos", "tether-agent"):
            cmd = [sys.executable, "-m", "bench.suite_frameworks", "--system", system,
                   "--backend", backend, "--runs", str(args.runs)]  # fmt: skip
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            found = [ln[7:] for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            if not found:
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                rows.append({"system": system, "backend": backend, "error": tail})
                continue
            rows.append(json.loads(found[-1]))
    print("Pydantic AI agent, instant model, no-op tool: cost of one durable unit (model")
    print(f"request or tool call), the slope between K={SIZES[0]} and K={SIZES[1]} tool calls")
    print(f"({args.runs} runs each, median)\n")
    print(f"{'engine':<22}{'store':<10}{'per step ms':>12}{'plain ms':>10}{'overhead ms':>13}")
    for r in rows:
        label = LABELS[r["system"]]
        if "error" in r:
            print(f"{label:<22}{r['backend']:<10}  failed: {r['error']}")
            continue
        print(
            f"{label:<22}{r['backend']:<10}{r['step_ms']:>12.2f}{r['plain_step_ms']:>10.2f}"
            f"{r['overhead_ms']:>13.2f}"
        )
    print("\n" + json.dumps({"meta": common.machine(), "results": rows}))


if __name__ == "__main__":
    main()
