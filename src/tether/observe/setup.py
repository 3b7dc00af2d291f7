"""What a long-running process observes its tasks with, set up in one call.

``tether worker`` and ``tether serve`` (and anyone embedding workers) call
``setup_observability()`` once at start-up and ``close()`` at exit::

    obs = setup_observability(extra=[runtime.observers])
    worker = Worker(store, workflows, observers=obs.observers,
                    committer=Committer(store, on_commit_seconds=obs.metrics.observe_commit))
    serve_metrics(obs.metrics, port)          # or render obs.metrics at the app's /metrics
    ...
    obs.close()                               # flushes spans still queued for export

The observers are, in order: ``MetricsObserver`` (this process's own Prometheus
metrics: each process exposes only what it ran, so scraping every process never
counts a task twice), ``LogObserver`` (one JSON log line per task event), a
``TracingObserver`` when the standard ``OTEL_*`` variables ask for an exporter
(``tracing.configure_tracing``; its provider also becomes OpenTelemetry's global one,
so ``inject_trace_context`` and user spans use it), then ``extra``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tether.observe import events, tracing
from tether.observe import logging as obslog
from tether.observe import metrics as obsmetrics

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


@dataclass(frozen=True, slots=True)
class Observability:
    """A process's metrics, its observers, and the tracer provider when tracing is on."""

    metrics: obsmetrics.Metrics
    observers: events.Observers
    tracer_provider: TracerProvider | None = None
    """None when no exporter is configured."""

    def close(self) -> None:
        """Export the spans still queued and stop the exporters. Safe to call twice."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()


def setup_observability(
    *,
    metrics: obsmetrics.Metrics | None = None,
    extra: Sequence[events.Observer] = (),
    service_name: str = "tether",
    environ: Mapping[str, str] | None = None,
    log_debug: bool = False,
) -> Observability:
    """Metrics, JSON event logs and (when ``OTEL_*`` says so) traces for this process.

    Raises ``MissingExtra`` when an exporter is configured but ``tether[otel]`` is not
    installed, and ``InvalidInput`` for an exporter or protocol tether does not speak.
    """
    m = metrics if metrics is not None else obsmetrics.Metrics()
    provider = tracing.configure_tracing(service_name, environ)
    chosen: list[events.Observer] = [
        obsmetrics.MetricsObserver(m),
        obslog.LogObserver(debug=log_debug),
    ]
    if provider is not None:
        tracing.set_global_tracer_provider(provider)
        chosen.append(tracing.TracingObserver(provider))
    chosen.extend(extra)
    return Observability(metrics=m, observers=events.Observers(chosen), tracer_provider=provider)
