"""Compiled LangGraph graphs as tether tasks: registered like an agent, run on the
session's thread, each node a step; and named by a CLI spec (``tether run``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import langgraph_graphs
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import parser

from tether import Runtime, errors
from tether.integrations.langgraph import TetherSaver
from tether.observe import metrics
from tether.observe.tracing import TracingObserver

ROOT = Path(__file__).resolve().parents[2]


def started_steps(m: metrics.Metrics, task_type: str) -> float:
    total = 0.0
    for family in parser.text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            if (
                s.name == "tether_task_steps_started_total"
                and s.labels.get("task_type") == task_type
            ):
                total += s.value
    return total


def test_a_chat_graph_runs_as_tasks_on_its_sessions_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_TEST_GRAPH_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'graph.db'}"
    seen = metrics.Metrics()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with Runtime(url, metrics=seen, observers=[TracingObserver(provider)]) as runtime:
        runtime.register(langgraph_graphs.chat)
        first = runtime.submit(agent="chat", input="hello", tenant="acme", session=None)
        second = runtime.submit(
            agent="chat", input="and then?", tenant="acme", session=first.session_id
        )
        one, two = runtime.run(first.id), runtime.run(second.id)
        steps = runtime.run_on_store(lambda s: s.load_journal(second.id))
        names = [e.name for e in runtime.run_on_store(lambda s: s.list_events(second.id))]

    assert (one.status, one.output) == ("completed", "answer to hello (turn 1)")
    # the second turn continues the thread: the graph saw the first turn's messages
    assert (two.status, two.output) == ("completed", "answer to and then? (turn 2)")
    assert [(s.index, s.kind, s.name, s.status) for s in steps] == [
        (0, "custom", "think", "completed"),
        (1, "custom", "answer", "completed"),
    ]
    assert names.count("step.started") == 2 and names.count("step.completed") == 2
    assert started_steps(seen, "chat") == 4
    assert langgraph_graphs.node_runs(tmp_path) == ["think", "answer"] * 2
    # each node a span inside its task's invoke_agent span
    spans = exporter.get_finished_spans()
    provider.shutdown()
    nodes = [s for s in spans if s.name in ("step think", "step answer")]
    agents = {s.context.span_id for s in spans if s.name.startswith("invoke_agent")}
    assert sorted(s.name for s in nodes) == ["step answer"] * 2 + ["step think"] * 2
    assert all(s.parent is not None and s.parent.span_id in agents for s in nodes)

    with TetherSaver(url) as saver:
        latest = saver.get_tuple({"configurable": {"thread_id": first.session_id}})
    assert latest is not None
    assert [m.content for m in latest.checkpoint["channel_values"]["messages"]] == [
        "hello",
        "thinking about hello",
        "answer to hello (turn 1)",
        "and then?",
        "thinking about and then?",
        "answer to and then? (turn 2)",
    ]


def test_a_graph_with_the_default_name_is_refused_with_the_fix(tmp_path: Path) -> None:
    with (
        Runtime(f"sqlite:///{tmp_path / 'graph.db'}") as runtime,
        pytest.raises(errors.InvalidInput, match=r"compile\(name="),
    ):
        runtime.register(langgraph_graphs.unnamed)


def test_tether_run_names_a_compiled_graph(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    example = ROOT / "examples" / "langgraph_graph.py"
    command = [sys.executable, "-m", "tether", "run", f"{example}:graph", "what is fencing?"]
    done = subprocess.run(
        [*command, "--store", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "turn 1: 'what is fencing?' has 3 words" in done.stdout
    # each node was a step, shown as it ran
    assert "custom research" in done.stderr and "custom answer" in done.stderr
