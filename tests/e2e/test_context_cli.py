"""``tether sessions show`` tells the operator how full a session's context is, what
its summary says and which compactions ran."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import context_support as support

from tether import ContextPolicy


def test_sessions_show_reports_tokens_summary_and_compactions(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    run = support.converse(str(db), ContextPolicy(strategy="summarize"), 40, window=1024)
    assert [r.status for r in run.results] == ["completed"] * 40
    sid = run.session.id
    url = f"sqlite:///{db}"

    shown = subprocess.run(
        [sys.executable, "-m", "tether", "sessions", "show", sid, "--store", url, "--json"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    ctx = json.loads(shown.stdout)["context"]
    state = run.session.state
    assert ctx["tokens"] == state["last"]["reported"] > 0
    assert ctx["limit"] == 1024 - 256
    assert ctx["window"] == 1024
    assert ctx["utilisation"] == state["last"]["utilisation"]
    assert ctx["summary"]["text"] == state["summary"]["text"]
    assert ctx["compactions_total"] == state["compactions_total"] >= 1
    assert [c["strategy"] for c in ctx["compactions"]] == ["summarize"] * len(ctx["compactions"])
    assert "task" not in ctx

    text = subprocess.run(
        [sys.executable, "-m", "tether", "sessions", "show", sid, "--store", url],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert f"context: {ctx['tokens']} of {ctx['limit']} prompt tokens" in text
    assert f"summary of messages 1–{ctx['folded_upto']}" in text
    assert f"compactions: {ctx['compactions_total']}" in text
    first = ctx["compactions"][0]
    assert f"summarize   messages {first['from']}–{first['to']}" in text
