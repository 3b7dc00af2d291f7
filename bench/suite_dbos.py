"""DBOS Transact's figures on the same workload: a workflow whose every step (an
``@DBOS.step``, the instant model) returns one ~500-byte message that the workflow
appends to its in-memory history; DBOS records each step's output before the next."""

from __future__ import annotations

import os
import time
from typing import Any

from bench import common

CLOCK = common.StepClock()
HOOKS: dict[int, list[Any]] = {}


def launch(backend: str, workdir: str, name: str) -> tuple[Any, Any]:
    from dbos import DBOS, DBOSConfig

    if backend == "sqlite":
        path = os.path.join(workdir, f"dbos-{name}.db")
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        url = f"sqlite:///{path}"
        _wal(path)

        def measure() -> int:
            return common.sqlite_payload_bytes(path)
    else:
        url = common.fresh_pg_database(f"bench_dbos_{name}")

        def measure() -> int:
            return common.postgres_payload_bytes(url)

    config: DBOSConfig = {"name": "bench", "system_database_url": url, "log_level": "WARNING"}
    DBOS(config=config)
    _register(DBOS)
    DBOS.launch()
    return DBOS, measure


def _wal(path: str) -> None:
    """Put the new file in WAL mode (a setting the file keeps) before DBOS opens it: its
    best SQLite configuration for concurrent workflows, as tether and LangGraph run."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


def journal_mode(path: str) -> str:
    """The file's journal mode as it is now (after DBOS ran), for the result's label."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def _register(dbos: Any) -> None:
    global agent

    @dbos.step()
    def model(history: int) -> dict[str, str]:
        CLOCK.enter(history)
        for hook in HOOKS.get(history, ()):
            hook()
        message = {"role": "assistant", "content": common.body(history)}
        CLOCK.exit()
        return message

    @dbos.workflow()
    def agent_workflow(steps: int) -> int:
        messages: list[dict[str, str]] = []
        for _ in range(steps):
            messages.append(model(len(messages)))
        return len(messages)

    agent = agent_workflow


agent: Any = None


def main() -> None:
    args = common.suite_args(__doc__ or "")
    sizes = common.sizes(args.sizes)
    result: dict[str, Any] = {"system": "dbos", "backend": args.backend}

    def finish(dbos: Any) -> None:
        dbos.destroy(destroy_registry=True)

    if common.wanted(args, "per_step"):
        dbos, measure = launch(args.backend, args.workdir, "steps")
        snaps = common.Bytes(measure)
        for length in sizes.lengths:
            for h in (length, length + sizes.window):
                HOOKS.setdefault(h, []).append(lambda h=h: snaps.snap(h))
        total = max(sizes.lengths) + sizes.window + 2
        common.progress(f"one workflow, {total} steps")
        CLOCK.start()
        agent(total)
        CLOCK.stop()
        result["overhead_ms"] = {str(n): CLOCK.overhead_at(n, sizes.window) for n in sizes.lengths}
        result["bytes_per_step"] = snaps.per_step(sizes.lengths, sizes.window)
        HOOKS.clear()
        finish(dbos)

    if common.wanted(args, "throughput"):
        dbos, _ = launch(args.backend, args.workdir, "throughput")
        out: dict[str, float] = {}
        for sessions, steps in sizes.concurrency:
            common.progress(f"{sessions} concurrent workflows × {steps} steps")
            started = time.perf_counter()
            handles = [dbos.start_workflow(agent, steps) for _ in range(sessions)]
            for h in handles:
                h.get_result()
            out[str(sessions)] = sessions * steps / (time.perf_counter() - started)
        result["steps_per_s"] = out
        if args.backend == "sqlite":  # the label: WAL unless DBOS switched the file back
            path = os.path.join(args.workdir, "dbos-throughput.db")
            result["sqlite_journal_mode"] = journal_mode(path)
        finish(dbos)

    if common.wanted(args, "rss"):
        dbos, _ = launch(args.backend, args.workdir, "rss")
        samples: list[int] = []
        per_batch = sizes.rss_tasks // 10
        for b in range(10):
            common.progress(
                f"RSS: workflows {b * per_batch}–{(b + 1) * per_batch} of {sizes.rss_tasks}"
            )
            for chunk in range(0, per_batch, 8):
                handles = [dbos.start_workflow(agent, 3) for _ in range(min(8, per_batch - chunk))]
                for h in handles:
                    h.get_result()
            samples.append(common.rss_bytes())
        result["rss"] = {
            "rss_start_mib": samples[0] / 2**20,
            "rss_end_mib": samples[-1] / 2**20,
            "rss_growth_pct": (samples[-1] - samples[0]) / samples[0] * 100,
            "tasks": sizes.rss_tasks,
        }
        finish(dbos)
    common.emit_result(result)


if __name__ == "__main__":
    main()
