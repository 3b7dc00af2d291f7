"""Traces end to end: GenAI spans from a real run, continuing the submitter's trace.

In process, an SDK ``InMemorySpanExporter`` collects the spans of ``Runtime.run``;
across processes, ``tether worker`` exports with the exporter the ``OTEL_*``
variables choose (console here) and continues the trace the submitter stored with
the task.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cli_agents
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tether import Agent, RetryPolicy, Runtime, ScriptedModel, ToolContext, errors, tool, types
from tether.observe import metrics
from tether.observe.tracing import TracingObserver

HERE = Path(__file__).resolve().parent
ECHO = f"{HERE / 'cli_agents.py'}:echo"
PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


@tool
def lookup(key: str, ctx: ToolContext) -> str:
    """Look a key up; the first attempt fails, retryably."""
    if ctx.attempt == 1:
        raise errors.ToolRetryable(f"lookup {key}: busy, try again")
    return f"value of {key}"


def make_agent() -> Agent:
    return Agent(
        "tracer",
        ScriptedModel([ScriptedModel.call("lookup", key="k"), "found it"]),
        tools=[lookup],
        tool_retry=RetryPolicy(initial=0.001, max_delay=0.002),
    )


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[Runtime, InMemorySpanExporter, TracerProvider]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    runtime = Runtime(
        store=f"sqlite:///{tmp_path / 't.db'}",
        observers=[TracingObserver(provider)],
        worker_id="trace-test:run",
    )
    runtime.register(make_agent())
    try:
        yield runtime, exporter, provider
    finally:
        runtime.close()
        provider.shutdown()


def spans_by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        out.setdefault(span.name, []).append(span)
    return out


def test_spans_follow_the_genai_conventions_and_continue_the_submitters_trace(
    traced: tuple[Runtime, InMemorySpanExporter, TracerProvider],
) -> None:
    runtime, exporter, provider = traced
    with provider.get_tracer("api").start_as_current_span("POST /v1/sessions/{id}/tasks") as api:
        task = runtime.submit("tracer", "find k", tenant="acme")
    assert task.trace_context is not None and "traceparent" in task.trace_context
    result = runtime.run(task.id)
    assert result.status == "completed"

    spans = spans_by_name(exporter)
    (root,) = spans["invoke_agent tracer"]
    api_ctx = api.get_span_context()
    assert root.context is not None and root.parent is not None
    assert root.context.trace_id == api_ctx.trace_id  # the trace continues through the store
    assert root.parent.span_id == api_ctx.span_id
    attrs = dict(root.attributes or {})
    assert attrs["gen_ai.operation.name"] == "invoke_agent"
    assert attrs["gen_ai.agent.name"] == "tracer"
    assert attrs["gen_ai.conversation.id"] == task.session_id
    assert attrs["tether.task.id"] == task.id
    assert attrs["tether.tenant"] == "acme"
    assert attrs["tether.task.end_reason"] == "completed"
    assert root.status.status_code == StatusCode.OK

    chats = spans["chat scripted"]
    tools = spans["execute_tool lookup"]
    assert len(chats) == 2 and len(tools) == 2  # two model steps; the tool tried twice
    for child in (*chats, *tools):
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert child.context is not None and child.context.trace_id == api_ctx.trace_id
    first_chat = min(chats, key=lambda s: s.start_time or 0)
    c = dict(first_chat.attributes or {})
    assert first_chat.kind == SpanKind.CLIENT
    assert c["gen_ai.operation.name"] == "chat"
    assert c["gen_ai.request.model"] == "scripted"
    assert c["gen_ai.response.model"] == "scripted"
    assert c["tether.step.index"] == 0
    assert c["gen_ai.usage.input_tokens"] > 0 and c["gen_ai.usage.output_tokens"] > 0
    assert c["gen_ai.response.finish_reasons"] == ("tool_calls",)

    failed, ok = sorted(tools, key=lambda s: dict(s.attributes or {})["tether.step.attempt"])
    call_id = _tool_call_id(runtime, task.session_id)
    for span, attempt in ((failed, 1), (ok, 2)):
        a = dict(span.attributes or {})
        assert a["gen_ai.operation.name"] == "execute_tool"
        assert a["gen_ai.tool.name"] == "lookup"
        assert a["gen_ai.tool.call.id"] == call_id
        assert (a["tether.step.index"], a["tether.step.attempt"]) == (1, attempt)
    assert failed.status.status_code == StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "ToolFailed"
    assert [e.name for e in failed.events] == ["step.retrying"]
    assert ok.status.status_code != StatusCode.ERROR

    usage = dict(root.attributes or {})
    assert usage["gen_ai.usage.input_tokens"] == sum(
        dict(s.attributes or {})["gen_ai.usage.input_tokens"] for s in chats
    )


def _tool_call_id(runtime: Runtime, session_id: str) -> str:
    messages: list[types.StoredMessage] = runtime.run_on_store(
        lambda s: s.list_messages(session_id)
    )
    ids = [m.message.tool_call_id for m in messages if m.message.role == "tool"]
    assert len(ids) == 1 and ids[0]
    return ids[0]


def test_an_explicit_trace_context_wins_and_none_means_a_new_trace(
    traced: tuple[Runtime, InMemorySpanExporter, TracerProvider],
) -> None:
    runtime, exporter, _ = traced
    given = {"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"}
    continued = runtime.submit("tracer", "find k", trace_context=given)
    fresh = runtime.submit("tracer", "find k")
    assert continued.trace_context == given
    assert fresh.trace_context is None  # no active span, nothing given: nothing stored
    assert runtime.run(continued.id).ok and runtime.run(fresh.id).ok

    roots = {
        dict(s.attributes or {})["tether.task.id"]: s
        for s in spans_by_name(exporter)["invoke_agent tracer"]
    }
    a, b = roots[continued.id], roots[fresh.id]
    assert a.context is not None and b.context is not None
    assert format(a.context.trace_id, "032x") == PARENT_TRACE
    assert a.parent is not None and format(a.parent.span_id, "016x") == PARENT_SPAN
    assert b.parent is None and b.context.trace_id != a.context.trace_id


def test_runtime_metrics_count_in_process_runs(tmp_path: Path) -> None:
    m = metrics.Metrics()
    with Runtime(store=f"sqlite:///{tmp_path / 'm.db'}", metrics=m, worker_id="m:run") as rt:
        rt.register(make_agent())
        assert rt.run(rt.submit("tracer", "find k").id).ok
    body = m.render().decode()
    assert 'tether_tasks_started_total{task_type="tracer"} 1.0' in body
    assert 'tether_tasks_finished_total{outcome="completed",task_type="tracer"} 1.0' in body
    assert 'tether_task_retries_total{error_type="ToolFailed",task_type="tracer"} 1.0' in body
    commits = [
        line for line in body.splitlines() if line.startswith("tether_journal_commit_seconds_count")
    ]
    assert len(commits) == 1 and float(commits[0].split()[-1]) >= 3  # one per step at least


def _spans_from_console(text: str) -> list[dict[str, Any]]:
    """The JSON objects the console exporter printed, one after another."""
    decoder, spans, i = json.JSONDecoder(), [], 0
    while (i := text.find("{", i)) != -1:
        span, i = decoder.raw_decode(text, i)
        spans.append(span)
    return spans


def test_a_worker_exports_where_otel_says_and_continues_the_stored_trace(
    tmp_path: Path,
) -> None:
    store = f"sqlite:///{tmp_path / 'w.db'}"
    with Runtime(store=store) as rt:
        rt.register(cli_agents.echo, spec=ECHO)
        given = {"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"}
        task = rt.submit("echo", "hello", tenant="acme", trace_context=given)
        env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "w-test"}
        out_path = tmp_path / "worker.stdout"
        with out_path.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tether", "worker", ECHO, "--worker-id", "otel-w",
                 "--poll", "0.05", "--store", store],
                stdout=sink, stderr=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while rt.get_task(task.id).status not in types.FINAL_STATUSES:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    spans = _spans_from_console(out_path.read_text())
    names = sorted(s["name"] for s in spans)
    assert names == sorted(
        ["invoke_agent echo", *["chat scripted"] * 3, *["execute_tool shout"] * 2]
    )
    assert {s["context"]["trace_id"] for s in spans} == {f"0x{PARENT_TRACE}"}
    (root,) = [s for s in spans if s["name"] == "invoke_agent echo"]
    assert root["parent_id"] == f"0x{PARENT_SPAN}"
    assert root["resource"]["attributes"]["service.name"] == "w-test"
    assert root["attributes"]["tether.task.id"] == task.id
    assert all(s["parent_id"] == root["context"]["span_id"] for s in spans if s is not root)
