"""OpenTelemetry traces from task events, following the GenAI semantic conventions.

One ``invoke_agent {agent}`` span per task run (``task.started`` to the task's end,
release or lost lease), with a child per step attempt: ``chat {model}`` for model
steps (summaries included), ``execute_tool {tool}`` for tool steps and ``step {name}``
for the others. Spans carry ``gen_ai.*`` attributes (operation, agent, conversation =
session, model, token usage, finish reasons, tool name and call id) and ``tether.*``
ids; a failed attempt or task gets an error status and ``error.type`` = its
``error_class``. Span times are the events' times.

A task's trace continues the trace of the request that submitted it: the API captures
``inject_trace_context()`` (a W3C ``traceparent`` carrier), the store keeps it with
the task, and ``task.started`` brings it back as ``data["trace_context"]``.

OpenTelemetry is the optional extra ``tether[otel]``: this module imports without it,
``inject_trace_context`` then returns ``{}``, and ``TracingObserver`` raises
``MissingExtra``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tether import errors
from tether.observe import events

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    HAVE_OTEL = True
except ImportError:  # the otel extra is not installed
    HAVE_OTEL = False

INSTALL_HINT = "pip install 'tether[otel]'"
TRACER_NAME = "tether"

_MODEL_KINDS = frozenset({"model", "summarize"})
_NAMED_KEYS = frozenset({"reason", "previous_worker", "strategy", "kind", "name"})


def _missing(what: str) -> errors.MissingExtra:
    return errors.MissingExtra(
        f"{what} needs OpenTelemetry, which is not installed; install it with {INSTALL_HINT}"
    )


def inject_trace_context() -> dict[str, str]:
    """The current trace context as a W3C carrier (``traceparent``, ``tracestate``).

    Empty when there is no active span or OpenTelemetry is not installed.
    """
    if not HAVE_OTEL:
        return {}
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


def configure_tracing(
    service_name: str = "tether", environ: Mapping[str, str] | None = None
) -> TracerProvider | None:
    """A tracer provider exporting where the standard ``OTEL_*`` variables say, or None.

    ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, ``none``; comma-separated) picks the
    exporters; unset, OTLP is used when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, else nothing is exported and None is
    returned. ``OTEL_SDK_DISABLED=true`` returns None. The OTLP exporter speaks
    HTTP/protobuf and reads its endpoint, headers and timeout from the same variables;
    ``OTEL_SERVICE_NAME`` overrides ``service_name``.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in names if n]
    if not names and (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        names = ["otlp"]
    names = [n for n in names if n != "none"]
    if not names:
        return None
    if not HAVE_OTEL:
        raise _missing(f"OTEL_TRACES_EXPORTER={','.join(names)}")
    exporters = [_exporter(name, env) for name in names]
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service_name}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def set_global_tracer_provider(provider: TracerProvider) -> None:
    """Make ``provider`` OpenTelemetry's global one (once per process; later calls are
    ignored with a warning by OpenTelemetry), so that ``inject_trace_context`` and the
    user's own spans use it."""
    otel_trace.set_tracer_provider(provider)


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise errors.InvalidInput(
            f"OTEL_TRACES_EXPORTER={name!r} is not supported; use otlp, console or none"
        )
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol != "http/protobuf":
        raise errors.InvalidInput(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; tether exports "
            "OTLP over http/protobuf (unset the variable or set it to http/protobuf)"
        )
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise _missing("the OTLP trace exporter") from exc
    # The exporter reads endpoint, headers, timeout and compression from the environment.
    return OTLPSpanExporter()


def _ns(at: float) -> int:
    return int(at * 1_000_000_000)


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


@dataclass(slots=True)
class _Run:
    """The spans of one task run in this process."""

    span: otel_trace.Span
    context: otel_context.Context
    steps: dict[int, otel_trace.Span] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0


class TracingObserver:
    """An ``Observer`` that turns task events into OpenTelemetry spans."""

    def __init__(self, tracer_provider: otel_trace.TracerProvider | None = None) -> None:
        if not HAVE_OTEL:
            raise _missing("TracingObserver")
        provider = (
            tracer_provider if tracer_provider is not None else otel_trace.get_tracer_provider()
        )
        self._tracer = provider.get_tracer(TRACER_NAME)
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def on_event(self, event: events.TaskEvent) -> None:
        with self._lock:
            self._handle(event)

    # ---- dispatch ----------------------------------------------------------

    def _handle(self, event: events.TaskEvent) -> None:
        name = event.name
        if name == events.TASK_STARTED:
            self._start_run(event)
        elif name == events.STEP_STARTED:
            self._start_step(event)
        elif name == events.STEP_COMPLETED:
            self._complete_step(event)
        elif name in (events.STEP_RETRYING, events.STEP_FAILED):
            self._fail_step(event)
        elif name in (
            events.TASK_COMPLETED,
            events.TASK_FAILED,
            events.TASK_CANCELLED,
            events.TASK_RELEASED,
            events.LEASE_LOST,
            events.TASK_WAITING,
        ):
            self._end_run(event)
        elif name not in (events.TASK_SUBMITTED, events.MODEL_DELTA):  # no span event a token
            self._annotate(event)

    def _base_attributes(self, event: events.TaskEvent) -> dict[str, Any]:
        return {
            "gen_ai.agent.name": event.agent,
            "gen_ai.conversation.id": event.session_id,
            "tether.task.id": event.task_id,
            "tether.tenant": event.tenant,
        }

    def _start_run(self, event: events.TaskEvent) -> _Run:
        old = self._runs.pop(event.task_id, None)
        if old is not None:  # a run this process never saw end: close it where the next began
            self._close_run(old, event, end_reason="superseded")
        carrier = event.data.get("trace_context")
        parent = None
        if isinstance(carrier, Mapping) and carrier:
            parent = TraceContextTextMapPropagator().extract(
                {str(k): str(v) for k, v in carrier.items()}
            )
        attributes = {"gen_ai.operation.name": "invoke_agent", **self._base_attributes(event)}
        for key in ("reason", "run", "from_step"):
            value = event.data.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                attributes[f"tether.task.{key}"] = value
        if event.worker is not None:
            attributes["tether.worker"] = event.worker
        span = self._tracer.start_span(
            f"invoke_agent {event.agent}",
            context=parent,
            kind=otel_trace.SpanKind.INTERNAL,
            attributes=attributes,
            start_time=_ns(event.at),
        )
        run = _Run(span=span, context=otel_trace.set_span_in_context(span))
        self._runs[event.task_id] = run
        return run

    def _run(self, event: events.TaskEvent) -> _Run:
        # An observer attached mid-run (or after a restart) still gets a root span.
        return self._runs.get(event.task_id) or self._start_run(event)

    def _start_step(self, event: events.TaskEvent, at: float | None = None) -> otel_trace.Span:
        run = self._run(event)
        index = event.step if event.step is not None else -1
        previous = run.steps.pop(index, None)
        if previous is not None:  # an attempt that never reported its end
            previous.end(end_time=_ns(event.at))
        kind = event.step_kind or "custom"
        attributes = self._base_attributes(event)
        attributes["tether.step.kind"] = kind
        if event.step is not None:
            attributes["tether.step.index"] = event.step
        if event.attempt is not None:
            attributes["tether.step.attempt"] = event.attempt
        model = event.data.get("model")
        span_kind = otel_trace.SpanKind.INTERNAL
        if kind in _MODEL_KINDS:
            attributes["gen_ai.operation.name"] = "chat"
            span_name = f"chat {model}" if model else "chat"
            if model:
                attributes["gen_ai.request.model"] = str(model)
            span_kind = otel_trace.SpanKind.CLIENT
        elif kind == "tool":
            tool = event.step_name or "tool"
            attributes["gen_ai.operation.name"] = "execute_tool"
            attributes["gen_ai.tool.name"] = tool
            call_id = event.data.get("tool_call_id")
            if call_id:
                attributes["gen_ai.tool.call.id"] = str(call_id)
            span_name = f"execute_tool {tool}"
        else:
            span_name = f"step {event.step_name or kind}"
        if event.step_name is not None:
            attributes["tether.step.name"] = event.step_name
        span = self._tracer.start_span(
            span_name,
            context=run.context,
            kind=span_kind,
            attributes=attributes,
            start_time=_ns(event.at if at is None else at),
        )
        run.steps[index] = span
        return span

    def _step_span(self, event: events.TaskEvent) -> otel_trace.Span:
        run = self._run(event)
        span = run.steps.pop(event.step if event.step is not None else -1, None)
        if span is None:  # its step.started was not seen here: start it at its known start
            duration = _number(event.data.get("duration")) or 0.0
            span = self._start_step(event, at=event.at - duration)
            run.steps.pop(event.step if event.step is not None else -1, None)
        return span

    def _complete_step(self, event: events.TaskEvent) -> None:
        run = self._run(event)
        span = self._step_span(event)
        data = event.data
        model = data.get("model")
        if model and event.step_kind in _MODEL_KINDS:
            span.set_attribute("gen_ai.response.model", str(model))
            span.update_name(f"chat {model}")
            span.set_attribute("gen_ai.request.model", str(model))
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            prompt = _number(usage.get("prompt_tokens"))
            completion = _number(usage.get("completion_tokens"))
            if prompt is not None:
                span.set_attribute("gen_ai.usage.input_tokens", int(prompt))
                run.input_tokens += int(prompt)
            if completion is not None:
                span.set_attribute("gen_ai.usage.output_tokens", int(completion))
                run.output_tokens += int(completion)
        finish = data.get("finish_reason")
        if finish:
            span.set_attribute("gen_ai.response.finish_reasons", [str(finish)])
        for key, attr in (("context_tokens", "tether.context.tokens"),
                          ("context_limit", "tether.context.limit")):  # fmt: skip
            value = _number(data.get(key))
            if value is not None:
                span.set_attribute(attr, value)
        span.end(end_time=_ns(event.at))

    def _fail_step(self, event: events.TaskEvent) -> None:
        span = self._step_span(event)
        _set_error(span, event.data.get("error"))
        if event.name == events.STEP_RETRYING:
            delay = _number(event.data.get("delay"))
            span.add_event(
                event.name,
                attributes={"tether.retry.delay": delay} if delay is not None else {},
                timestamp=_ns(event.at),
            )
        span.end(end_time=_ns(event.at))

    def _annotate(self, event: events.TaskEvent) -> None:
        """Events inside a run become span events on their step's span, else the root."""
        run = self._run(event)
        target = run.span
        if event.step is not None and event.step in run.steps:
            target = run.steps[event.step]
        attributes: dict[str, Any] = {}
        if event.step is not None:
            attributes["tether.step.index"] = event.step
        for key, value in event.data.items():
            # names and numbers only: no contents in span events
            named = key in _NAMED_KEYS and isinstance(value, str)
            if named or _number(value) is not None or isinstance(value, bool):
                attributes[f"tether.{key}"] = value
        target.add_event(event.name, attributes=attributes, timestamp=_ns(event.at))

    def _end_run(self, event: events.TaskEvent) -> None:
        run = self._runs.pop(event.task_id, None)
        if run is None:
            return  # nothing of this run was seen here
        name = event.name
        if name == events.TASK_FAILED:
            _set_error(run.span, event.data.get("error"))
        elif name == events.LEASE_LOST:
            run.span.set_attribute("error.type", "LeaseLost")
            run.span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, "lease lost"))
        elif name == events.TASK_COMPLETED:
            run.span.set_status(otel_trace.Status(otel_trace.StatusCode.OK))
        end_reason = {
            events.TASK_COMPLETED: "completed",
            events.TASK_FAILED: "failed",
            events.TASK_CANCELLED: "cancelled",
            events.TASK_RELEASED: "released",
            events.LEASE_LOST: "lease_lost",
            events.TASK_WAITING: "waiting",  # the run ends here; a wake starts another
        }[name]
        self._close_run(run, event, end_reason)

    def _close_run(self, run: _Run, event: events.TaskEvent, end_reason: str) -> None:
        end = _ns(event.at)
        for span in run.steps.values():  # steps cut short by the run's end
            span.set_attribute("tether.step.interrupted", end_reason)
            if end_reason == "lease_lost":
                span.set_attribute("error.type", "LeaseLost")
                span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, "lease lost"))
            span.end(end_time=end)
        run.steps.clear()
        run.span.set_attribute("tether.task.end_reason", end_reason)
        if run.input_tokens or run.output_tokens:
            run.span.set_attribute("gen_ai.usage.input_tokens", run.input_tokens)
            run.span.set_attribute("gen_ai.usage.output_tokens", run.output_tokens)
        run.span.end(end_time=end)


def _set_error(span: otel_trace.Span, error: Any) -> None:
    error_class = "Unknown"
    if isinstance(error, Mapping):
        error_class = str(error.get("error_class") or "Unknown")
        if error.get("type"):
            span.set_attribute("tether.error.where", str(error["type"]))
        if "retryable" in error:
            span.set_attribute("tether.error.retryable", bool(error["retryable"]))
    span.set_attribute("error.type", error_class)
    span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, error_class))
