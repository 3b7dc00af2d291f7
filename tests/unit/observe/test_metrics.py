from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from prometheus_client import parser

from tether.observe import events, metrics, process
from tether.observe.events import TaskEvent

# DESIGN.md "Observability (contract: names below)", written out by hand on purpose.
DESIGN_NAMES = {
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
    # issue 13 (DESIGN.md's list gains these with it)
    "tether_oldest_running_step_seconds",
    "tether_sync_tool_threads_abandoned",
    "tether_worker_saturated",
    "tether_worker_draining",
    "tether_worker_memory_limit_bytes",
    # issue 17 (durable waits): to be added to DESIGN.md's list when merged
    "tether_tasks_waiting",
    "tether_task_wait_seconds",
    "tether_signals_received_total",
}
# The standard process collector's series (Linux): process_start_time_seconds shows restarts.
PROCESS_NAMES = {
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(m: metrics.Metrics) -> Samples:
    out: Samples = {}
    for family in parser.text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


def ev(
    name: str,
    task: str = "t1",
    *,
    session: str = "s1",
    agent: str = "research",
    step: int | None = None,
    kind: str | None = None,
    attempt: int | None = None,
    at: float = 1000.0,
    **data: Any,
) -> TaskEvent:
    return TaskEvent(
        name=name,
        tenant="acme",
        session_id=session,
        task_id=task,
        agent=agent,
        step=step,
        step_kind=kind,
        step_name="x" if kind else None,
        attempt=attempt,
        worker="w1",
        data=data,
        at=at,
    )


def err(where: str, cls: str, retryable: bool = True) -> dict[str, Any]:
    return {"type": where, "error_class": cls, "retryable": retryable, "message": "m"}


@pytest.fixture
def m() -> metrics.Metrics:
    return metrics.Metrics()


def test_metric_names_are_designs_list(m: metrics.Metrics) -> None:
    assert set(metrics.METRIC_NAMES) == DESIGN_NAMES
    assert len(metrics.METRIC_NAMES) == len(DESIGN_NAMES)
    scraped = set()
    for family in parser.text_string_to_metric_families(m.render().decode()):
        # the parser drops a counter's "_total" from its family name
        scraped.add(family.name + "_total" if family.type == "counter" else family.name)
    assert scraped == DESIGN_NAMES | PROCESS_NAMES
    assert set(metrics.PROCESS_NAMES) == PROCESS_NAMES
    # after samples exist, still no sample outside those names (no "_created" series)
    m.observe_request("/healthz", 200)
    m.observe_commit(0.1)
    metrics.MetricsObserver(m).on_event(ev(events.TASK_RECOVERED, reason="resume"))
    for family in parser.text_string_to_metric_families(m.render().decode()):
        for sample in family.samples:
            base = sample.name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
            known = DESIGN_NAMES | PROCESS_NAMES
            assert sample.name in known or base in known, sample.name


def test_step_label_caps_at_100() -> None:
    assert metrics.step_label(0) == "0"
    assert metrics.step_label(99) == "99"
    assert metrics.step_label(100) == "100+"
    assert metrics.step_label(12345) == "100+"


def test_a_task_that_completes(m: metrics.Metrics) -> None:
    o = metrics.MetricsObserver(m)
    o.on_event(ev(events.TASK_STARTED, reason="start", run=1, from_step=0, session_age=0.5))
    o.on_event(ev(events.STEP_STARTED, step=0, kind="model", attempt=1))
    o.on_event(
        ev(
            events.STEP_COMPLETED,
            step=0,
            kind="model",
            attempt=1,
            duration=0.1,
            usage={"prompt_tokens": 10, "completion_tokens": 5},
            finish_reason="tool_calls",
            context_tokens=900,
            context_limit=1000,
        )
    )
    o.on_event(ev(events.STEP_STARTED, step=1, kind="tool", attempt=1))
    o.on_event(
        ev(
            events.STEP_RETRYING,
            step=1,
            kind="tool",
            attempt=1,
            error=err("tool", "Timeout"),
            delay=0.1,
        )
    )
    o.on_event(ev(events.STEP_STARTED, step=1, kind="tool", attempt=2))
    o.on_event(ev(events.STEP_COMPLETED, step=1, kind="tool", attempt=2, duration=0.2))

    s = scrape(m)
    assert value(s, "tether_tasks_started_total", task_type="research") == 1
    assert value(s, "tether_task_steps_started_total", task_type="research", step="0") == 1
    assert value(s, "tether_task_steps_started_total", task_type="research", step="1") == 1
    assert value(s, "tether_task_steps_completed_total", task_type="research", step="1") == 1
    assert value(s, "tether_task_retries_total", task_type="research", error_type="Timeout") == 1
    # tried again: not final
    assert value(s, "tether_errors_total", type="tool", error_class="Timeout", final="false") == 1
    assert value(s, "tether_errors_total", type="tool", error_class="Timeout", final="true") == 0
    # the next step's series exist at 0 before it starts
    assert value(s, "tether_task_steps_started_total", task_type="research", step="2") == 0
    assert value(s, "tether_task_steps_completed_total", task_type="research", step="2") == 0
    assert value(s, "tether_session_context_tokens", session_id="s1") == 900
    assert value(s, "tether_session_context_limit_tokens", session_id="s1") == 1000

    o.on_event(ev(events.TASK_COMPLETED, at=1010.0, duration=10.0, session_age=12.5))
    s = scrape(m)
    assert value(s, "tether_tasks_finished_total", task_type="research", outcome="completed") == 1
    assert value(s, "tether_session_duration_seconds_count", end_reason="completed") == 1
    assert value(s, "tether_session_duration_seconds_sum", end_reason="completed") == 12.5
    assert (
        value(s, "tether_session_duration_seconds_bucket", end_reason="completed", le="15.0") == 1
    )
    assert value(s, "tether_session_duration_seconds_bucket", end_reason="completed", le="5.0") == 0
    # the session's context series are gone, not zeroed
    assert series(s, "tether_session_context_tokens") == []
    assert series(s, "tether_session_context_limit_tokens") == []
    assert o._tasks == {}


def test_steps_beyond_100_share_one_label(m: metrics.Metrics) -> None:
    o = metrics.MetricsObserver(m)
    for i in range(98, 105):
        o.on_event(ev(events.STEP_STARTED, step=i, kind="tool", attempt=1))
        o.on_event(ev(events.STEP_COMPLETED, step=i, kind="tool", attempt=1, duration=0.0))
    s = scrape(m)
    steps = sorted(d["step"] for d in series(s, "tether_task_steps_started_total"))
    assert steps == ["100+", "98", "99"]  # and no "101": the cap holds for the next step too
    assert value(s, "tether_task_steps_started_total", task_type="research", step="100+") == 5
    assert value(s, "tether_task_steps_completed_total", task_type="research", step="100+") == 5


def test_resumed_tasks_count_recoveries_not_starts(m: metrics.Metrics) -> None:
    o = metrics.MetricsObserver(m)
    o.on_event(ev(events.TASK_STARTED, reason="recovery", run=2, from_step=3, session_age=5.0))
    o.on_event(ev(events.TASK_RECOVERED, reason="recovery", from_step=3, previous_worker="w0"))
    for i in range(3):
        o.on_event(ev(events.STEP_REPLAYED, step=i, kind="tool"))
    o.on_event(ev("task.started", "t2", session="s2", reason="resume", session_age=1.0))
    o.on_event(ev("task.recovered", "t2", session="s2", reason="resume", from_step=0))
    s = scrape(m)
    assert value(s, "tether_tasks_started_total", task_type="research") is None
    assert value(s, "tether_task_recoveries_total", reason="recovery") == 1
    assert value(s, "tether_task_recoveries_total", reason="resume") == 1
    assert value(s, "tether_task_recoveries_total", reason="handover") == 0
    assert value(s, "tether_steps_replayed_total") == 3


def test_errors_are_counted_once(m: metrics.Metrics) -> None:
    o = metrics.MetricsObserver(m)
    o.on_event(ev(events.TASK_STARTED, reason="start", session_age=0.0))
    o.on_event(ev(events.STEP_RETRYING, step=0, error=err("model", "RateLimited"), delay=1.0))
    o.on_event(ev(events.STEP_RETRYING, step=0, error=err("model", "RateLimited"), delay=2.0))
    o.on_event(ev(events.STEP_FAILED, step=0, error=err("model", "BudgetExhausted", False)))
    # the task fails with the error the step already reported: not counted again
    o.on_event(
        ev(
            events.TASK_FAILED,
            error=err("model", "BudgetExhausted", False),
            step_error=True,
            duration=3.0,
            session_age=3.0,
        )
    )
    # another task fails on its own (a workflow bug): counted
    o.on_event(ev(events.TASK_STARTED, "t2", session="s2", reason="start", session_age=0.0))
    o.on_event(
        ev(
            events.TASK_FAILED,
            "t2",
            session="s2",
            error=err("agent", "WorkflowFailed", False),
            step_error=False,
            duration=1.0,
            session_age=7.0,
        )
    )
    s = scrape(m)

    def errors(where: str, cls: str, final: str) -> float | None:
        return value(s, "tether_errors_total", type=where, error_class=cls, final=final)

    assert errors("model", "RateLimited", "false") == 2
    assert errors("model", "RateLimited", "true") == 0
    assert errors("model", "BudgetExhausted", "true") == 1
    assert errors("agent", "WorkflowFailed", "true") == 1
    assert (
        value(s, "tether_task_retries_total", task_type="research", error_type="RateLimited") == 2
    )
    assert value(s, "tether_tasks_finished_total", task_type="research", outcome="failed") == 2
    assert value(s, "tether_session_duration_seconds_sum", end_reason="failed") == 10.0


def test_abandoned_sessions_and_lost_leases(m: metrics.Metrics) -> None:
    o = metrics.MetricsObserver(m)
    o.on_event(ev(events.TASK_STARTED, reason="start", session_age=100.0, at=1000.0))
    o.on_event(
        ev(
            events.STEP_COMPLETED,
            step=0,
            kind="model",
            attempt=1,
            context_tokens=10,
            context_limit=20,
            at=1001.0,
        )
    )
    o.on_event(ev(events.LEASE_LOST, at=1030.0))
    o.on_event(
        ev(events.TASK_STARTED, "t2", session="s2", reason="start", session_age=0.0, at=1000.0)
    )
    o.on_event(
        ev(
            events.STEP_COMPLETED,
            "t2",
            session="s2",
            step=0,
            kind="model",
            attempt=1,
            context_tokens=10,
            context_limit=20,
            at=1001.0,
        )
    )
    o.on_event(ev(events.TASK_RELEASED, "t2", session="s2", from_step=1, at=1002.0))
    o.on_event(ev(events.TASK_CANCELLED, "t3", session="s3", duration=1.0, session_age=4.0))
    s = scrape(m)
    assert value(s, "tether_leases_lost_total") == 1
    # age at start plus the time since task.started; a drain's handover is not abandoned
    assert value(s, "tether_session_duration_seconds_count", end_reason="abandoned") == 1
    assert value(s, "tether_session_duration_seconds_sum", end_reason="abandoned") == 130.0
    assert value(s, "tether_session_duration_seconds_count", end_reason="handover") == 1
    assert value(s, "tether_session_duration_seconds_sum", end_reason="handover") == 2.0
    assert value(s, "tether_session_duration_seconds_sum", end_reason="cancelled") == 4.0
    assert value(s, "tether_tasks_finished_total", task_type="research", outcome="cancelled") == 1
    assert series(s, "tether_session_context_tokens") == []
    assert series(s, "tether_session_context_limit_tokens") == []


def test_context_gauges_follow_the_latest_model_step_per_session(m: metrics.Metrics) -> None:
    o = metrics.MetricsObserver(m)
    o.on_event(
        ev(
            events.STEP_COMPLETED,
            "a",
            session="sa",
            step=0,
            kind="model",
            context_tokens=100,
            context_limit=8192,
        )
    )
    o.on_event(
        ev(
            events.STEP_COMPLETED,
            "b",
            session="sb",
            step=0,
            kind="model",
            context_tokens=7000,
            context_limit=8192,
        )
    )
    o.on_event(
        ev(
            events.STEP_COMPLETED,
            "a",
            session="sa",
            step=2,
            kind="model",
            context_tokens=300,
            context_limit=8192,
        )
    )
    # a tool step carries no context numbers and leaves the gauge alone
    o.on_event(ev(events.STEP_COMPLETED, "a", session="sa", step=3, kind="tool", duration=0.1))
    s = scrape(m)
    assert value(s, "tether_session_context_tokens", session_id="sa") == 300
    assert value(s, "tether_session_context_tokens", session_id="sb") == 7000
    o.on_event(ev(events.TASK_COMPLETED, "a", session="sa", duration=1.0, session_age=1.0))
    s = scrape(m)
    assert [d["session_id"] for d in series(s, "tether_session_context_tokens")] == ["sb"]


def test_stuck_sessions_gauge(m: metrics.Metrics) -> None:
    o = metrics.MetricsObserver(m)
    o.on_event(ev(events.STEP_STUCK, "a", step=1, silent_for=61.0, heartbeat_timeout=60.0))
    o.on_event(
        ev(events.STEP_STUCK, "b", session="s2", step=4, silent_for=61.0, heartbeat_timeout=60.0)
    )
    o.on_event(ev(events.STEP_STUCK, "a", step=1, silent_for=90.0, heartbeat_timeout=60.0))
    assert value(scrape(m), "tether_sessions_stuck") == 2
    # a stuck step being retried is still stuck: until an attempt gets through
    o.on_event(ev(events.STEP_RETRYING, "a", step=1, error=err("tool", "StepStuck"), delay=1.0))
    o.on_event(ev(events.STEP_STARTED, "a", step=1, kind="tool", attempt=2))
    assert value(scrape(m), "tether_sessions_stuck") == 2
    o.on_event(ev(events.STEP_COMPLETED, "a", step=1, kind="tool", attempt=2, duration=0.1))
    assert value(scrape(m), "tether_sessions_stuck") == 1
    o.on_event(ev(events.LEASE_LOST, "b", session="s2"))
    assert value(scrape(m), "tether_sessions_stuck") == 0
    assert list(o._tasks) == ["a"]  # kept until task "a" ends
    o.on_event(ev(events.STEP_STUCK, "a", step=2, silent_for=61.0, heartbeat_timeout=60.0))
    o.on_event(ev(events.STEP_FAILED, "a", step=2, error=err("tool", "StepStuck")))
    assert value(scrape(m), "tether_sessions_stuck") == 0
    o.on_event(ev(events.STEP_STUCK, "a", step=3, silent_for=61.0, heartbeat_timeout=60.0))
    assert value(scrape(m), "tether_sessions_stuck") == 1
    o.on_event(ev(events.TASK_FAILED, "a", error=err("tool", "StepStuck"), step_error=True))
    assert value(scrape(m), "tether_sessions_stuck") == 0
    assert list(o._tasks) == []


def test_compactions_and_truncations(m: metrics.Metrics) -> None:
    o = metrics.MetricsObserver(m)
    o.on_event(
        ev(
            events.CONTEXT_COMPACTED,
            strategy="summarize",
            messages=6,
            tokens_before=900,
            tokens_after=300,
        )
    )
    o.on_event(
        ev(
            events.CONTEXT_COMPACTED,
            strategy="memory",
            messages=2,
            tokens_before=900,
            tokens_after=700,
        )
    )
    o.on_event(
        ev(
            events.CONTEXT_COMPACTED,
            strategy="summarize",
            messages=6,
            tokens_before=900,
            tokens_after=300,
        )
    )
    o.on_event(ev(events.OUTPUT_TRUNCATED, step=3, max_tokens=256))
    o.on_event(ev(events.CONTEXT_PRESSURE, tokens=850, limit=1000, utilisation=0.85))
    s = scrape(m)
    assert (
        value(s, "tether_context_compactions_total", task_type="research", strategy="summarize")
        == 2
    )
    assert (
        value(s, "tether_context_compactions_total", task_type="research", strategy="memory") == 1
    )
    assert value(s, "tether_output_truncations_total", task_type="research") == 1
    # events that only count leave no per-task state behind
    assert o._tasks == {}


def test_malformed_data_does_not_raise(m: metrics.Metrics) -> None:
    o = metrics.MetricsObserver(m)
    o.on_event(ev(events.STEP_RETRYING, step=0, error="boom"))
    o.on_event(
        ev(events.STEP_COMPLETED, step=0, kind="model", context_tokens="many", context_limit=None)
    )
    o.on_event(ev(events.TASK_FAILED, error=None, step_error=False))
    o.on_event(ev("task.something_new"))
    s = scrape(m)
    # every known error kind exists at 0, and nothing else was counted
    assert {v for (n, _), v in s.items() if n == "tether_errors_total"} == {0.0}
    assert len(series(s, "tether_errors_total")) == 2 * len(metrics.ERROR_KINDS)
    assert series(s, "tether_session_context_tokens") == []


def test_requests_commits_and_memory(m: metrics.Metrics) -> None:
    m.observe_request("/v1/sessions/{id}/tasks", 202)
    m.observe_request("/v1/sessions/{id}/tasks", "202")
    m.observe_request("/v1/tasks/{id}", 404)
    m.observe_commit(0.003)
    m.observe_commit(0.2)
    s = scrape(m)
    assert value(s, "tether_requests_total", route="/v1/sessions/{id}/tasks", code="202") == 2
    assert value(s, "tether_requests_total", route="/v1/tasks/{id}", code="404") == 1
    assert value(s, "tether_journal_commit_seconds_count") == 2
    assert value(s, "tether_journal_commit_seconds_bucket", le="0.005") == 1
    assert value(s, "tether_journal_commit_seconds_bucket", le="0.25") == 2
    memory = value(s, "tether_worker_memory_bytes")
    assert memory is not None and memory > 1024 * 1024
    # the same number /proc gives, within what a scrape itself allocates
    assert abs(memory - process.rss_bytes()) < 64 * 1024 * 1024


def test_serve_metrics_over_http(m: metrics.Metrics) -> None:
    m.observe_request("/healthz", 200)
    server, thread = metrics.serve_metrics(m, 0)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert 'tether_requests_total{code="200",route="/healthz"} 1.0' in body
    assert "tether_worker_memory_bytes" in body


def test_registries_are_independent() -> None:
    a, b = metrics.Metrics(), metrics.Metrics()
    a.observe_request("/healthz", 200)
    assert value(scrape(a), "tether_requests_total", route="/healthz", code="200") == 1
    assert value(scrape(b), "tether_requests_total", route="/healthz", code="200") is None


def test_known_task_types_start_every_series_at_zero(m: metrics.Metrics) -> None:
    m.know_task_types(["research"])
    s = scrape(m)
    assert value(s, "tether_tasks_started_total", task_type="research") == 0
    for outcome in ("completed", "failed", "cancelled"):
        assert value(s, "tether_tasks_finished_total", task_type="research", outcome=outcome) == 0
    assert value(s, "tether_task_steps_started_total", task_type="research", step="0") == 0
    assert value(s, "tether_task_steps_completed_total", task_type="research", step="0") == 0
    assert value(s, "tether_task_retries_total", task_type="research", error_type="Timeout") == 0
    assert (
        value(s, "tether_task_retries_total", task_type="research", error_type="Conflict") is None
    )
    for strategy in ("summarize", "memory"):
        labels = {"task_type": "research", "strategy": strategy}
        assert value(s, "tether_context_compactions_total", **labels) == 0
    assert value(s, "tether_output_truncations_total", task_type="research") == 0
    # without any task type: error kinds, recovery and end reasons
    assert value(s, "tether_errors_total", type="tool", error_class="Timeout", final="true") == 0
    assert value(s, "tether_task_recoveries_total", reason="handover") == 0
    assert value(s, "tether_session_duration_seconds_count", end_reason="handover") == 0


def test_a_step_that_never_completes_reads_zero_not_absent(m: metrics.Metrics) -> None:
    o = metrics.MetricsObserver(m)
    o.on_event(ev(events.STEP_STARTED, step=7, kind="tool", attempt=1))
    o.on_event(ev(events.STEP_FAILED, step=7, kind="tool", attempt=1, error=err("tool", "X")))
    s = scrape(m)
    assert value(s, "tether_task_steps_started_total", task_type="research", step="7") == 1
    assert value(s, "tether_task_steps_completed_total", task_type="research", step="7") == 0


def test_the_oldest_running_step_and_a_step_that_never_beat(m: metrics.Metrics) -> None:
    now = [1000.0]
    o = metrics.MetricsObserver(m, clock=lambda: now[0])
    assert value(scrape(m), "tether_oldest_running_step_seconds") == 0
    o.on_event(ev(events.TASK_STARTED, reason="start", session_age=0.0, at=1000.0))
    o.on_event(ev(events.STEP_STARTED, step=0, kind="tool", attempt=1, at=1000.0))
    o.on_event(ev(events.TASK_STARTED, "t2", session="s2", reason="start", at=1005.0))
    o.on_event(ev(events.STEP_STARTED, "t2", session="s2", step=0, kind="tool", at=1005.0))
    now[0] = 1130.0
    s = scrape(m)
    assert value(s, "tether_oldest_running_step_seconds") == 130.0
    # silent from the start past stuck_after: stuck, though it never heartbeat
    o.on_event(ev(events.STEP_STUCK, step=0, kind="tool", never_beat=True, stuck_after=120.0))
    assert value(scrape(m), "tether_sessions_stuck") == 1
    o.on_event(ev(events.STEP_COMPLETED, step=0, kind="tool", attempt=1, at=1131.0))
    s = scrape(m)
    assert value(s, "tether_sessions_stuck") == 0
    assert value(s, "tether_oldest_running_step_seconds") == 125.0  # t2's step now
    o.on_event(ev(events.STEP_RETRYING, "t2", session="s2", step=0, error=err("tool", "X")))
    assert value(scrape(m), "tether_oldest_running_step_seconds") == 0


def test_a_task_that_waits_and_wakes(m: metrics.Metrics) -> None:
    o = metrics.MetricsObserver(m)
    o.on_event(ev(events.TASK_STARTED, reason="start", run=1, from_step=0, session_age=0.5))
    o.on_event(
        ev(events.STEP_COMPLETED, step=0, kind="model", context_tokens=10, context_limit=100)
    )
    o.on_event(ev(events.TASK_WAITING, step=1, wait_kind="signal", wait_name="go"))
    s = scrape(m)
    # It left this process: its session's series go, but its session did not end.
    assert series(s, "tether_session_context_tokens") == []
    ended = [v for (name, _), v in s.items() if name == "tether_session_duration_seconds_count"]
    assert ended and not any(ended)  # every end reason's series is there, at 0
    assert o._tasks == {}
    o.on_event(ev(events.TASK_STARTED, reason="wake", run=2, from_step=1, session_age=90.0))
    o.on_event(ev(events.TASK_WOKE, wait_kind="signal", wait_name="go", waited=80.0))
    m.set_waiting({"research": 3})
    m.observe_signal("go")
    s = scrape(m)
    assert value(s, "tether_task_wait_seconds_count", kind="signal") == 1
    assert value(s, "tether_task_wait_seconds_sum", kind="signal") == 80.0
    assert value(s, "tether_tasks_started_total", task_type="research") == 1  # not again
    recoveries = [v for (name, _), v in s.items() if name == "tether_task_recoveries_total"]
    assert recoveries and not any(recoveries)  # a wake is no recovery, of any reason
    assert value(s, "tether_tasks_waiting", task_type="research") == 3
    received = s.get(("tether_signals_received_total", frozenset({("name", "go")})))
    assert received == 1
    m.set_waiting({})  # none waits any more: zero, not a stale 3
    assert value(scrape(m), "tether_tasks_waiting", task_type="research") == 0
