"""tether's CPU time per step on SQLite: the worker process's, and each of its threads'
(the event loop's and the SQLite connection's), over one throughput run.

    python -m bench.cpu_per_step                          # 50 sessions x 40 steps
    python -m bench.cpu_per_step --sessions 50 --steps 6  # the quick suite's row

Wall time on a shared machine swings with the other load; CPU time per step moves far
less, so it is the figure to compare before and after a change (run both back to back,
a few times each, and compare the lowest and the median). The run goes as the bench's
throughput row does (``suite_tether.run_tasks``: submissions, claims, steps, finishes),
after a small warm-up run. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from bench.suite_tether import run_tasks
from tether.store import open_store


def thread_cpu() -> dict[str, tuple[float, float]]:
    """(user, system) CPU seconds of each thread of this process, by its Python name
    (``MainThread``, ``tether-sqlite:…``) or, for a thread Python did not start, its id."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, tuple[float, float]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = names.get(int(tid), f"thread {tid}").split(":")[0]
        fields = stat.rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return out


async def measure(sessions: int, steps: int, folder: Path) -> dict[str, object]:
    store = open_store(f"sqlite:///{folder / 'cpu.db'}")
    await store.open()
    try:
        await run_tasks(store, 5, 4, 5)  # warm-up: imports, caches, the first claims
        threads_before, cpu_before = thread_cpu(), time.process_time()
        elapsed, taken = await run_tasks(store, sessions, steps, sessions)
        cpu_after, threads_after = time.process_time(), thread_cpu()
    finally:
        await store.close()
    per_thread = {}
    for key, (user, system) in threads_after.items():
        user0, system0 = threads_before.get(key, (0.0, 0.0))
        per_thread[key] = {
            "user_us": round((user - user0) / taken * 1e6),
            "sys_us": round((system - system0) / taken * 1e6),
        }
    return {
        "sessions": sessions,
        "steps": taken,
        "cpu_us_per_step": round((cpu_after - cpu_before) / taken * 1e6),
        "steps_per_s": round(taken / elapsed),
        "threads_us_per_step": per_thread,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-cpu-") as folder:
        result = asyncio.run(measure(args.sessions, args.steps, Path(folder)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
