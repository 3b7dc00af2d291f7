"""Runtime: the public entry. A registry of agents and workflows over one store.

The store API is async; ``Runtime`` offers a synchronous face for scripts and the
CLI by running every store call on one private event loop thread (a portal), and
async twins (``asubmit``, ``arun``) for code that already has a loop.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import socket
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from tether import errors, integrations, redact, retry, types
from tether.agent import Agent
from tether.execution import signals, waiting_gauge
from tether.execution.committer import Committer
from tether.execution.context import TaskContext
from tether.execution.guard import Guard
from tether.execution.identity import worker_identity
from tether.execution.runner import FunctionWorkflow, Workflow
from tether.execution.settings import ExecutionSettings
from tether.execution.worker import Worker
from tether.observe import events, tracing
from tether.observe import metrics as obsmetrics
from tether.store import DEFAULT_URL, open_store
from tether.store.base import Signal, Store

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TaskResult:
    """How a task ended."""

    task: types.TaskRecord

    @property
    def id(self) -> str:
        return self.task.id

    @property
    def status(self) -> types.TaskStatus:
        return self.task.status

    @property
    def output(self) -> Any:
        return self.task.output

    @property
    def error(self) -> dict[str, Any] | None:
        error: dict[str, Any] | None = self.task.to_public()["error"]
        return error

    @property
    def ok(self) -> bool:
        return self.task.status == "completed"


def default_store_url() -> str:
    return os.environ.get("TETHER_STORE") or DEFAULT_URL


def default_worker_id(role: str = "run") -> str:
    """Stable across restarts of the same role on the same host, so a restarted
    process takes its own leases back at once."""
    return os.environ.get("TETHER_WORKER_ID") or f"{socket.gethostname()}:{role}"


class _Portal:
    """One event loop on a daemon thread; coroutines are sent to it and awaited."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="tether-portal", daemon=True
        )
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


class Runtime:
    def __init__(
        self,
        store: str | None = None,
        *,
        worker_id: str | None = None,
        settings: ExecutionSettings | None = None,
        observers: Sequence[events.Observer] = (),
        metrics: obsmetrics.Metrics | None = None,
        migrate: bool = True,
    ) -> None:
        """``metrics``: keep these Prometheus metrics for the tasks run here (and time
        this runtime's journal commits); serve them with ``observe.metrics.serve_metrics``."""
        self.store_url = store or default_store_url()
        self.worker_id = worker_id or default_worker_id()
        self.settings = settings or ExecutionSettings()
        self.metrics = metrics
        extra = [obsmetrics.MetricsObserver(metrics)] if metrics is not None else []
        self.observers = events.Observers([*extra, *observers])
        self.workflows: dict[str, Workflow] = {}
        self.specs: dict[str, str] = {}
        self._migrate = migrate
        self._portal: _Portal | None = None
        self._store: Store | None = None
        self._committer: Committer | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"Runtime(store={redact.url(self.store_url)!r}, workflows={sorted(self.workflows)})"

    # ---- registry ------------------------------------------------------------

    def register(self, workflow: Agent | Workflow | object, *, spec: str | None = None) -> None:
        """Make an agent (or a durable function) runnable by its name. An agent written
        with another framework (Pydantic AI, the OpenAI Agents SDK, a compiled LangGraph
        graph) registers as it is, through its integration."""
        adapted = as_workflow(workflow)
        name = adapted.name
        existing = self.workflows.get(name)
        if existing is not None and _source(existing) is not _source(adapted):
            raise errors.InvalidInput(f"a workflow named {name!r} is already registered")
        self.workflows[name] = adapted
        if spec is not None:
            self.specs[name] = spec

    @overload
    def workflow(self, fn: Callable[[TaskContext, str], Awaitable[Any]], /) -> FunctionWorkflow: ...

    @overload
    def workflow(
        self, fn: None = None, /, *, name: str | None = None, retries: retry.Retries | None = None
    ) -> Callable[[Callable[[TaskContext, str], Awaitable[Any]]], FunctionWorkflow]: ...

    def workflow(
        self,
        fn: Callable[[TaskContext, str], Awaitable[Any]] | None = None,
        /,
        *,
        name: str | None = None,
        retries: retry.Retries | None = None,
    ) -> (
        FunctionWorkflow
        | Callable[[Callable[[TaskContext, str], Awaitable[Any]]], FunctionWorkflow]
    ):
        """Register ``async def fn(ctx, input)`` as a durable function."""

        def wrap(f: Callable[[TaskContext, str], Awaitable[Any]]) -> FunctionWorkflow:
            wf = FunctionWorkflow(f, name=name, retries=retries)
            self.register(wf)
            return wf

        return wrap(fn) if fn is not None else wrap

    # ---- plumbing ------------------------------------------------------------

    def _call(self, fn: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
        portal = self._ensure_portal()
        return portal.call(self._with_store(fn))

    async def _acall(self, fn: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
        portal = self._ensure_portal()
        return await portal.acall(self._with_store(fn))

    def _ensure_portal(self) -> _Portal:
        with self._lock:
            if self._closed:
                raise errors.InvalidInput("this Runtime is closed; create a new one")
            if self._portal is None:
                self._portal = _Portal()
                atexit.register(self.close)
            return self._portal

    async def _with_store(self, fn: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
        if self._store is None:
            store = open_store(self.store_url, migrate=self._migrate)
            await store.open()
            self._store = store
        return await fn(self._store)

    def _worker(
        self, store: Store, *, concurrency: int = 1, worker_id: str | None = None
    ) -> Worker:
        if self._committer is None:
            on_commit = self.metrics.observe_commit if self.metrics is not None else None
            self._committer = Committer(store, on_commit_seconds=on_commit)
        return Worker(
            store,
            self.workflows,
            worker_id=worker_id or self.worker_id,
            concurrency=concurrency,
            settings=self.settings,
            observers=self.observers,
            committer=self._committer,
        )

    def close(self) -> None:
        """Close the store and stop the portal thread. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            portal, self._portal = self._portal, None
        if portal is None:
            return
        try:
            portal.call(self._aclose_resources())
        finally:
            portal.stop()

    async def _aclose_resources(self) -> None:
        await self._close_models()
        if self._store is not None:
            await self._store.close()
            self._store = None

    async def _close_models(self) -> None:
        """The one place the registered agents' models are closed."""
        for wf in self.workflows.values():
            model = getattr(wf, "model", None)
            if model is not None:
                await model.aclose()

    # ---- running workers -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def workers(
        self,
        *,
        count: int = 1,
        worker_id: str | None = None,
        concurrency: int = 8,
        settings: ExecutionSettings | None = None,
        observers: events.Observer | None = None,
        metrics: obsmetrics.Metrics | None = None,
    ) -> AsyncIterator[Workers]:
        """The one way store, committer and workers are put together (``tether worker``
        and ``tether serve``'s embedded workers both come here).

        Opens the store, takes ``count`` worker ids (``worker_id``, ``worker_id-2``, ...;
        by default the host's first free slots for this store) and yields the workers,
        not yet serving. On exit every worker drains and releases what it still holds,
        then the agents' models and the store are closed. ``observers``/``metrics``
        default to this runtime's."""
        settings = settings or self.settings
        metrics = metrics if metrics is not None else self.metrics
        observers = observers if observers is not None else self.observers
        store = open_store(self.store_url, migrate=self._migrate)
        await store.open()
        try:
            key = await store.identity()
            with contextlib.ExitStack() as slots:
                ids = [
                    slots.enter_context(worker_identity(_nth_worker_id(worker_id, i), key))
                    for i in range(count)
                ]
                on_commit = metrics.observe_commit if metrics is not None else None
                committer = Committer(store, on_commit_seconds=on_commit)
                group = Workers(
                    store,
                    [
                        Worker(
                            store,
                            self.workflows,
                            worker_id=wid,
                            concurrency=concurrency,
                            settings=settings,
                            observers=observers,
                            committer=committer,
                        )
                        for wid in ids
                    ],
                )
                if metrics is not None:
                    for w in group.workers:
                        metrics.track_worker(w, max_memory=settings.max_memory)
                    metrics.know_task_types(self.workflows)
                try:
                    yield group
                finally:
                    await group.shutdown()
                    await self._close_models()
        finally:
            await store.close()

    async def run_worker(
        self,
        *,
        worker_id: str | None = None,
        concurrency: int = 8,
        settings: ExecutionSettings | None = None,
        observers: events.Observer | None = None,
        metrics: obsmetrics.Metrics | None = None,
        keep_waiting_gauge: bool = False,
        on_ready: Callable[[Worker], None] | None = None,
        on_guard: Callable[[Worker, str], None] | None = None,
    ) -> Worker:
        """Run one worker until it has drained, released what it held and closed; return it.

        Something outside (a signal handler: ``worker.drain()``) or the worker's guard
        (memory past ``settings.max_memory``, every sync tool thread abandoned) drains it.
        ``on_ready(worker)`` runs once it is assembled, before it claims; ``on_guard(worker,
        reason)`` when the guard drained it, before the drain's grace starts.
        ``keep_waiting_gauge``: keep ``tasks_waiting`` fresh from the store (the process
        that serves the metrics does)."""
        settings = settings or self.settings
        metrics = metrics if metrics is not None else self.metrics
        async with self.workers(
            worker_id=worker_id,
            concurrency=concurrency,
            settings=settings,
            observers=observers,
            metrics=metrics,
        ) as group:
            (worker,) = group.workers
            guard = Guard(worker, max_memory=settings.max_memory)
            watching = asyncio.create_task(guard.watch())
            gauge = (
                asyncio.create_task(waiting_gauge.keep(group.store, metrics))
                if keep_waiting_gauge and metrics is not None
                else None
            )
            if on_ready is not None:
                on_ready(worker)
            try:
                await worker.serve()
            finally:
                if guard.reason is not None and on_guard is not None:
                    on_guard(worker, guard.reason)
                watching.cancel()
                if gauge is not None:
                    gauge.cancel()
        return worker

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- tasks ---------------------------------------------------------------

    def submit(
        self,
        agent: str,
        input: str,
        *,
        tenant: str = "default",
        session: str | None = None,
        idempotency_key: str | None = None,
        trace_context: dict[str, str] | None = None,
    ) -> types.TaskRecord:
        """Enqueue a task (and a new session when ``session`` is None); returns at once.

        ``trace_context`` (a W3C ``traceparent`` carrier) makes the task's spans continue
        that trace; by default the caller's active OpenTelemetry span is captured."""
        carrier = _trace_carrier(trace_context)
        return self._call(
            lambda s: self._submit(s, agent, input, tenant, session, idempotency_key, carrier)
        )

    async def asubmit(
        self,
        agent: str,
        input: str,
        *,
        tenant: str = "default",
        session: str | None = None,
        idempotency_key: str | None = None,
        trace_context: dict[str, str] | None = None,
    ) -> types.TaskRecord:
        carrier = _trace_carrier(trace_context)
        return await self._acall(
            lambda s: self._submit(s, agent, input, tenant, session, idempotency_key, carrier)
        )

    async def _submit(
        self,
        store: Store,
        agent: str,
        input: str,
        tenant: str,
        session: str | None,
        idempotency_key: str | None,
        trace_context: dict[str, str] | None = None,
    ) -> types.TaskRecord:
        if agent not in self.workflows:
            raise errors.UnknownAgent(
                f"no agent or workflow named {agent!r} is registered; registered: "
                f"{sorted(self.workflows) or 'none'}"
            )
        if not isinstance(input, str):
            raise errors.InvalidInput("a task's input must be text")
        return await store.submit_task(
            types.NewTask(
                tenant=tenant,
                agent=agent,
                input=input,
                session_id=session,
                spec=self.specs.get(agent),
                idempotency_key=idempotency_key,
                trace_context=trace_context,
            )
        )

    def run(self, task_id: str) -> TaskResult:
        """Run the task to its end in this process, resuming from its journal."""
        return self._call(lambda s: self._run(s, task_id))

    resume = run

    async def arun(self, task_id: str) -> TaskResult:
        return await self._acall(lambda s: self._run(s, task_id))

    async def _run(self, store: Store, task_id: str) -> TaskResult:
        worker = self._worker(store)
        return TaskResult(await worker.run_task(task_id))

    def get_task(self, task_id: str, *, tenant: str | None = None) -> types.TaskRecord:
        return self._call(lambda s: s.get_task(task_id, tenant=tenant))

    def cancel(self, task_id: str, *, tenant: str | None = None) -> types.TaskRecord:
        return self._call(lambda s: s.request_cancel(task_id, tenant=tenant))

    def signal(
        self, task_id: str, name: str, data: Any = None, *, tenant: str | None = None
    ) -> Signal:
        """Send signal ``name`` with JSON ``data`` to a task: a ``wait_for_signal(name)``
        returns it (now, if the task waits for it, on any worker; or later, when it
        gets there). ``NotFound`` for an unknown task, ``Conflict`` for a finished one."""
        sent = self._call(lambda s: signals.send(s, task_id, name, data, tenant=tenant))
        self._count_signal(sent)
        return sent

    def approve(self, task_id: str, *, tenant: str | None = None) -> Signal:
        """Let the tool call the task waits on run (``@tool(requires_approval=True)``)."""
        sent = self._call(lambda s: signals.decide(s, task_id, approved=True, tenant=tenant))
        self._count_signal(sent)
        return sent

    def deny(self, task_id: str, *, reason: str, tenant: str | None = None) -> Signal:
        """Refuse the tool call the task waits on; the model reads ``reason``."""
        sent = self._call(
            lambda s: signals.decide(s, task_id, approved=False, reason=reason, tenant=tenant)
        )
        self._count_signal(sent)
        return sent

    def _count_signal(self, sent: Signal) -> None:
        if self.metrics is not None:
            self.metrics.observe_signal(signals.metric_name(sent.name))

    def run_on_store(self, fn: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
        """Run ``fn(store)`` on the runtime's loop: the operator's door to every read."""
        return self._call(fn)

    def store_call(self, fn: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
        """Deprecated name of ``run_on_store`` (0.2.0); it goes in a later release."""
        warnings.warn(
            "Runtime.store_call is deprecated; call Runtime.run_on_store",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._call(fn)


@dataclass(frozen=True, slots=True)
class Workers:
    """Workers running side by side in one process over one store (``Runtime.workers``)."""

    store: Store
    workers: list[Worker]

    def drain(self, reason: str = "signal") -> None:
        for w in self.workers:
            w.drain(reason)

    async def shutdown(self) -> None:
        """Drain every worker; return once each has released what it still held."""
        await asyncio.gather(*(w.shutdown() for w in self.workers))

    def wake(self) -> None:
        for w in self.workers:
            w.wake()

    @property
    def saturated(self) -> bool:
        return any(w.saturated for w in self.workers)

    @property
    def in_flight(self) -> int:
        return sum(len(w.in_flight) for w in self.workers)


def _nth_worker_id(base: str | None, i: int) -> str | None:
    """The i-th of several workers in one process: ``base``, ``base-2``, ``base-3``..."""
    if base is None:
        return None
    return base if i == 0 else f"{base}-{i + 1}"


def as_workflow(obj: object) -> Workflow:
    """``obj`` as a durable function: tether's own kinds as they are, another framework's
    agent through its integration; anything else is refused, saying what is accepted."""
    if isinstance(obj, Agent | FunctionWorkflow):
        return obj
    adapted = integrations.workflow_for(obj)
    if adapted is not None:
        return adapted
    if callable(obj) and isinstance(getattr(obj, "name", None), str) and hasattr(obj, "retries"):
        return obj  # type: ignore[return-value]  # a Workflow by shape
    raise errors.InvalidInput(
        f"cannot register a {type(obj).__module__}.{type(obj).__qualname__}: register a tether "
        "Agent, a @runtime.workflow function, a Pydantic AI agent with TetherDurability, an "
        "OpenAI Agents SDK agent or a compiled LangGraph graph"
    )


def _source(workflow: Workflow) -> object:
    """What a workflow was made from: an integration's adapter keeps its agent in ``wraps``."""
    return getattr(workflow, "wraps", workflow)


def _trace_carrier(given: dict[str, str] | None) -> dict[str, str] | None:
    """The trace context a submitted task carries: the one given, else the caller's
    active span (captured here, in the caller's thread, before the portal hop)."""
    carrier = given if given is not None else tracing.inject_trace_context()
    return dict(carrier) if carrier else None
