"""Token streaming: ``OpenAIModel(stream=True)`` against the stand-in's OpenAI-style
stream. Observers hear each piece as ``model.delta``, the stored event log (what the
task's SSE stream serves) holds them coalesced, the journal holds only the complete
response, and a stream cut off mid-way is retried, never taken as a short answer."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import server_agents
import server_support as support
from rich.console import Console

from tether import Agent, OpenAIModel, Runtime, tool
from tether.cli.progress import ProgressPrinter
from tether.models.scripted import ScriptedModel
from tether.observe import events
from tether.testing import Fault, StandInModelServer

ANSWER = "the quick brown fox jumps over the lazy dog"


class Heard:
    def __init__(self) -> None:
        self.events: list[events.TaskEvent] = []

    def on_event(self, event: events.TaskEvent) -> None:
        self.events.append(event)

    def deltas(self) -> list[tuple[int | None, int | None, str]]:
        return [
            (e.step, e.attempt, e.data["text"]) for e in self.events if e.name == events.MODEL_DELTA
        ]


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@pytest.fixture
def server() -> Iterator[StandInModelServer]:
    with StandInModelServer([ScriptedModel.call("add", a=2, b=3), ANSWER]) as srv:
        yield srv


def run(tmp_path: Path, server: StandInModelServer, heard: Any) -> tuple[Any, Any, Any]:
    agent = Agent("streamer", OpenAIModel(server.base_url, "m", stream=True), tools=[add])
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}", observers=[heard]) as runtime:
        runtime.register(agent)
        result = runtime.run(runtime.submit("streamer", "go").id)
        journal = runtime.run_on_store(lambda s: s.load_journal(result.id))
        stored = runtime.run_on_store(lambda s: s.list_events(result.id))
    return result, journal, stored


def test_deltas_reach_observers_and_the_event_log_the_journal_keeps_the_whole(
    tmp_path: Path, server: StandInModelServer
) -> None:
    heard = Heard()
    result, journal, stored = run(tmp_path, server, heard)
    assert result.output == ANSWER
    deltas = heard.deltas()
    assert len(deltas) == len(ANSWER.split())  # one piece a word, as the server sent them
    assert {(step, attempt) for step, attempt, _ in deltas} == {(2, 1)}
    assert "".join(text for _, _, text in deltas) == ANSWER
    saved = [e for e in stored if e.name == events.MODEL_DELTA]
    assert 1 <= len(saved) < len(deltas)  # coalesced until the next write
    assert "".join(e.data["text"] for e in saved) == ANSWER
    assert all(e.step == 2 and e.data["attempt"] == 1 for e in saved)
    first, _, last = journal
    assert first.output["message"]["tool_calls"][0]["name"] == "add"
    assert last.output["message"]["content"] == ANSWER
    assert last.usage is not None and last.usage.completion_tokens > 0
    body = server.requests[-1]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_a_stream_cut_mid_way_is_retried_not_taken_as_the_answer(
    tmp_path: Path, server: StandInModelServer
) -> None:
    heard = Heard()
    server.inject(Fault.delay(0), Fault.cut())  # the second model call is cut
    result, journal, _ = run(tmp_path, server, heard)
    assert result.output == ANSWER
    assert journal[-1].attempts == 2
    retried = [e for e in heard.events if e.name == events.STEP_RETRYING]
    assert [e.data["error"]["error_class"] for e in retried] == ["StreamInterrupted"]
    assert retried[0].data["error"]["retryable"] is True
    by_attempt: dict[int | None, str] = {}
    for _, attempt, text in heard.deltas():
        by_attempt[attempt] = by_attempt.get(attempt, "") + text
    assert by_attempt[2] == ANSWER
    assert ANSWER.startswith(by_attempt[1]) and by_attempt[1] != ANSWER


def test_deltas_reach_the_tasks_sse_stream_while_the_step_runs(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'tether.db'}"
    key = support.make_key(store_url, "acme")
    server_agents.STREAM_RELEASE.clear()
    with support.serve_in_thread(store_url, workers=1) as srv:
        c = srv.client(key)
        sid = c.post("/v1/sessions", json={"agent": "held"}).json()["id"]
        tid = c.post(f"/v1/sessions/{sid}/tasks", json={"input": "go"}).json()["id"]
        try:
            early = support.read_events(c, tid, until=events.MODEL_DELTA)
            assert c.get(f"/v1/tasks/{tid}").json()["status"] == "running"
        finally:
            server_agents.STREAM_RELEASE.set()
        assert early[-1].data["data"]["text"] == "streamed "
        assert "step.completed" not in [e.event for e in early]
        everything = support.read_events(c, tid)
        output = c.get(f"/v1/tasks/{tid}").json()["output"]
    assert everything[-1].data["status"] == "completed"
    text = "".join(e.data["data"]["text"] for e in everything if e.event == events.MODEL_DELTA)
    assert text == "streamed answer in pieces" == output


def test_tether_runs_progress_printer_shows_the_text_as_it_streams(
    tmp_path: Path, server: StandInModelServer
) -> None:
    out = io.StringIO()
    printer = ProgressPrinter(Console(file=out, width=200, color_system=None))
    result, _, _ = run(tmp_path, server, printer)
    assert result.output == ANSWER
    lines = out.getvalue().splitlines()
    streamed = lines.index(ANSWER)  # the pieces, on one line of their own
    assert "✓ step   2 model m" in lines[streamed + 1]
