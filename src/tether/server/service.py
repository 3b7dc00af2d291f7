"""One ``tether serve`` process: the API under uvicorn plus N embedded workers, one drain.

On the first SIGTERM (or SIGINT, or ``request_drain()`` from another thread) the
service drains, in this order, while the API keeps answering:

1. ``/readyz`` answers 503 and open event streams end with ``stream.reconnect``
   (their clients resume with ``Last-Event-ID``, on another instance behind a load
   balancer); new streams end the same way once they have sent what is stored.
2. The embedded workers stop claiming; in-flight steps finish within the grace,
   commit, and the tasks still unfinished are released so other workers continue
   them at once (``Runtime.workers``, the same assembly ``tether worker`` runs).
3. After ``drain_delay`` at least, uvicorn stops listening, waits for open requests,
   and the process exits 0. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType

import uvicorn

from tether import redact
from tether.execution.runner import Workflow
from tether.execution.worker import Worker
from tether.observe import events
from tether.observe.logging import LogObserver
from tether.observe.metrics import Metrics, MetricsObserver
from tether.runtime import Runtime, Workers
from tether.server import timeouts
from tether.server.app import create_app
from tether.server.config import ServerConfig
from tether.server.state import ServerState
from tether.server.stream_slots import StreamSlots

_log = logging.getLogger("tether.server")


class _Uvicorn(uvicorn.Server):
    """uvicorn whose exit signals start tether's drain instead of stopping at once."""

    def __init__(self, config: uvicorn.Config, on_signal: Callable[[int], None]) -> None:
        super().__init__(config)
        self._on_signal = on_signal

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_signal(sig)


class Service:
    def __init__(
        self,
        config: ServerConfig,
        workflows: Mapping[str, Workflow],
        *,
        specs: Mapping[str, str] | None = None,
        metrics: Metrics | None = None,
        observers: events.Observer | None = None,
        announce: Callable[[str], None] | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        """``metrics`` feed ``/metrics``; ``observers`` hear the embedded workers' task
        events (default: metrics and JSON logs; pass ``setup_observability()``'s).
        ``runtime``: the one whose ``workers`` run here (default: one over
        ``config.store_url`` holding ``workflows``)."""
        self.config = config
        self.workflows = dict(workflows)
        self.specs = dict(specs or {})
        if runtime is None:
            runtime = Runtime(config.store_url, settings=config.execution)
            runtime.workflows.update(self.workflows)
            runtime.specs.update(self.specs)
        self.runtime = runtime
        self.metrics = metrics if metrics is not None else Metrics()
        self.observers: events.Observer = (
            observers
            if observers is not None
            else events.Observers([MetricsObserver(self.metrics), LogObserver()])
        )
        self.url: str | None = None
        self.started = threading.Event()
        """Set once the API listens (``url`` is known) and the workers run."""
        self.workers: list[Worker] = []
        self._announce = announce or (
            lambda line: _log.info("server.status", extra={"detail": line})
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_started: asyncio.Event | None = None
        self._signals = 0

    # ---- control from outside the loop -------------------------------------------

    def request_drain(self) -> None:
        """Start the drain (thread-safe and signal-safe); the service then exits."""
        loop, started = self._loop, self._drain_started
        if loop is not None and started is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed already
                loop.call_soon_threadsafe(started.set)

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals > 1:
            os.write(2, f"tether serve: second {signal.Signals(sig).name}, exiting now\n".encode())
            os._exit(130)
        self.request_drain()

    # ---- the run -------------------------------------------------------------------

    async def run(self, sock: socket.socket | None = None) -> None:
        """Serve until drained. ``sock``: a bound socket to listen on (default: bind
        ``config.host:config.port``)."""
        self._loop = asyncio.get_running_loop()
        self._drain_started = asyncio.Event()
        async with self.runtime.workers(
            count=self.config.workers,
            worker_id=self.config.worker_id,
            concurrency=self.config.concurrency,
            settings=self.config.execution,
            observers=self.observers,
            metrics=self.metrics,
        ) as group:
            self.workers = group.workers
            await self._run(group, sock)

    async def _run(self, group: Workers, sock: socket.socket | None) -> None:
        store = group.store
        state = ServerState(
            store=store,
            agents=frozenset(self.workflows),
            config=self.config,
            specs=self.specs,
            metrics=self.metrics,
            on_submit=group.wake,
            saturated=lambda: group.saturated,
            local_workers=lambda: [w.worker_id for w in self.workers],
            streams=StreamSlots(self.config.sse_max_streams_per_key),
            workflows=self.workflows,
        )
        app = create_app(state)
        uv_config = uvicorn.Config(
            app,
            host=self.config.host,
            port=self.config.port,
            lifespan="off",
            log_config=None,
            access_log=False,
            http=timeouts.protocol(self.config.header_timeout),
            timeout_graceful_shutdown=int(max(1, self.config.shutdown_timeout)),
        )
        server = _Uvicorn(uv_config, self._on_signal)
        if sock is None:
            sock = uv_config.bind_socket()
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
        jobs = [asyncio.create_task(w.serve()) for w in self.workers]
        for job in jobs:
            job.add_done_callback(_report_crash)
        assert self._drain_started is not None
        drain_started = self._drain_started

        async def drain_then_stop() -> None:
            await drain_started.wait()
            began = time.monotonic()
            self._announce(
                f"draining: readyz 503, {group.in_flight} task(s) "
                f"in flight, grace {self.config.execution.drain_grace}s"
            )
            state.lifecycle.begin_drain()
            await _drain(group, jobs)
            rest = self.config.drain_delay - (time.monotonic() - began)
            if rest > 0:
                await asyncio.sleep(rest)
            server.should_exit = True

        stopper = asyncio.create_task(drain_then_stop())
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        watcher = asyncio.create_task(self._mark_started(server))
        try:
            await serving
        finally:
            watcher.cancel()
            if not stopper.done():
                # uvicorn stopped on its own (startup failed): still drain the workers
                drain_started.set()
                state.lifecycle.begin_drain()
                await _drain(group, jobs)
                stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper
            sock.close()
        self._announce("drained: leases released, exiting")

    async def _mark_started(self, server: uvicorn.Server) -> None:
        while not server.started:
            await asyncio.sleep(0.01)
        self._announce(
            f"listening on {self.url}: agents {sorted(self.workflows)}, "
            f"{len(self.workers)} embedded worker(s), store {redact.url(self.config.store_url)}"
        )
        self.started.set()


async def _drain(group: Workers, jobs: list[asyncio.Task[None]]) -> None:
    group.drain()
    await group.shutdown()
    await asyncio.gather(*jobs, return_exceptions=True)


def _report_crash(job: asyncio.Task[None]) -> None:
    if not job.cancelled() and job.exception() is not None:
        _log.error("server.worker_crashed", extra={"error": repr(job.exception())})
