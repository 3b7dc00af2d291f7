"""Prometheus metrics: every metric DESIGN.md names, declared once, fed from task events.

``Metrics`` owns its own ``CollectorRegistry`` (a process normally has one; tests make
many). ``MetricsObserver`` turns the execution layer's ``TaskEvent`` stream into those
metrics; the HTTP service calls ``Metrics.observe_request`` and the store's group
commit ``Metrics.observe_commit``.

Mapping from events (``agent`` is the ``task_type`` label):

- ``step.started`` with attempt 1 → ``task_steps_started_total{task_type, step}``;
  ``step.completed`` → ``task_steps_completed_total{task_type, step}``. ``step`` is the
  step index as a string, ``"100+"`` from index 100 on, so the label set stays bounded.
  A step's ``completed`` series is set to 0 when it starts, and the next index's two
  series when a step completes, so a step that never completes reads 0 (not absent)
  and a first start is an increase ``rate()`` sees.
- ``task.started`` with reason ``start`` → ``tasks_started_total``; ``task.recovered``
  → ``task_recoveries_total{reason}`` (``recovery`` after a lease expired, ``handover``
  from a draining or stuck worker, ``resume`` by the same worker id after a restart);
  ``step.replayed`` → ``steps_replayed_total``.
- ``task.completed|failed|cancelled`` → ``tasks_finished_total{outcome}`` and
  ``session_duration_seconds{end_reason}`` observing the event's ``session_age``;
  ``lease.lost`` observes it with ``end_reason="abandoned"``, ``task.released`` (a
  drain or a stuck step handing the task over) with ``end_reason="handover"`` (the
  session's age then is its age at ``task.started`` plus the time since).
- ``step.retrying`` → ``task_retries_total{error_type=error_class}``; every
  ``step.retrying`` error (``final="false"``: tried again) and ``step.failed`` error
  (``final="true"``), and a ``task.failed`` error that no ``step.failed`` reported
  already (``step_error`` false, ``final="true"``) → ``errors_total{type, error_class, final}``.
- ``know_task_types`` (at registration) sets every series a task type will have at 0
  (outcomes, retryable error classes, strategies, step 0), and the error classes,
  recovery reasons and end reasons exist at 0 from the start: the first event of a
  kind is an increase, not a new series ``increase()`` cannot see.
- a model ``step.completed`` sets ``session_context_tokens`` and
  ``session_context_limit_tokens{session_id}``; the task's end, release or lost lease
  removes those series (absent, not zero: only running sessions are exported).
- ``sessions_stuck`` counts running tasks with a step declared stuck (``step.stuck``)
  that has not got through since: the task stays counted while that step is retried,
  until a step completes or fails for good, or the task ends, is released or lost.
  A step that runs past ``stuck_after`` without a first heartbeat is reported by a
  ``step.stuck`` event too (``never_beat``).
- ``oldest_running_step_seconds``: the age of the longest-running step attempt here.
- ``worker_memory_bytes`` is read from the process when scraped; ``track_worker`` adds
  the worker's ``worker_memory_limit_bytes`` (``--max-memory``, 0: none),
  ``sync_tool_threads_abandoned``, ``worker_saturated`` (1: claims nothing, every sync
  tool thread abandoned) and ``worker_draining{reason}``.
- The standard process collector adds ``process_start_time_seconds`` (a restart shows
  as a change) and the other ``process_*`` series.
- ``worker_memory_bytes`` is read from the process when scraped.
- ``tasks_waiting{task_type}`` is read from the store (``set_waiting``, refreshed by
  ``execution.waiting_gauge``): waiting tasks belong to no process. ``task.woke``
  observes ``task_wait_seconds{kind}`` (kind ``signal`` or ``sleep``) with how long
  the task waited; ``task.waiting`` forgets the task here like a release, without
  ending its session. ``signals_received_total{name}`` counts signals this process
  accepted (``observe_signal``; approvals as ``name="approval"``).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import prometheus_client
from prometheus_client import exposition
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tether import errors as tether_errors
from tether import types
from tether.observe import events, process

PREFIX = "tether_"

# The exposed metric names, exactly DESIGN.md's "Observability" list (a contract).
METRIC_NAMES: tuple[str, ...] = (
    "tether_task_steps_started_total",
    "tether_task_steps_completed_total",
    "tether_tasks_started_total",
    "tether_tasks_finished_total",
    "tether_task_retries_total",
    "tether_errors_total",
    "tether_requests_total",
    "tether_session_context_tokens",
    "tether_session_context_limit_tokens",
    "tether_context_compactions_total",
    "tether_output_truncations_total",
    "tether_prompt_truncations_total",
    "tether_session_duration_seconds",
    "tether_sessions_stuck",
    "tether_steps_replayed_total",
    "tether_task_recoveries_total",
    "tether_leases_lost_total",
    "tether_journal_commit_seconds",
    "tether_worker_memory_bytes",
    # issue 13: workers that never stall silently (to add to DESIGN.md's list)
    "tether_oldest_running_step_seconds",
    "tether_sync_tool_threads_abandoned",
    "tether_worker_saturated",
    "tether_worker_draining",
    "tether_worker_memory_limit_bytes",
    "tether_tasks_waiting",
    "tether_task_wait_seconds",
    "tether_signals_received_total",
)

# What the standard process collector adds (no prefix: the names every exporter uses).
PROCESS_NAMES: tuple[str, ...] = (
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
)

OUTCOMES = ("completed", "failed", "cancelled")
RECOVERY_REASONS = ("recovery", "handover", "resume")
END_REASONS = (*OUTCOMES, "abandoned", "handover")
STRATEGIES = ("summarize", "memory")
DRAIN_REASONS = ("signal", "memory_limit", "threads_exhausted")


def _error_kinds() -> list[tuple[str, str, bool]]:
    """``(type, error_class, retryable)`` of every concrete tether error."""
    kinds: dict[tuple[str, str], bool] = {}
    for cls in tether_errors.ERROR_TYPES.values():
        if cls.__subclasses__() or cls.__name__.startswith("_"):
            continue
        err = cls("x")
        key = (err.where, err.error_class)
        kinds[key] = kinds.get(key, False) or err.retryable
    return [(where, cls, retryable) for (where, cls), retryable in sorted(kinds.items())]


ERROR_KINDS = _error_kinds()


class WorkerState(Protocol):
    """What the metrics read from a worker at scrape time."""

    @property
    def abandoned_threads(self) -> int: ...

    @property
    def saturated(self) -> bool: ...

    @property
    def drain_reason(self) -> str | None: ...


STEP_CAP = 100
STEP_CAPPED = f"{STEP_CAP}+"

# Sessions live seconds to days.
SESSION_BUCKETS = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    3 * 3600.0,
    6 * 3600.0,
    12 * 3600.0,
    86400.0,
    3 * 86400.0,
    7 * 86400.0,
    math.inf,
)
# A journal commit is an fsync or a network round trip: sub-millisecond to seconds.
COMMIT_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    math.inf,
)


def step_label(index: int) -> str:
    """The ``step`` label for a step index: the index, or ``"100+"`` from 100 on."""
    return STEP_CAPPED if index >= STEP_CAP else str(index)


class Metrics:
    """Every tether metric, registered in one registry of its own."""

    def __init__(self, registry: prometheus_client.CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else prometheus_client.CollectorRegistry()
        r = self.registry
        counter, gauge = prometheus_client.Counter, prometheus_client.Gauge
        hist = prometheus_client.Histogram
        self.task_steps_started = counter(
            "tether_task_steps_started",
            "Steps started (attempt 1 only), by step index.",
            ["task_type", "step"],
            registry=r,
        )
        self.task_steps_completed = counter(
            "tether_task_steps_completed",
            "Steps completed, by step index.",
            ["task_type", "step"],
            registry=r,
        )
        self.tasks_started = counter(
            "tether_tasks_started",
            "Tasks started from the beginning (not resumed).",
            ["task_type"],
            registry=r,
        )
        self.tasks_finished = counter(
            "tether_tasks_finished",
            "Tasks that ended, by outcome (completed, failed, cancelled).",
            ["task_type", "outcome"],
            registry=r,
        )
        self.task_retries = counter(
            "tether_task_retries",
            "Step retries, by the error_class that caused them.",
            ["task_type", "error_type"],
            registry=r,
        )
        self.errors = counter(
            "tether_errors",
            "Errors, by where they happened (type) and error_class; final=false: the "
            "step was tried again, final=true: it failed for good.",
            ["type", "error_class", "final"],
            registry=r,
        )
        self.requests = counter(
            "tether_requests",
            "HTTP requests served, by route template and status code.",
            ["route", "code"],
            registry=r,
        )
        self.session_context_tokens = gauge(
            "tether_session_context_tokens",
            "Context tokens of a session with a running task.",
            ["session_id"],
            registry=r,
        )
        self.session_context_limit_tokens = gauge(
            "tether_session_context_limit_tokens",
            "Context limit in tokens of a session with a running task.",
            ["session_id"],
            registry=r,
        )
        self.context_compactions = counter(
            "tether_context_compactions",
            "Context compactions, by strategy.",
            ["task_type", "strategy"],
            registry=r,
        )
        self.output_truncations = counter(
            "tether_output_truncations",
            "Model answers cut off by their token limit.",
            ["task_type"],
            registry=r,
        )
        self.prompt_truncations = counter(
            "tether_prompt_truncations",
            "Model requests whose prompt the server cut silently (reported far fewer "
            "prompt tokens than counted).",
            ["task_type"],
            registry=r,
        )
        self.session_duration = hist(
            "tether_session_duration_seconds",
            "Session age when a task ended, by how (abandoned: lease lost or released).",
            ["end_reason"],
            buckets=SESSION_BUCKETS,
            registry=r,
        )
        self.sessions_stuck = gauge(
            "tether_sessions_stuck", "Tasks whose running step stopped heartbeating.", registry=r
        )
        self.steps_replayed = counter(
            "tether_steps_replayed", "Steps answered from the journal on resume.", registry=r
        )
        self.task_recoveries = counter(
            "tether_task_recoveries",
            "Tasks resumed from their journal, by reason (recovery, handover, resume).",
            ["reason"],
            registry=r,
        )
        self.leases_lost = counter(
            "tether_leases_lost", "Task leases this worker lost to another.", registry=r
        )
        self.journal_commit = hist(
            "tether_journal_commit_seconds",
            "Time to commit a batch of steps to the journal.",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.worker_memory = gauge(
            "tether_worker_memory_bytes",
            "Resident memory of this process, read at scrape time.",
            registry=r,
        )
        self.worker_memory.set_function(process.rss_bytes)
        self.oldest_running_step = gauge(
            "tether_oldest_running_step_seconds",
            "Age of the longest-running step attempt in this process (0: none running).",
            registry=r,
        )
        self.sync_threads_abandoned = gauge(
            "tether_sync_tool_threads_abandoned",
            "Sync tool threads still running a call that was timed out or released.",
            registry=r,
        )
        self.worker_saturated = gauge(
            "tether_worker_saturated",
            "1 while a worker claims nothing because every sync tool thread is abandoned.",
            registry=r,
        )
        self.worker_draining = gauge(
            "tether_worker_draining",
            "1 while a worker drains, by reason (signal, memory_limit, threads_exhausted).",
            ["reason"],
            registry=r,
        )
        self.worker_memory_limit = gauge(
            "tether_worker_memory_limit_bytes",
            "The worker's --max-memory (0: no limit).",
            registry=r,
        )
        self._workers: list[WorkerState] = []
        self.sync_threads_abandoned.set_function(
            lambda: float(sum(w.abandoned_threads for w in self._workers))
        )
        self.worker_saturated.set_function(lambda: float(any(w.saturated for w in self._workers)))
        for reason in DRAIN_REASONS:
            self.worker_draining.labels(reason=reason).set_function(self._draining_for(reason))
        prometheus_client.ProcessCollector(registry=r)
        for reason in RECOVERY_REASONS:
            self.task_recoveries.labels(reason=reason)
        for end_reason in END_REASONS:
            self.session_duration.labels(end_reason=end_reason)
        for where, cls, _ in ERROR_KINDS:
            for final in ("true", "false"):
                self.errors.labels(type=where, error_class=cls, final=final)
        self.tasks_waiting = gauge(
            "tether_tasks_waiting",
            "Tasks waiting for a signal or their time, holding no lease (from the store).",
            ["task_type"],
            registry=r,
        )
        self.task_wait = hist(
            "tether_task_wait_seconds",
            "How long a task waited before it woke, by what it waited for.",
            ["kind"],
            buckets=SESSION_BUCKETS,
            registry=r,
        )
        self.signals_received = counter(
            "tether_signals_received",
            "Signals accepted for tasks, by signal name.",
            ["name"],
            registry=r,
        )
        self._waiting_types: set[str] = set()
        # What is scraped: the same metrics without prometheus_client's "_created"
        # series, which would add names outside DESIGN.md's list and that Prometheus
        # ignores in the text format anyway.
        self.exposed = prometheus_client.CollectorRegistry(auto_describe=False)
        self.exposed.register(_WithoutCreated(self.registry))

    def _draining_for(self, reason: str) -> Callable[[], float]:
        return lambda: float(any(w.drain_reason == reason for w in self._workers))

    def track_worker(self, worker: WorkerState, *, max_memory: int | None = None) -> None:
        """Export ``worker``'s threads, saturation and drain reason, and its memory limit."""
        self._workers.append(worker)
        if max_memory is not None:
            self.worker_memory_limit.set(max_memory)

    def know_task_types(self, task_types: Iterable[str]) -> None:
        """Create every series these task types will have, at 0 (see the module doc)."""
        retryable = sorted({cls for _, cls, r in ERROR_KINDS if r})
        for t in task_types:
            self.tasks_started.labels(task_type=t)
            for outcome in OUTCOMES:
                self.tasks_finished.labels(task_type=t, outcome=outcome)
            for cls in retryable:
                self.task_retries.labels(task_type=t, error_type=cls)
            for strategy in STRATEGIES:
                self.context_compactions.labels(task_type=t, strategy=strategy)
            self.output_truncations.labels(task_type=t)
            self.task_steps_started.labels(task_type=t, step="0")
            self.task_steps_completed.labels(task_type=t, step="0")

    def observe_request(self, route: str, code: int | str) -> None:
        """Count one HTTP request; ``route`` is the route template, never the raw path."""
        self.requests.labels(route=route, code=str(code)).inc()

    def observe_signal(self, name: str) -> None:
        """Count one signal accepted for a task."""
        self.signals_received.labels(name=name).inc()

    def set_waiting(self, counts: dict[str, int]) -> None:
        """Set ``tasks_waiting`` from the store's count by task type (0 for types seen before)."""
        for task_type in self._waiting_types - set(counts):
            self.tasks_waiting.labels(task_type=task_type).set(0)
        for task_type, n in counts.items():
            self.tasks_waiting.labels(task_type=task_type).set(n)
        self._waiting_types |= set(counts)

    def observe_commit(self, seconds: float) -> None:
        """Record how long one journal commit took."""
        self.journal_commit.observe(seconds)

    def render(self) -> bytes:
        """The metrics in the Prometheus text exposition format."""
        return exposition.generate_latest(self.exposed)


def serve_metrics(
    metrics: Metrics, port: int, host: str = "127.0.0.1"
) -> tuple[Any, threading.Thread]:
    """Serve ``metrics`` over HTTP on ``host:port`` (``/metrics``) from a daemon thread.

    Returns prometheus_client's ``(server, thread)``; ``server.server_port`` is the
    bound port (useful with ``port=0``) and ``server.shutdown()`` stops it.
    """
    server, thread = prometheus_client.start_http_server(port, addr=host, registry=metrics.exposed)
    return server, thread


class _WithoutCreated(Collector):
    """A registry's metrics minus every ``*_created`` sample."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


@dataclass(slots=True)
class _Running:
    """What the observer remembers about a task running in this process."""

    session_id: str
    started_at: float | None = None
    session_age_at_start: float | None = None
    stuck: bool = False
    context: bool = False
    step_since: float | None = None
    """When the step attempt running now started (None: between steps)."""


# Events after which a stuck task is no longer stuck (its end drops it altogether).
_UNSTICK = frozenset({events.STEP_COMPLETED, events.STEP_FAILED})


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _error(data: dict[str, Any]) -> tuple[str, str] | None:
    err = data.get("error")
    if not isinstance(err, dict):
        return None
    return str(err.get("type") or "unknown"), str(err.get("error_class") or "Unknown")


@dataclass(slots=True)
class MetricsObserver:
    """An ``Observer`` that keeps ``metrics`` up to date from task events."""

    metrics: Metrics
    _tasks: dict[str, _Running] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = field(default=types.now)
    """Wall-clock seconds, as events' ``at``; for the oldest step's age."""

    def __post_init__(self) -> None:
        self.metrics.oldest_running_step.set_function(self.oldest_step_age)

    def oldest_step_age(self) -> float:
        """Seconds the longest-running step attempt here has run (0 when none runs)."""
        now = self.clock()
        with self._lock:
            since = [t.step_since for t in self._tasks.values() if t.step_since is not None]
        return max(0.0, now - min(since)) if since else 0.0

    def on_event(self, event: events.TaskEvent) -> None:
        with self._lock:
            self._handle(event)

    def _task(self, event: events.TaskEvent) -> _Running:
        running = self._tasks.get(event.task_id)
        if running is None:
            running = self._tasks[event.task_id] = _Running(session_id=event.session_id)
        return running

    def _handle(self, event: events.TaskEvent) -> None:
        # State is kept only for tasks that started here (or got stuck or set context
        # here), and dropped when they end, so a long-lived process does not grow.
        m, name, data = self.metrics, event.name, event.data
        running = self._tasks.get(event.task_id)
        if running is not None and running.stuck and name in _UNSTICK:
            running.stuck = False
            self._set_stuck()

        if name == events.TASK_STARTED:
            running = self._task(event)
            running.started_at = event.at
            running.session_age_at_start = _number(data.get("session_age"))
            if data.get("reason", "start") == "start":
                m.tasks_started.labels(task_type=event.agent).inc()
        elif name == events.TASK_RECOVERED:
            m.task_recoveries.labels(reason=str(data.get("reason") or "recovery")).inc()
        elif name == events.STEP_STARTED:
            self._task(event).step_since = event.at
            if event.step is not None and event.attempt in (None, 1):
                step = step_label(event.step)
                m.task_steps_completed.labels(task_type=event.agent, step=step)
                m.task_steps_started.labels(task_type=event.agent, step=step).inc()
        elif name == events.STEP_COMPLETED:
            if running is not None:
                running.step_since = None
            if event.step is not None:
                step = step_label(event.step)
                m.task_steps_completed.labels(task_type=event.agent, step=step).inc()
                following = step_label(event.step + 1)
                m.task_steps_started.labels(task_type=event.agent, step=following)
                m.task_steps_completed.labels(task_type=event.agent, step=following)
            self._set_context(event)
        elif name == events.STEP_REPLAYED:
            m.steps_replayed.inc()
        elif name == events.STEP_RETRYING:
            if running is not None:
                running.step_since = None
            err = _error(data)
            if err is not None:
                m.task_retries.labels(task_type=event.agent, error_type=err[1]).inc()
                m.errors.labels(type=err[0], error_class=err[1], final="false").inc()
        elif name == events.STEP_FAILED:
            if running is not None:
                running.step_since = None
            err = _error(data)
            if err is not None:
                m.errors.labels(type=err[0], error_class=err[1], final="true").inc()
        elif name == events.STEP_STUCK:
            self._task(event).stuck = True
            self._set_stuck()
        elif name == events.CONTEXT_COMPACTED:
            strategy = str(data.get("strategy") or "unknown")
            m.context_compactions.labels(task_type=event.agent, strategy=strategy).inc()
        elif name == events.OUTPUT_TRUNCATED:
            m.output_truncations.labels(task_type=event.agent).inc()
        elif name == events.PROMPT_TRUNCATED:
            m.prompt_truncations.labels(task_type=event.agent).inc()
        elif name in (events.TASK_COMPLETED, events.TASK_FAILED, events.TASK_CANCELLED):
            outcome = name.removeprefix("task.")
            m.tasks_finished.labels(task_type=event.agent, outcome=outcome).inc()
            if name == events.TASK_FAILED and not data.get("step_error", False):
                err = _error(data)
                if err is not None:
                    m.errors.labels(type=err[0], error_class=err[1], final="true").inc()
            self._end(event, outcome)
        elif name == events.TASK_RELEASED:
            self._end(event, "handover")
            self._end(event, "abandoned")
        elif name == events.TASK_WAITING:
            self._end(event, None)
        elif name == events.TASK_WOKE:
            waited = _number(data.get("waited"))
            if waited is not None:
                kind = str(data.get("wait_kind") or "signal")
                m.task_wait.labels(kind=kind).observe(max(0.0, waited))
        elif name == events.LEASE_LOST:
            m.leases_lost.inc()
            self._end(event, "abandoned")

    def _set_context(self, event: events.TaskEvent) -> None:
        tokens = _number(event.data.get("context_tokens"))
        limit = _number(event.data.get("context_limit"))
        if tokens is None or limit is None:
            return
        self.metrics.session_context_tokens.labels(session_id=event.session_id).set(tokens)
        self.metrics.session_context_limit_tokens.labels(session_id=event.session_id).set(limit)
        self._task(event).context = True

    def _set_stuck(self) -> None:
        self.metrics.sessions_stuck.set(sum(1 for t in self._tasks.values() if t.stuck))

    def _end(self, event: events.TaskEvent, end_reason: str | None) -> None:
        """The task left this process: its series go; ``end_reason`` None when its
        session goes on (it waits) and no session duration is observed."""
        running = self._tasks.pop(event.task_id, None)
        if running is not None and running.stuck:
            self._set_stuck()
        age = _number(event.data.get("session_age"))
        if age is None and running is not None and running.session_age_at_start is not None:
            started_at = running.started_at if running.started_at is not None else event.at
            age = running.session_age_at_start + max(0.0, event.at - started_at)
        if age is not None and end_reason is not None:
            self.metrics.session_duration.labels(end_reason=end_reason).observe(age)
        if running is not None and running.context:
            gauges = (
                self.metrics.session_context_tokens,
                self.metrics.session_context_limit_tokens,
            )
            for gauge in gauges:
                # prometheus_client before 0.21 raises KeyError for an absent series.
                with contextlib.suppress(KeyError):
                    gauge.remove(running.session_id)
