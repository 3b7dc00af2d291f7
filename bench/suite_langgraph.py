"""LangGraph's figures on the same workload: a graph with one node that appends one
~500-byte message to the state's ``messages`` (``operator.add``) and loops to itself
until it has taken its steps; every super-step is checkpointed (durability ``sync``):
one session through ``SqliteSaver`` / ``PostgresSaver``, concurrent sessions through
the async savers (``throughput``). The node stands for the instant model."""

from __future__ import annotations

import asyncio
import contextlib
import operator
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypedDict

from bench import common

CLOCK = common.StepClock()
HOOKS: dict[int, list[Any]] = {}


class State(TypedDict):
    messages: Annotated[list[dict[str, str]], operator.add]
    left: int


def model(state: State) -> dict[str, Any]:
    history = len(state["messages"])
    CLOCK.enter(history)
    for hook in HOOKS.get(history, ()):
        hook()
    update = {
        "messages": [{"role": "assistant", "content": common.body(history)}],
        "left": state["left"] - 1,
    }
    CLOCK.exit()
    return update


def build(checkpointer: Any) -> Any:
    from langgraph.graph import END, StateGraph

    graph = StateGraph(State)
    graph.add_node("model", model)
    graph.set_entry_point("model")
    graph.add_conditional_edges("model", lambda s: "model" if s["left"] > 0 else END)
    return graph.compile(checkpointer=checkpointer)


def run_session(app: Any, thread: str, steps: int) -> None:
    config = {"configurable": {"thread_id": thread}, "recursion_limit": steps + 10}
    app.invoke({"messages": [], "left": steps}, config, durability="sync")


def saver(backend: str, workdir: str, name: str) -> tuple[Any, Any, Any]:
    """(checkpointer, stored-bytes measure, close)."""
    if backend == "sqlite":
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        path = os.path.join(workdir, f"langgraph-{name}.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        conn = sqlite3.connect(path, check_same_thread=False)
        cp = SqliteSaver(conn)
        cp.setup()
        return cp, lambda: common.sqlite_payload_bytes(path), conn.close
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    dsn = common.fresh_pg_database(f"bench_langgraph_{name}")
    pool = ConnectionPool(
        dsn,
        min_size=1,
        max_size=20,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=True,
    )
    cp = PostgresSaver(pool)  # type: ignore[arg-type]
    cp.setup()
    return cp, lambda: common.postgres_payload_bytes(dsn), pool.close


async def throughput(
    backend: str, workdir: str, sizes: common.Sizes
) -> tuple[dict[str, float], str]:
    """Steps/s with N concurrent sessions through LangGraph's async savers
    (``AsyncSqliteSaver``, ``AsyncPostgresSaver``: its best configuration for concurrent
    sessions, not threads over one sync connection), each session an ``ainvoke``; the
    window includes starting them, as for every system. Returns the saver's name too."""
    async with _async_saver(backend, workdir) as (cp, label):
        app = build(cp)
        out: dict[str, float] = {}
        for sessions, steps in sizes.concurrency:
            common.progress(f"{sessions} concurrent threads × {steps} steps ({label})")
            started = time.perf_counter()
            await asyncio.gather(
                *(
                    app.ainvoke(
                        {"messages": [], "left": steps},
                        {"configurable": {"thread_id": f"c{sessions}-{i}"},
                         "recursion_limit": steps + 10},
                        durability="sync",
                    )
                    for i in range(sessions)
                )
            )  # fmt: skip
            out[str(sessions)] = sessions * steps / (time.perf_counter() - started)
        return out, label


@contextlib.asynccontextmanager
async def _async_saver(backend: str, workdir: str) -> AsyncIterator[tuple[Any, str]]:
    if backend == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        path = os.path.join(workdir, "langgraph-throughput.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        async with AsyncSqliteSaver.from_conn_string(path) as cp:
            await cp.setup()
            yield cp, "AsyncSqliteSaver"
        return
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    dsn = common.fresh_pg_database("bench_langgraph_throughput")
    pool: Any = AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=20,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=False,
    )
    await pool.open()
    try:
        cp = AsyncPostgresSaver(pool)
        await cp.setup()
        yield cp, "AsyncPostgresSaver"
    finally:
        await pool.close()


def main() -> None:
    args = common.suite_args(__doc__ or "")
    sizes = common.sizes(args.sizes)
    result: dict[str, Any] = {"system": "langgraph", "backend": args.backend}

    if common.wanted(args, "per_step"):
        cp, measure, close = saver(args.backend, args.workdir, "steps")
        app = build(cp)
        snaps = common.Bytes(measure)
        for length in sizes.lengths:
            for h in (length, length + sizes.window):
                HOOKS.setdefault(h, []).append(lambda h=h: snaps.snap(h))
        total = max(sizes.lengths) + sizes.window + 2
        common.progress(f"one thread, {total} steps")
        CLOCK.start()
        run_session(app, "steps", total)
        CLOCK.stop()
        result["overhead_ms"] = {str(n): CLOCK.overhead_at(n, sizes.window) for n in sizes.lengths}
        result["bytes_per_step"] = snaps.per_step(sizes.lengths, sizes.window)
        HOOKS.clear()
        close()

    if common.wanted(args, "throughput"):
        out, label = asyncio.run(throughput(args.backend, args.workdir, sizes))
        result["steps_per_s"] = out
        result["throughput_saver"] = label

    if common.wanted(args, "rss"):
        cp, _, close = saver(args.backend, args.workdir, "rss")
        app = build(cp)
        samples: list[int] = []
        per_batch = sizes.rss_tasks // 10
        with ThreadPoolExecutor(max_workers=8) as pool:
            for b in range(10):
                common.progress(
                    f"RSS: runs {b * per_batch}–{(b + 1) * per_batch} of {sizes.rss_tasks}"
                )
                list(pool.map(lambda i, b=b: run_session(app, f"r{b}-{i}", 3), range(per_batch)))
                samples.append(common.rss_bytes())
        result["rss"] = {
            "rss_start_mib": samples[0] / 2**20,
            "rss_end_mib": samples[-1] / 2**20,
            "rss_growth_pct": (samples[-1] - samples[0]) / samples[0] * 100,
            "tasks": sizes.rss_tasks,
        }
        close()
    common.emit_result(result)


if __name__ == "__main__":
    main()
