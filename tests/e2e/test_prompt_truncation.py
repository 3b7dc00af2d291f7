"""A server that cuts the prompt silently (the stand-in's ``truncate_to``, as Ollama's
``num_ctx`` does) is noticed by the reported ``prompt_tokens``: an event and a metric,
or ``PromptTruncated`` under ``ContextPolicy(server_truncation="fail")``. And the
context length a server publishes in ``/v1/models`` (vLLM's ``max_model_len``) is read
and a disagreement with the configured window logged."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from tether import Agent, ContextPolicy, OpenAIModel, Runtime, types
from tether.observe import events, metrics
from tether.testing import StandInModelServer

LONG = "word " * 400  # about 500 tokens by the estimate the stand-in and tether share


class Heard:
    def __init__(self) -> None:
        self.events: list[events.TaskEvent] = []

    def on_event(self, event: events.TaskEvent) -> None:
        self.events.append(event)


def run(tmp_path: Path, agent: Agent, observer: Any) -> Any:
    with Runtime(f"sqlite:///{tmp_path / 'r.db'}", observers=[observer]) as runtime:
        runtime.register(agent)
        return runtime.run(runtime.submit(agent.name, LONG).id)


def test_a_cut_prompt_is_an_event_and_a_metric_and_the_answer_kept(tmp_path: Path) -> None:
    heard = Heard()
    m = metrics.Metrics()
    with StandInModelServer(["fine"], truncate_to=100) as server:
        agent = Agent("cut", OpenAIModel(server.base_url, "m", context_window=4096))
        result = run(tmp_path, agent, events.Observers([heard, metrics.MetricsObserver(m)]))
    assert result.status == "completed"
    (cut,) = [e for e in heard.events if e.name == events.PROMPT_TRUNCATED]
    assert cut.data["reported"] == 100
    assert cut.data["counted"] > 400
    assert cut.step == 0
    scraped = m.render().decode()
    assert 'tether_prompt_truncations_total{task_type="cut"} 1.0' in scraped


def test_under_the_strict_setting_a_cut_prompt_fails_the_task(tmp_path: Path) -> None:
    with StandInModelServer(["fine"], truncate_to=100) as server:
        agent = Agent(
            "strict",
            OpenAIModel(server.base_url, "m", context_window=4096),
            context=ContextPolicy(server_truncation="fail"),
        )
        result = run(tmp_path, agent, Heard())
    assert result.status == "failed"
    assert result.error["error_class"] == "PromptTruncated"
    assert result.error["type"] == "model"
    assert "reported 100 prompt tokens" in result.error["message"]


def test_a_prompt_the_server_kept_whole_raises_nothing(tmp_path: Path) -> None:
    heard = Heard()
    with StandInModelServer(["fine"]) as server:
        agent = Agent("whole", OpenAIModel(server.base_url, "m", context_window=4096))
        assert run(tmp_path, agent, heard).status == "completed"
    assert not [e for e in heard.events if e.name == events.PROMPT_TRUNCATED]


def test_the_published_window_is_read_and_a_disagreement_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with StandInModelServer(["fine"], context_window=2048) as server:
        wrong = OpenAIModel(server.base_url, "m", context_window=8192)
        right = OpenAIModel(server.base_url, "m", context_window=2048)
        request = types.ModelRequest(messages=(types.Message(role="user", content="hi"),))

        async def go() -> None:
            for model in (wrong, right):
                try:
                    await model.complete(request)
                    await model.complete(request)
                finally:
                    await model.aclose()

        with caplog.at_level(logging.WARNING, logger="tether.models.openai"):
            asyncio.run(go())
    assert wrong.server_window == right.server_window == 2048
    mismatches = [r for r in caplog.records if r.getMessage() == "model.window_mismatch"]
    assert len(mismatches) == 1  # once per model, and only the one that disagrees
    assert mismatches[0].__dict__["server_window"] == 2048
    assert mismatches[0].__dict__["context_window"] == 8192
