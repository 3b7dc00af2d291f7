"""Bytes per LangGraph checkpoint as a thread grows: TetherSaver beside LangGraph's own
SqliteSaver and PostgresSaver, on the same graph, measured the same way.

The graph: one node that appends one ~500-byte message a step and loops until it has
taken its steps; its state also holds a 20 kB ``context`` (documents, tool schemas)
given with the input and never changed. Every super-step is checkpointed (durability
``sync``). Two ways to keep ``messages``:

- ``add``: a plain ``operator.add`` channel (``MessagesState`` style): LangGraph hands
  the saver the whole list whenever it changes, so every saver stores it again;
- ``delta``: LangGraph's ``DeltaChannel`` (beta in 1.2): the saver stores only each
  step's write, and the list is rebuilt from the parent chain.

Bytes are the database's stored row payload (SQLite ``dbstat``, PostgreSQL
``pg_column_size``), read after steps 25, 50, 100, 200; bytes per checkpoint is the
growth between two readings over the checkpoints written in between.

    python -m bench.suite_langgraph_saver [--out bench/figures] [--replot]
"""

from __future__ import annotations

import argparse
import itertools
import json
import operator
import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.channels.delta import DeltaChannel

from bench import common

CONTEXT = common.body(10**6) * 46  # ~20 kB, never changed after the input
READINGS = (25, 50, 100, 200)
Saver = tuple[Any, Callable[[], int], Callable[[], None]]


def concat(state: list[str], writes: list[list[str]]) -> list[str]:
    """DeltaChannel's reducer: the batch of writes, appended in order."""
    out = list(state)
    for w in writes:
        out.extend(w)
    return out


class AddState(TypedDict):
    messages: Annotated[list[str], operator.add]
    context: str
    left: int


class DeltaState(TypedDict):
    messages: Annotated[list[str], DeltaChannel(concat)]
    context: str
    left: int


def build(checkpointer: Any, mode: str, hooks: dict[int, Callable[[], None]]) -> Any:
    from langgraph.graph import END, START, StateGraph

    State: Any = DeltaState if mode == "delta" else AddState

    def model(state: Any) -> dict[str, Any]:
        return {"messages": [common.body(state["left"])], "left": state["left"] - 1}

    def route(state: Any) -> str:
        done = STEPS - state["left"]
        if done in hooks:
            hooks[done]()
        return "model" if state["left"] > 0 else END

    graph = StateGraph(State)
    graph.add_node("model", model)
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", route)
    return graph.compile(checkpointer=checkpointer, name=f"bench-{mode}")


STEPS = max(READINGS)


def savers(workdir: str) -> dict[str, Callable[[str], Saver]]:
    def tether_sqlite(tag: str) -> Saver:
        from tether.integrations.langgraph import TetherSaver

        path = os.path.join(workdir, f"tether-{tag}.db")
        saver = TetherSaver(f"sqlite:///{path}")
        saver.setup()
        return saver, lambda: common.sqlite_payload_bytes(path), saver.close

    def langgraph_sqlite(tag: str) -> Saver:
        from langgraph.checkpoint.sqlite import SqliteSaver

        path = os.path.join(workdir, f"langgraph-{tag}.db")
        conn = sqlite3.connect(path, check_same_thread=False)
        saver = SqliteSaver(conn)
        saver.setup()
        return saver, lambda: common.sqlite_payload_bytes(path), conn.close

    def tether_postgres(tag: str) -> Saver:
        from tether.integrations.langgraph import TetherSaver

        dsn = common.fresh_pg_database(f"bench_tethersaver_{tag}")
        saver = TetherSaver(dsn)
        saver.setup()
        return saver, lambda: common.postgres_payload_bytes(dsn), saver.close

    def langgraph_postgres(tag: str) -> Saver:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        dsn = common.fresh_pg_database(f"bench_pgsaver_{tag}")
        pool: Any = ConnectionPool(
            dsn,
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
            open=True,
        )
        saver = PostgresSaver(pool)
        saver.setup()
        return saver, lambda: common.postgres_payload_bytes(dsn), pool.close

    return {
        "TetherSaver (SQLite)": tether_sqlite,
        "SqliteSaver": langgraph_sqlite,
        "TetherSaver (PostgreSQL)": tether_postgres,
        "PostgresSaver": langgraph_postgres,
    }


def measure(make: Callable[[str], Saver], mode: str) -> dict[str, float]:
    """Bytes per checkpoint between readings, keyed by the thread length at the end."""
    saver, stored, close = make(mode)
    seen: dict[int, int] = {}
    hooks = {n: (lambda n=n: seen.__setitem__(n, stored())) for n in READINGS}
    try:
        graph = build(saver, mode, hooks)
        config = {"configurable": {"thread_id": "t"}, "recursion_limit": STEPS + 10}
        final = graph.invoke(
            {"messages": [], "context": CONTEXT, "left": STEPS}, config, durability="sync"
        )
        # the thread read back from the store holds every message, in order
        again = graph.get_state(config).values
        assert (
            final["messages"] == again["messages"] == [common.body(STEPS - i) for i in range(STEPS)]
        ), f"{mode}: the thread did not come back whole"
    finally:
        close()
    # one checkpoint per step between two readings
    out: dict[str, float] = {}
    for a, b in itertools.pairwise(READINGS):
        out[str(b)] = (seen[b] - seen[a]) / (b - a)
    return out


def plot(results: dict[str, dict[str, dict[str, float]]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {
        "TetherSaver (SQLite)": "tab:blue",
        "TetherSaver (PostgreSQL)": "tab:blue",
        "SqliteSaver": "tab:orange",
        "PostgresSaver": "tab:orange",
    }
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=120, sharey=True)
    for ax, mode, title in (
        (axes[0], "add", "messages: operator.add (whole list on each change)"),
        (axes[1], "delta", "messages: DeltaChannel (each step's write only)"),
    ):
        for name, by_mode in results.items():
            pts = sorted((int(k), v) for k, v in by_mode[mode].items())
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="s" if "Postgre" in name else "o",
                color=colors[name],
                linestyle=(0, (4, 2)) if "Postgre" in name else "-",
                label=name,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("thread length (checkpoints)")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("stored bytes per checkpoint")
    axes[1].legend(fontsize=8)
    fig.suptitle(
        "LangGraph checkpoint storage: one ~500-byte message a step, a 20 kB context never changed",
        fontsize=10,
    )
    fig.tight_layout()
    path = out / "langgraph_saver_bytes.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench/figures", help="where the PNG and JSON go")
    parser.add_argument("--replot", action="store_true", help="redraw from the JSON only")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        print(f"figure: {plot(json.loads((out / 'langgraph_saver_bytes.json').read_text()), out)}")
        return
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name, make in savers(workdir).items():
            results[name] = {}
            for mode in ("add", "delta"):
                common.progress(f"{name}, messages {mode}, {STEPS} steps")
                results[name][mode] = measure(make, mode)
    (out / "langgraph_saver_bytes.json").write_text(json.dumps(results, indent=2) + "\n")
    figure = plot(results, out)
    for name, by_mode in results.items():
        row = "  ".join(
            f"{mode} " + " ".join(f"{k}:{v:,.0f}" for k, v in by_mode[mode].items())
            for mode in ("add", "delta")
        )
        print(f"{name:26} {row}")
    print(f"figure: {figure}")


if __name__ == "__main__":
    main()
