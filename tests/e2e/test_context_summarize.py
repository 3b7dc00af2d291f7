"""200 turns under the summarize strategy against the stand-in server's real window."""

from __future__ import annotations

from pathlib import Path

import context_support as support

from tether import ContextPolicy
from tether.observe import events

WINDOW = 2048


def test_200_turns_summarize(tmp_path: Path) -> None:
    run = support.converse(
        str(tmp_path / "t.db"), ContextPolicy(strategy="summarize", keep_recent=4), 200,
        window=WINDOW,
    )  # fmt: skip
    assert [r.status for r in run.results] == ["completed"] * 200
    assert [i for i, b in enumerate(run.bodies) if support.server_would_refuse(b, WINDOW)] == []
    assert all(support.orphans(b) == [] for b in run.bodies)
    chat = [b for b in run.bodies if not support.is_summary_request(support.wire_request(b))]
    assert len(run.bodies) - len(chat) > 0
    last = chat[-1]["messages"]
    assert last[0]["content"].startswith("Record the numbers")
    assert last[1]["role"] == "system"
    assert last[1]["content"].startswith("Summary of the earlier conversation")
    assert "earlier messages are summarised above" in last[1]["content"]

    ledger = run.session.state
    assert ledger["summary"]["text"]
    assert ledger["compactions_total"] >= 1
    folded = ledger["folded_upto"]
    assert ledger["summary"]["sources"] == [[1, folded]]
    assert ledger["last"]["request_from_seq"] == folded + 1
    assert run.memory == []

    assert run.seen.named(events.CONTEXT_PRESSURE)
    compacted = run.seen.named(events.CONTEXT_COMPACTED)
    assert compacted
    for e in compacted:
        assert {"strategy", "messages", "tokens_before", "tokens_after"} <= e.data.keys()
        assert e.data["tokens_after"] < e.data["tokens_before"]
    folds = [
        seq for e in compacted if e.data["strategy"] == "summarize" for seq in e.data["messages"]
    ]
    assert folds == list(range(1, folded + 1))
    assert not run.seen.named(events.STEP_FAILED)
    # the default counter never counts less than the server, and at most 10% + 1 more
    last_usage = ledger["last"]
    assert last_usage["reported"] <= last_usage["estimated"] <= last_usage["reported"] * 1.1 + 1
    assert ledger["calibration"]["ratio"] == 1.0
    assert ledger["calibration"]["samples"] >= 400


def test_resummarizes_a_summary_that_outgrows_its_room(tmp_path: Path) -> None:
    """A summariser that only ever appends makes the summary outgrow summary_tokens:
    a resummarize step shortens it, and requests still fit."""
    run = support.converse(
        str(tmp_path / "t.db"),
        ContextPolicy(strategy="summarize", summary_tokens=40),
        60,
        window=WINDOW,
        growing_summary=True,
    )
    assert [r.status for r in run.results] == ["completed"] * 60
    assert [i for i, b in enumerate(run.bodies) if support.server_would_refuse(b, WINDOW)] == []
    strategies = [e.data["strategy"] for e in run.seen.named(events.CONTEXT_COMPACTED)]
    assert "resummarize" in strategies and "summarize" in strategies
    assert run.session.state["summary"]["generation"] == len(strategies)
