"""tether's figures: cost and bytes per step by history length, throughput at 1/50/500
sessions, RSS over many tasks, recovery after SIGKILL and SIGTERM of a ``tether worker``
process, and (PostgreSQL) throughput with 1, 2 and 4 worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import common
from bench import tether_workload as wl
from tether import types
from tether.execution.committer import Committer
from tether.execution.settings import ExecutionSettings
from tether.execution.worker import Worker
from tether.observe import events
from tether.store import open_store
from tether.store.base import Store

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ExecutionSettings(poll_interval=0.02)


class Finished:
    """Counts the tasks that ended, and wakes whoever waits for a number of them."""

    def __init__(self) -> None:
        self.count = 0
        self.failed = 0
        self.steps = 0
        self._want = 0
        self._done = asyncio.Event()

    def expect(self, n: int) -> asyncio.Event:
        self.count, self.failed, self.steps, self._want = 0, 0, 0, n
        self._done = asyncio.Event()
        return self._done

    def on_event(self, event: events.TaskEvent) -> None:
        self.steps += event.name == events.STEP_COMPLETED
        if event.name in (events.TASK_COMPLETED, events.TASK_FAILED):
            self.count += 1
            self.failed += event.name == events.TASK_FAILED
            if self.count >= self._want:
                self._done.set()


async def run_tasks(
    store: Store,
    n_sessions: int,
    steps: int,
    concurrency: int,
    observer: events.Observer | None = None,
) -> tuple[float, int]:
    """Submit one task of about ``steps`` steps in each of ``n_sessions`` new sessions, run
    them with one in-process worker; the seconds from the first submit to the end (the
    peers' suites also time their submissions: DBOS's ``start_workflow``, LangGraph's
    ``invoke``), and the steps taken. ``observer`` also hears the run's events (the
    smoke test's injected delay)."""
    started = time.perf_counter()
    for _ in range(n_sessions):
        await store.submit_task(
            types.NewTask(tenant="bench", agent="bench", input=wl.task_input(steps))
        )
    finished = Finished()
    done = finished.expect(n_sessions)
    worker = Worker(
        store,
        {"bench": wl.agent},
        worker_id="bench-inproc",
        concurrency=concurrency,
        settings=SETTINGS,
        observers=events.Observers([finished, *([observer] if observer else [])]),
        committer=Committer(store),
    )
    serving = asyncio.ensure_future(worker.serve())
    try:
        await asyncio.wait_for(done.wait(), timeout=120)
    except TimeoutError:
        raise RuntimeError(
            f"only {finished.count} of {n_sessions} tasks ended within 120 s"
            f" ({concurrency} at once); stuck: {worker.in_flight[:5]}"
        ) from None
    elapsed = time.perf_counter() - started
    worker.drain()
    await serving
    await worker.shutdown(0)
    if finished.failed:
        raise RuntimeError(f"{finished.failed} benchmark tasks failed")
    return elapsed, finished.steps


async def per_step(
    url: str, measure: Any, sizes: common.Sizes, observer: events.Observer | None = None
) -> dict[str, Any]:
    store = open_store(url)
    await store.open()
    try:
        snaps = common.Bytes(measure)
        wl.HOOKS.clear()
        for length in sizes.lengths:
            for h in (length, length + sizes.window):
                wl.HOOKS.setdefault(h, []).append(lambda h=h: snaps.snap(h))
        wl.CLOCK.start()
        total = max(sizes.lengths) + sizes.window + 2
        common.progress(f"one session, {total} steps")
        await run_tasks(store, 1, total, 1, observer)
        wl.CLOCK.stop()
        overhead = {str(n): wl.CLOCK.overhead_at(n, sizes.window) for n in sizes.lengths}
        wl.HOOKS.clear()
        return {
            "overhead_ms": overhead,
            "bytes_per_step": snaps.per_step(sizes.lengths, sizes.window),
        }
    finally:
        await store.close()


async def throughput(
    url: str, sizes: common.Sizes, measured: dict[str, tuple[int, float]] | None = None
) -> dict[str, float]:
    """Steps per second by concurrent sessions: the steps taken over the seconds from the
    first submission to the last task's end (both put in ``measured`` when given)."""
    store = open_store(url)
    await store.open()
    out: dict[str, float] = {}
    try:
        for sessions, steps in sizes.concurrency:
            common.progress(f"{sessions} concurrent sessions × {steps} steps")
            try:
                elapsed, taken = await run_tasks(store, sessions, steps, sessions)
            except RuntimeError as exc:  # keep the rows measured so far; say what failed
                out["error"] = f"{sessions} sessions: {exc}"  # type: ignore[assignment]
                break
            out[str(sessions)] = taken / elapsed
            if measured is not None:
                measured[str(sessions)] = (taken, elapsed)
    finally:
        await store.close()
    return out


async def rss(url: str, sizes: common.Sizes) -> dict[str, float]:
    store = open_store(url)
    await store.open()
    batches = 10
    per_batch = sizes.rss_tasks // batches
    samples: list[int] = []
    try:
        for b in range(batches):
            common.progress(
                f"RSS: tasks {b * per_batch}–{(b + 1) * per_batch} of {sizes.rss_tasks}"
            )
            await run_tasks(store, per_batch, 3, 8)
            samples.append(common.rss_bytes())
    finally:
        await store.close()
    first, last = samples[0], samples[-1]
    return {
        "rss_start_mib": first / 2**20,
        "rss_end_mib": last / 2**20,
        "rss_growth_pct": (last - first) / first * 100,
        "tasks": sizes.rss_tasks,
    }


# ---- worker processes --------------------------------------------------------------


def start_worker(
    url: str, wid: str, agent: str, concurrency: int, ttl: float
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_TOOL_SLEEP": "1.0"}
    cmd = [
        sys.executable, "-m", "tether", "worker", f"bench/tether_workload.py:{agent}",
        "--store", url, "--worker-id", wid, "--concurrency", str(concurrency),
        "--lease-ttl", str(ttl), "--poll", "0.05", "--grace", "30", "--log-text",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "ready" in line:
            break
    else:
        raise RuntimeError(f"worker {wid} exited before it was ready (code {proc.wait()})")
    # Keep reading its stderr so the pipe never fills.
    import threading

    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    return proc


async def _tasks(store: Store, ids: list[str]) -> list[types.TaskRecord]:
    return [await store.get_task(i) for i in ids]


async def _round(store: Store, tenant: str) -> list[types.TaskRecord]:
    return await store.list_tasks(tenant=tenant, limit=100_000)


async def recovery(url: str, sizes: common.Sizes) -> dict[str, float]:
    """100 tasks in flight on worker A (each step of their tools takes 1 s); worker B is
    up and idle. A is killed (or terminated); how long until B runs them all, and until
    they all complete."""
    store = open_store(url)
    await store.open()
    out: dict[str, float] = {"lease_ttl": sizes.lease_ttl}
    try:
        for how in ("SIGKILL", "SIGTERM"):
            common.progress(f"recovery after {how}: {sizes.recovery_tasks} tasks in flight")
            a = start_worker(url, f"bench-A-{how}", "slow", sizes.recovery_tasks, sizes.lease_ttl)
            tenant = f"bench-{how}"  # one query reads every task of this round
            ids = [
                (await store.submit_task(
                    types.NewTask(tenant=tenant, agent="bench-slow", input=wl.task_input(4))
                )).id
                for _ in range(sizes.recovery_tasks)
            ]  # fmt: skip
            while any(t.status != "running" for t in await _round(store, tenant)):
                await asyncio.sleep(0.05)
            # all of them in their first 1 s tool step; B's start-up (about a second)
            # decides where in a step the signal lands, so SIGTERM's all-handed-over
            # figure varies by up to a step, the release → running gap does not
            await asyncio.sleep(0.3)
            b = start_worker(url, f"bench-B-{how}", "slow", sizes.recovery_tasks, sizes.lease_ttl)
            signalled = types.now()
            a.send_signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGTERM)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                tasks = await _round(store, tenant)
                if all(t.status in types.FINAL_STATUSES for t in tasks):
                    break
                await asyncio.sleep(0.05)
            a.wait()
            b.send_signal(signal.SIGTERM)
            b.wait()
            tasks = await _tasks(store, ids)
            if any(t.status != "completed" for t in tasks):
                raise RuntimeError(f"recovery after {how}: not every task completed")
            resumed, gaps, finished_on_a = [], [], 0
            for tid in ids:
                runs = [r for r in await store.list_runs(tid) if r.worker.startswith("bench-B")]
                if not runs:
                    finished_on_a += 1  # its last step ended on A before A stopped
                    continue
                started = min(r.started_at for r in runs)
                resumed.append(started)
                released = [
                    e.at for e in await store.list_events(tid) if e.name == events.TASK_RELEASED
                ]
                if released:  # SIGTERM: A gave the lease back after committing its step
                    gaps.append(started - min(released))
            key = "sigkill" if how == "SIGKILL" else "sigterm"
            out[f"{key}_finished_before_stop"] = finished_on_a
            out[f"{key}_all_running_s"] = max(resumed) - signalled if resumed else 0.0
            if gaps:
                out[f"{key}_release_to_running_median_s"] = statistics.median(gaps)
                out[f"{key}_release_to_running_max_s"] = max(gaps)
            out[f"{key}_all_complete_s"] = max(t.updated_at for t in tasks) - signalled
    finally:
        await store.close()
    return out


async def processes(url: str, sizes: common.Sizes) -> dict[str, float]:
    """Steps/s with 1, 2 and 4 ``tether worker`` processes on one PostgreSQL store
    (from the journal's timestamps: first step started to last step finished)."""
    store = open_store(url)
    await store.open()
    out: dict[str, float] = {}
    try:
        for n in sizes.workers:
            common.progress(f"{n} worker process(es), {sizes.proc_tasks} tasks")
            procs = [start_worker(url, f"bench-P{n}-{i}", "agent", 32, 10.0) for i in range(n)]
            new = types.NewTask(
                tenant="bench", agent="bench", input=wl.task_input(sizes.proc_steps)
            )
            ids = [(await store.submit_task(new)).id for _ in range(sizes.proc_tasks)]
            while any(
                t.status not in types.FINAL_STATUSES for t in await _tasks(store, ids[-20:])
            ) or any(t.status not in types.FINAL_STATUSES for t in await _tasks(store, ids)):
                await asyncio.sleep(0.2)
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait()
            first, last, steps = float("inf"), 0.0, 0
            for tid in ids:
                journal = await store.load_journal(tid)
                steps += len(journal)
                first = min(first, journal[0].started_at)
                last = max(last, journal[-1].finished_at)
            out[str(n)] = steps / (last - first)
    finally:
        await store.close()
    return out


async def main() -> None:
    args = common.suite_args(__doc__ or "")
    sizes = common.sizes(args.sizes)
    result: dict[str, Any] = {"system": "tether", "backend": args.backend}

    def fresh(name: str) -> tuple[str, Any]:
        if args.backend == "sqlite":
            path = os.path.join(args.workdir, f"tether-{name}.db")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
            return f"sqlite:///{path}", lambda: common.sqlite_payload_bytes(path)
        dsn = common.fresh_pg_database(f"bench_tether_{name}")
        return dsn, lambda: common.postgres_payload_bytes(dsn)

    figures = {
        "per_step": lambda url, measure: per_step(url, measure, sizes),
        "throughput": lambda url, _: throughput(url, sizes),
        "rss": lambda url, _: rss(url, sizes),
        "recovery": lambda url, _: recovery(url, sizes),
        "processes": lambda url, _: processes(url, sizes),
    }
    keys = {"throughput": "steps_per_s", "processes": "processes_steps_per_s"}
    failures: list[str] = []
    for figure, measure_it in figures.items():
        if not common.wanted(args, figure) or (
            figure == "processes" and args.backend != "postgres"
        ):
            continue
        url, measure = fresh(figure)
        try:
            got = await measure_it(url, measure)
        except Exception as exc:  # one figure failing leaves the others standing
            failures.append(f"{figure}: {type(exc).__name__}: {exc}")
            continue
        if figure == "per_step":
            result.update(got)
        else:
            result[keys.get(figure, figure)] = got
    if failures:
        result["error"] = "; ".join(failures)
    common.emit_result(result)


if __name__ == "__main__":
    asyncio.run(main())
