from __future__ import annotations

import http.server
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tether import errors
from tether.observe import events, tracing
from tether.observe.events import TaskEvent


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    yield p
    p.shutdown()


def ev(
    name: str,
    task: str = "t1",
    *,
    step: int | None = None,
    kind: str | None = None,
    step_name: str | None = None,
    attempt: int | None = None,
    at: float = 100.0,
    **data: Any,
) -> TaskEvent:
    return TaskEvent(
        name=name,
        tenant="acme",
        session_id="s1",
        task_id=task,
        agent="research",
        step=step,
        step_kind=kind,
        step_name=step_name,
        attempt=attempt,
        worker="w1",
        data=data,
        at=at,
    )


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    out = {s.name: s for s in spans}
    assert len(out) == len(spans), [s.name for s in spans]
    return out


def run_task(observer: tracing.TracingObserver, **start: Any) -> None:
    observer.on_event(
        ev(
            events.TASK_STARTED,
            at=100.0,
            reason="start",
            run=1,
            from_step=0,
            session_age=0.0,
            **start,
        )
    )
    observer.on_event(
        ev(
            events.STEP_STARTED,
            step=0,
            kind="model",
            step_name="chat",
            attempt=1,
            at=100.5,
            model="llama-3",
        )
    )
    observer.on_event(
        ev(
            events.STEP_COMPLETED,
            step=0,
            kind="model",
            step_name="chat",
            attempt=1,
            at=101.5,
            model="llama-3",
            duration=1.0,
            usage={"prompt_tokens": 120, "completion_tokens": 30},
            finish_reason="tool_calls",
            context_tokens=150,
            context_limit=8192,
        )
    )
    observer.on_event(
        ev(
            events.STEP_STARTED,
            step=1,
            kind="tool",
            step_name="search",
            attempt=1,
            at=102.0,
            tool_call_id="call_1",
        )
    )
    observer.on_event(
        ev(
            events.STEP_RETRYING,
            step=1,
            kind="tool",
            step_name="search",
            attempt=1,
            at=103.0,
            delay=0.5,
            error={
                "type": "tool",
                "error_class": "Timeout",
                "retryable": True,
                "message": "secret content",
            },
        )
    )
    observer.on_event(
        ev(
            events.STEP_STARTED,
            step=1,
            kind="tool",
            step_name="search",
            attempt=2,
            at=103.5,
            tool_call_id="call_1",
        )
    )
    observer.on_event(
        ev(
            events.STEP_COMPLETED,
            step=1,
            kind="tool",
            step_name="search",
            attempt=2,
            at=104.0,
            duration=0.5,
        )
    )
    observer.on_event(
        ev(
            events.STEP_STARTED,
            step=2,
            kind="model",
            step_name="chat",
            attempt=1,
            at=104.0,
            model="llama-3",
        )
    )
    observer.on_event(
        ev(events.CONTEXT_PRESSURE, step=2, at=104.1, tokens=7000, limit=8192, utilisation=0.85)
    )
    observer.on_event(
        ev(
            events.STEP_COMPLETED,
            step=2,
            kind="model",
            step_name="chat",
            attempt=1,
            at=105.0,
            model="llama-3",
            duration=1.0,
            usage={"prompt_tokens": 200, "completion_tokens": 10},
            finish_reason="stop",
        )
    )
    observer.on_event(ev(events.TASK_COMPLETED, at=105.5, duration=5.5, session_age=5.5))


def test_spans_of_a_task(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    run_task(tracing.TracingObserver(provider))
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [
        "chat llama-3",
        "execute_tool search",
        "execute_tool search",
        "chat llama-3",
        "invoke_agent research",
    ]
    root = spans[-1]
    chat, tool_try, tool_ok, chat2 = spans[:4]
    assert root.parent is None
    for child in spans[:4]:
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id

    assert root.kind == SpanKind.INTERNAL and chat.kind == SpanKind.CLIENT
    assert root.start_time == 100_000_000_000 and root.end_time == 105_500_000_000
    assert dict(root.attributes or {}) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "research",
        "gen_ai.conversation.id": "s1",
        "tether.task.id": "t1",
        "tether.tenant": "acme",
        "tether.task.reason": "start",
        "tether.task.run": 1,
        "tether.task.from_step": 0,
        "tether.worker": "w1",
        "tether.task.end_reason": "completed",
        "gen_ai.usage.input_tokens": 320,
        "gen_ai.usage.output_tokens": 40,
    }
    assert root.status.status_code == StatusCode.OK

    a = dict(chat.attributes or {})
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "llama-3"
    assert a["gen_ai.response.model"] == "llama-3"
    assert a["gen_ai.usage.input_tokens"] == 120 and a["gen_ai.usage.output_tokens"] == 30
    assert a["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert a["gen_ai.conversation.id"] == "s1" and a["gen_ai.agent.name"] == "research"
    assert a["tether.step.index"] == 0 and a["tether.task.id"] == "t1"
    assert a["tether.tenant"] == "acme" and a["tether.context.tokens"] == 150
    assert chat.start_time == 100_500_000_000 and chat.end_time == 101_500_000_000

    t = dict(tool_try.attributes or {})
    assert t["gen_ai.operation.name"] == "execute_tool"
    assert t["gen_ai.tool.name"] == "search" and t["gen_ai.tool.call.id"] == "call_1"
    assert t["tether.step.index"] == 1 and t["tether.step.attempt"] == 1
    assert t["error.type"] == "Timeout"
    assert tool_try.status.status_code == StatusCode.ERROR
    assert tool_try.status.description == "Timeout"  # the class, never the message
    assert [e.name for e in tool_try.events] == ["step.retrying"]
    assert dict(tool_ok.attributes or {})["tether.step.attempt"] == 2
    assert tool_ok.status.status_code == StatusCode.UNSET

    (pressure,) = chat2.events
    assert pressure.name == "context.pressure"
    assert dict(pressure.attributes or {})["tether.utilisation"] == 0.85


def test_continues_the_submitting_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("api")
    with tracer.start_as_current_span("POST /v1/sessions/{id}/tasks") as request_span:
        carrier = tracing.inject_trace_context()
    assert set(carrier) >= {"traceparent"}
    run_task(tracing.TracingObserver(provider), trace_context=carrier)
    root = next(s for s in exporter.get_finished_spans() if s.name == "invoke_agent research")
    assert root.context.trace_id == request_span.get_span_context().trace_id
    assert root.parent is not None
    assert root.parent.span_id == request_span.get_span_context().span_id


def test_inject_without_a_span_is_empty() -> None:
    assert tracing.inject_trace_context() == {}


def test_failed_task_and_failed_step(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    o = tracing.TracingObserver(provider)
    error = {"type": "model", "error_class": "BudgetExhausted", "retryable": False, "message": "m"}
    o.on_event(ev(events.TASK_STARTED, reason="start", at=1.0))
    o.on_event(ev(events.STEP_STARTED, step=0, kind="model", attempt=1, at=1.0))
    o.on_event(ev(events.STEP_FAILED, step=0, kind="model", attempt=1, at=2.0, error=error))
    o.on_event(ev(events.TASK_FAILED, at=2.0, error=error, step_error=True))
    spans = by_name(exporter.get_finished_spans())
    for span in spans.values():
        assert span.status.status_code == StatusCode.ERROR
        assert dict(span.attributes or {})["error.type"] == "BudgetExhausted"
    assert set(spans) == {"chat", "invoke_agent research"}  # no model name was given


def test_lease_lost_and_release_close_open_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    o = tracing.TracingObserver(provider)
    o.on_event(ev(events.TASK_STARTED, "a", reason="start", at=1.0))
    o.on_event(
        ev(events.STEP_STARTED, "a", step=4, kind="tool", step_name="fetch", attempt=1, at=2.0)
    )
    o.on_event(ev(events.STEP_STUCK, "a", step=4, at=70.0, silent_for=61.0, heartbeat_timeout=60.0))
    o.on_event(ev(events.LEASE_LOST, "a", at=80.0))
    o.on_event(ev(events.TASK_STARTED, "b", reason="resume", at=1.0))
    o.on_event(
        ev(events.TASK_RECOVERED, "b", reason="resume", from_step=2, previous_worker="w0", at=1.0)
    )
    o.on_event(ev(events.STEP_REPLAYED, "b", step=0, kind="model", step_name="chat", at=1.0))
    o.on_event(
        ev(events.STEP_STARTED, "b", step=2, kind="sleep", step_name="nap", attempt=1, at=1.5)
    )
    o.on_event(ev(events.TASK_RELEASED, "b", from_step=2, at=3.0))
    spans = exporter.get_finished_spans()
    fetch = next(s for s in spans if s.name == "execute_tool fetch")
    assert fetch.end_time == 80_000_000_000
    assert fetch.status.status_code == StatusCode.ERROR
    assert [e.name for e in fetch.events] == ["step.stuck"]
    assert fetch.parent is not None
    lost = next(s for s in spans if s.context.span_id == fetch.parent.span_id)
    assert dict(lost.attributes or {})["tether.task.end_reason"] == "lease_lost"
    nap = next(s for s in spans if s.name == "step nap")
    assert nap.parent is not None
    released = next(s for s in spans if s.context.span_id == nap.parent.span_id)
    assert dict(released.attributes or {})["tether.task.end_reason"] == "released"
    assert dict(released.attributes or {})["tether.task.reason"] == "resume"
    assert [e.name for e in released.events] == ["task.recovered", "step.replayed"]
    assert dict(released.events[0].attributes or {})["tether.previous_worker"] == "w0"
    assert nap.status.status_code == StatusCode.UNSET
    assert o._runs == {}


def test_global_provider_by_default() -> None:
    # with no provider configured, the API's no-op provider: nothing breaks
    o = tracing.TracingObserver()
    run_task(o)
    assert o._runs == {}


class _Collector(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, int]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], len(body)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_configure_tracing_exports_otlp_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # the OTLP exporter reads the real environment
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "tether-test")
        monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
        provider = tracing.configure_tracing()
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "tether-test"
        run_task(tracing.TracingObserver(provider))
        assert provider.force_flush(10_000)
        provider.shutdown()
    finally:
        server.shutdown()
        server.server_close()
    assert _Collector.received
    path, content_type, size = _Collector.received[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf" and size > 100


def test_configure_tracing_reads_the_standard_variables() -> None:
    assert tracing.configure_tracing(environ={}) is None
    assert tracing.configure_tracing(environ={"OTEL_TRACES_EXPORTER": "none"}) is None
    assert (
        tracing.configure_tracing(
            environ={
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
                "OTEL_SDK_DISABLED": "true",
            }
        )
        is None
    )
    console = tracing.configure_tracing("svc", environ={"OTEL_TRACES_EXPORTER": "console"})
    assert console is not None
    assert console.resource.attributes["service.name"] in (
        "svc",
        os.environ.get("OTEL_SERVICE_NAME", "svc"),
    )
    console.shutdown()
    with pytest.raises(errors.InvalidInput, match="zipkin"):
        tracing.configure_tracing(environ={"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(errors.InvalidInput, match="http/protobuf"):
        tracing.configure_tracing(
            environ={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        )


def test_works_without_opentelemetry_installed(tmp_path: Any) -> None:
    script = textwrap.dedent("""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ImportError("blocked: " + name)
                return None

        sys.meta_path.insert(0, Block())
        from tether import errors
        from tether.observe import tracing

        assert not tracing.HAVE_OTEL
        assert tracing.inject_trace_context() == {}
        assert tracing.configure_tracing(environ={}) is None
        for build in (lambda: tracing.TracingObserver(),
                      lambda: tracing.configure_tracing(environ={"OTEL_TRACES_EXPORTER": "otlp"})):
            try:
                build()
            except errors.MissingExtra as exc:
                assert "pip install 'tether[otel]'" in str(exc), exc
            else:
                raise AssertionError("no MissingExtra")
        print("ok")
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
