"""tether's PostgreSQL round trips and statements per step, and its throughput, from the
driver's own counts (``tether.store.postgres_connection.COUNTS``).

    python -m bench.pg_round_trips                   # 1 session × 40 steps, 50 × 10
    python -m bench.pg_round_trips --sessions 50 --steps 20

Everything the worker sends is counted: claims, step commits, finishes (a task's
claim and finish are spread over its steps). Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from bench import common
from bench.suite_tether import run_tasks
from tether.store import open_store
from tether.store import postgres_connection as pg


async def measure(sessions: int, steps: int) -> dict[str, float]:
    url = common.fresh_pg_database(f"rt_{sessions}_{steps}")
    store = open_store(url)
    await store.open()
    try:
        before = pg.COUNTS.snapshot()
        elapsed, taken = await run_tasks(store, sessions, steps, sessions)
        after = pg.COUNTS.snapshot()
    finally:
        await store.close()
    return {
        "sessions": sessions,
        "steps": taken,
        "steps_per_s": round(taken / elapsed, 1),
        "round_trips_per_step": round((after.round_trips - before.round_trips) / taken, 2),
        "statements_per_step": round((after.statements - before.statements) / taken, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, action="append")
    parser.add_argument("--steps", type=int, default=0)
    args = parser.parse_args()
    runs = [(n, args.steps or 20) for n in args.sessions] if args.sessions else [(1, 40), (50, 10)]
    for sessions, steps in runs:
        print(json.dumps(asyncio.run(measure(sessions, steps))), flush=True)


if __name__ == "__main__":
    main()
