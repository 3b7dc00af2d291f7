"""``tether worker``: a long-running process that claims and runs tasks, and drains on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Annotated

import typer

from tether import errors, redact
from tether.cli import StoreOpt, _fail, app, err
from tether.cli.options import check_options
from tether.cli.spec import build_runtime
from tether.execution.committer import Committer
from tether.execution.identity import store_key, worker_identity
from tether.execution.settings import ExecutionSettings
from tether.execution.worker import Worker
from tether.observe.logging import configure_logging
from tether.observe.metrics import serve_metrics
from tether.observe.setup import Observability, setup_observability
from tether.runtime import Runtime
from tether.store import open_store


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
    on_stuck: Annotated[
        str,
        typer.Option(help="A stuck step is retried here ('retry') or handed over ('handover')."),
    ] = "retry",
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
        settings = ExecutionSettings(
            lease_ttl=lease_ttl,
            heartbeat_interval=heartbeat,
            drain_grace=grace,
            poll_interval=poll,
            on_stuck="handover" if on_stuck == "handover" else "retry",
        )
        runtime = build_runtime(specs, store)
        obs = setup_observability(extra=[runtime.observers])
    except errors.TetherError as exc:
        raise _fail(exc) from exc
    try:
        key = asyncio.run(store_key(runtime.store_url))
    except errors.TetherError as exc:
        obs.close()
        raise _fail(exc) from exc
    with worker_identity(worker_id, key) as wid:
        try:
            code = asyncio.run(
                _serve(runtime, wid, concurrency, settings, metrics_port, obs, metrics_host)
            )
        except errors.TetherError as exc:
            raise _fail(exc) from exc
        finally:
            obs.close()
    raise typer.Exit(code)


async def _serve(
    runtime: Runtime,
    worker_id: str,
    concurrency: int,
    settings: ExecutionSettings,
    metrics_port: int | None,
    obs: Observability,
    metrics_host: str = "127.0.0.1",
) -> int:
    metrics, observers = obs.metrics, obs.observers
    if metrics_port is not None:
        try:
            server, _ = serve_metrics(metrics, metrics_port, host=metrics_host)
        except OSError as exc:
            raise errors.InvalidInput(
                f"cannot serve metrics on {metrics_host}:{metrics_port} ({exc.strerror}): "
                "is another process using it? choose another --metrics-port"
            ) from exc
        err.print(f"metrics on http://{metrics_host}:{server.server_port}/metrics", highlight=False)
    store = open_store(runtime.store_url)
    await store.open()
    w = Worker(
        store,
        runtime.workflows,
        worker_id=worker_id,
        concurrency=concurrency,
        settings=settings,
        observers=observers,
        committer=Committer(store, on_commit_seconds=metrics.observe_commit),
    )
    loop = asyncio.get_running_loop()
    signals = {"count": 0}

    def on_signal(signum: int) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            err.print(f"worker {w.owner}: second signal, exiting now", highlight=False)
            sys.stderr.flush()
            os._exit(130)
        err.print(
            f"worker {w.owner}: {signal.Signals(signum).name}, draining "
            f"({len(w.in_flight)} in flight, grace {settings.drain_grace}s)",
            highlight=False,
        )
        w.drain()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    err.print(
        f"worker {w.owner} ready: agents {sorted(runtime.workflows)}, concurrency {concurrency}, "
        f"lease ttl {settings.lease_ttl}s, store {redact.url(runtime.store_url)}",
        highlight=False,
    )
    try:
        await w.serve()
    finally:
        await w.shutdown()
        await _close_models(runtime)
        await store.close()
    err.print(f"worker {w.owner}: drained, leases released, exiting", highlight=False)
    await _leave_stuck_threads(loop)
    return 0


async def _close_models(runtime: Runtime) -> None:
    for workflow in runtime.workflows.values():
        model = getattr(workflow, "model", None)
        if model is not None:
            await model.aclose()


async def _leave_stuck_threads(loop: asyncio.AbstractEventLoop) -> None:
    """A sync tool released past the grace period may still run in its thread, which
    Python would wait for at exit. Its lease is released and its result would be fenced
    off, so the process exits without waiting for it."""
    try:
        await asyncio.wait_for(loop.shutdown_default_executor(), timeout=1.0)
    except TimeoutError:
        err.print("exiting with a released tool still running in a thread", highlight=False)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
