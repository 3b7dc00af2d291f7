"""``tether worker``: a long-running process that claims and runs tasks, and drains on SIGTERM.

A worker always ends. SIGTERM (or SIGINT) drains it: no more claims, in-flight steps
finish up to ``--grace``, what is still running is released (another worker continues
it at once) and the process exits 0, whatever its tools do: a sync tool that never
returns is left in its daemon thread, and a watchdog thread ends the process if the
drain itself overruns ``--grace`` by more than ``EXIT_MARGIN`` seconds. A second signal
ends it at once (exit 130). The guard drains it the same way when its memory passes
``--max-memory`` or every sync tool thread is abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Coroutine
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer

from tether import errors, redact
from tether.cli import StoreOpt, _fail, app, err
from tether.cli.options import check_options
from tether.cli.spec import build_runtime
from tether.execution.guard import parse_size
from tether.execution.settings import ExecutionSettings
from tether.execution.worker import Worker
from tether.observe.logging import configure_logging
from tether.observe.metrics import serve_metrics
from tether.observe.setup import Observability, setup_observability
from tether.runtime import Runtime

T = TypeVar("T")


@app.command()
def worker(
    specs: Annotated[
        list[str], typer.Argument(help="One or more path/to/file.py:name or module:name.")
    ],
    concurrency: Annotated[int, typer.Option(help="Tasks run at once.")] = 8,
    worker_id: Annotated[
        str | None,
        typer.Option(help="Stable id (default: host and the first free slot on this host)."),
    ] = None,
    lease_ttl: Annotated[float, typer.Option(help="Seconds a lease lives without renewal.")] = 10.0,
    heartbeat: Annotated[float | None, typer.Option(help="Seconds between lease renewals.")] = None,
    grace: Annotated[
        float, typer.Option(help="Seconds in-flight steps may finish on SIGTERM.")
    ] = 30.0,
    poll: Annotated[float, typer.Option(help="Seconds between looks for work when idle.")] = 0.25,
    metrics_port: Annotated[int | None, typer.Option(help="Serve /metrics on this port.")] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address /metrics listens on (0.0.0.0 for a remote Prometheus).")
    ] = "127.0.0.1",
    durable_sleep_after: Annotated[
        float, typer.Option(help="Sleeps longer than this many seconds hold no worker slot.")
    ] = 30.0,
    on_stuck: Annotated[
        str,
        typer.Option(help="A stuck step is retried here ('retry') or handed over ('handover')."),
    ] = "retry",
    max_memory: Annotated[
        str | None,
        typer.Option(
            help="Drain and exit 0 when resident memory passes this (512M, 2G), before an "
            "OOM kill; env TETHER_MAX_MEMORY.",
            envvar="TETHER_MAX_MEMORY",
        ),
    ] = None,
    sync_threads: Annotated[
        int, typer.Option(help="Threads for sync tools; all abandoned: stop claiming, drain.")
    ] = 32,
    stuck_after: Annotated[
        float,
        typer.Option(
            help="Seconds a step may run without a first heartbeat before it counts as stuck."
        ),
    ] = 120.0,
    log_json: Annotated[bool, typer.Option("--log-json/--log-text", help="Log format.")] = True,
    store: StoreOpt = None,
) -> None:
    """Claim queued tasks and run them; SIGTERM drains (finish, commit, release, exit 0)."""
    configure_logging("INFO", json=log_json)
    if on_stuck not in ("retry", "handover"):
        raise _fail(
            errors.InvalidInput(f"--on-stuck must be 'retry' or 'handover', not {on_stuck!r}")
        )
    try:
        check_options(concurrency=concurrency, metrics_port=metrics_port)
        if heartbeat is not None and heartbeat <= 0:
            raise errors.InvalidInput(f"--heartbeat must be more than 0 seconds, not {heartbeat}")
        if sync_threads < 1:
            raise errors.InvalidInput("--sync-threads must be at least 1")
        try:
            memory_limit = parse_size(max_memory) if max_memory is not None else None
        except ValueError as exc:
            raise errors.InvalidInput(f"--max-memory: {exc}") from exc
        settings = ExecutionSettings(
            lease_ttl=lease_ttl,
            heartbeat_interval=heartbeat,
            drain_grace=grace,
            poll_interval=poll,
            on_stuck="handover" if on_stuck == "handover" else "retry",
            sync_tool_threads=sync_threads,
            stuck_after=stuck_after,
            max_memory=memory_limit,
            durable_sleep_after=durable_sleep_after,
        )
        runtime = build_runtime(specs, store)
        obs = setup_observability(extra=[runtime.observers])
    except errors.TetherError as exc:
        raise _fail(exc) from exc
    try:
        code, busy = _run_until_drained(
            _serve(runtime, worker_id, concurrency, settings, metrics_port, obs, metrics_host)
        )
    except errors.TetherError as exc:
        raise _fail(exc) from exc
    finally:
        obs.close()
    held = busy + len(_threads_still_running())
    if held:
        # Python would wait for those threads at exit (a sync tool in tether's pool, or in
        # asyncio's default executor where a framework put it): their tasks are released
        # and anything they still write is fenced off, so leave without them.
        _exit_now(code, f"exiting with {held} released call(s) still running in a thread")
    raise typer.Exit(code)


IDLE_THREADS_END_WITHIN = 1.0
"""Seconds an idle thread of the closed loop's default executor gets to end: closing
the loop tells it to, but it may not have woken yet when the process counts."""


def _threads_still_running() -> list[threading.Thread]:
    """Threads other than this one that Python would wait for at exit."""
    deadline = time.monotonic() + IDLE_THREADS_END_WITHIN
    others = [
        t
        for t in threading.enumerate()
        if t is not threading.current_thread() and t.is_alive() and not t.daemon
    ]
    for t in others:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    return [t for t in others if t.is_alive()]


def _run_until_drained(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` without its last step, which waits for every thread of the default
    executor (on 3.11 even when cancelled): a framework's sync tool released mid-call
    (Agents SDK, LangGraph) would hold the exit up for good."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            loop.run_until_complete(_cancel_the_rest())
        finally:
            asyncio.set_event_loop(None)
            loop.close()  # shuts the default executor down without waiting


async def _cancel_the_rest() -> None:
    """What ``asyncio.run`` does before it closes its loop, less the executor wait."""
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


EXIT_MARGIN = 5.0
"""Seconds past ``--grace`` a draining worker may take to release and close before its
watchdog ends the process anyway."""


def _exit_now(code: int, line: str) -> None:
    """Leave at once: threads running abandoned tools are not waited for."""
    err.print(line, highlight=False)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _watchdog(seconds: float, code: int, line: str) -> None:
    """End the process after ``seconds`` unless it has ended by then (a daemon thread,
    so it runs even while the main thread waits for other threads at exit)."""

    def fire() -> None:
        time.sleep(seconds)
        _exit_now(code, line)

    threading.Thread(target=fire, name="tether-exit-watchdog", daemon=True).start()


async def _serve(
    runtime: Runtime,
    worker_id: str | None,
    concurrency: int,
    settings: ExecutionSettings,
    metrics_port: int | None,
    obs: Observability,
    metrics_host: str = "127.0.0.1",
) -> tuple[int, int]:
    """Serve until drained; the exit code and how many tool threads still run.

    ``Runtime.run_worker`` runs the worker; this process adds what belongs to a process:
    ``/metrics``, signals, the exit watchdog and the lines on stderr."""
    metrics = obs.metrics
    if metrics_port is not None:
        try:
            server, _ = serve_metrics(metrics, metrics_port, host=metrics_host)
        except OSError as exc:
            raise errors.InvalidInput(
                f"cannot serve metrics on {metrics_host}:{metrics_port} ({exc.strerror}): "
                "is another process using it? choose another --metrics-port"
            ) from exc
        err.print(f"metrics on http://{metrics_host}:{server.server_port}/metrics", highlight=False)
    loop = asyncio.get_running_loop()
    signals = {"count": 0}
    deadline = settings.drain_grace + EXIT_MARGIN

    def begin_drain(w: Worker, reason: str) -> None:
        w.drain(reason)
        _watchdog(
            deadline,
            1,
            f"worker {w.instance_id}: drain overran --grace {settings.drain_grace}s by "
            f"{EXIT_MARGIN}s; exiting without waiting further (unreleased leases expire)",
        )

    def on_ready(w: Worker) -> None:
        def announce(signum: int) -> None:
            err.print(
                f"worker {w.instance_id}: {signal.Signals(signum).name}, draining "
                f"({len(w.in_flight)} in flight, grace {settings.drain_grace}s)",
                highlight=False,
            )
            if not w.draining:
                begin_drain(w, "signal")

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # A plain handler, not the loop's: it runs even while the loop cannot.
            signals["count"] += 1
            if signals["count"] > 1:
                # Only a raw write here: a lock the interrupted code holds would hang us.
                os.write(2, f"worker {w.instance_id}: second signal, exiting now\n".encode())
                os._exit(130)
            with contextlib.suppress(RuntimeError):  # the loop has closed: leaving already
                loop.call_soon_threadsafe(announce, signum)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        err.print(
            f"worker {w.instance_id} ready: agents {sorted(runtime.workflows)}, concurrency "
            f"{concurrency}, lease ttl {settings.lease_ttl}s, "
            f"store {redact.url(runtime.store_url)}",
            highlight=False,
        )

    def on_guard(w: Worker, reason: str) -> None:
        err.print(
            f"worker {w.instance_id}: {reason.replace('_', ' ')}, draining "
            f"({len(w.in_flight)} in flight, grace {settings.drain_grace}s)",
            highlight=False,
        )
        begin_drain(w, reason)

    w = await runtime.run_worker(
        worker_id=worker_id,
        concurrency=concurrency,
        settings=settings,
        observers=obs.observers,
        metrics=metrics,
        keep_waiting_gauge=metrics_port is not None,
        on_ready=on_ready,
        on_guard=on_guard,
    )
    err.print(f"worker {w.instance_id}: drained, leases released, exiting", highlight=False)
    # Nothing should hold the exit up now; if anything does, leave anyway.
    _watchdog(EXIT_MARGIN, 0, f"worker {w.instance_id}: exit held up by a thread; exiting now")
    return 0, w.threads.busy
