"""200 turns under the summarize strategy against the stand-in server's real window."""

from __future__ import annotations

from pathlib import Path

import context_support as support

from tether import Agent, ContextPolicy, OpenAIModel, Runtime
from tether.observe import events
from tether.testing import StandInModelServer

WINDOW = 2048
TURNS = 200


class Collect:
    def __init__(self) -> None:
        self.events: list[events.TaskEvent] = []

    def on_event(self, event: events.TaskEvent) -> None:
        self.events.append(event)


def test_200_turns_summarize(tmp_path: Path) -> None:
    seen = Collect()
    with StandInModelServer(support.conversation, context_window=WINDOW) as server:
        model = OpenAIModel(
            base_url=server.base_url, model="any", context_window=WINDOW, max_output_tokens=256
        )
        agent = Agent(
            "summarizer",
            model,
            instructions="Record the numbers the user gives, then say done.",
            tools=[support.record],
            context=ContextPolicy(strategy="summarize", keep_recent=4),
        )
        with Runtime(
            store=f"sqlite:///{tmp_path}/t.db?synchronous=normal", observers=[seen]
        ) as runtime:
            runtime.register(agent)
            session = None
            for turn in range(1, TURNS + 1):
                task = runtime.submit("summarizer", f"turn {turn}", session=session)
                session = task.session_id
                result = runtime.run(task.id)
                assert result.status == "completed", result.error
            assert session is not None
            record = runtime.store_call(lambda s: s.get_session(session))
            messages = runtime.store_call(lambda s: s.list_messages(session))
        bodies = server.requests

    refused = [i for i, b in enumerate(bodies) if support.server_would_refuse(b, WINDOW)]
    assert refused == []
    assert all(support.orphans(b) == [] for b in bodies)
    chat = [b for b in bodies if not support.is_summary_request(support.wire_request(b))]
    summaries = len(bodies) - len(chat)
    assert summaries > 0
    last = chat[-1]["messages"]
    assert last[0]["content"].startswith("Record the numbers")
    assert last[1]["role"] == "system"
    assert last[1]["content"].startswith("Summary of the earlier conversation")
    assert "earlier messages are summarised above" in last[1]["content"]

    ledger = record.state
    assert ledger["summary"]["text"]
    assert ledger["compactions_total"] >= 1
    # every message is in the request or in the summary's recorded sources
    folded = ledger["folded_upto"]
    sources = ledger["summary"]["sources"]
    for m in messages:
        if m.seq <= folded:
            assert any(a <= m.seq <= b for a, b in sources), m.seq
    assert ledger["last"]["request_from_seq"] == folded + 1

    names = [e.name for e in seen.events]
    assert events.CONTEXT_PRESSURE in names
    compacted = [e for e in seen.events if e.name == events.CONTEXT_COMPACTED]
    assert compacted and all(
        {"strategy", "messages", "tokens_before", "tokens_after"} <= e.data.keys()
        for e in compacted
    )
    assert all(e.data["tokens_after"] < e.data["tokens_before"] for e in compacted)
    assert not [e for e in seen.events if e.name in (events.STEP_FAILED, events.TASK_FAILED)]
    # the estimate is never below what the model reported, and within 10% + 1 token of it
    done = [e for e in seen.events if e.name == events.STEP_COMPLETED and e.step_kind == "model"]
    assert len(done) >= TURNS * 2
    last_usage = ledger["last"]
    assert last_usage["reported"] <= last_usage["estimated"] <= last_usage["reported"] * 1.1 + 1
