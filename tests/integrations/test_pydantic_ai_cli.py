"""``tether run`` on the Pydantic AI example, as a user types it: a real CLI process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from store_view import call_with_store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "examples/pydantic_ai_support.py:agent"


def tether(*args: str, store: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("TETHER_STORE", "TETHER_PYDANTIC_AI_MODEL")
    }
    return subprocess.run(
        [sys.executable, "-m", "tether", *args, "--store", store],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tether_run_a_pydantic_ai_agent_then_continue_its_session(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'tether.db'}"
    first = tether("run", EXAMPLE, "Where is my order A-1042?", "--json", store=store)
    assert first.returncode == 0, first.stderr
    task = json.loads(first.stdout)
    assert task["status"] == "completed"
    assert task["output"] == {
        "category": "order",
        "reply": "order A-1042: shipped on Monday, arriving Thursday (looked up in step 1)",
        "escalate": False,
        "order_id": "A-1042",
    }
    assert f"task {task['id']}" in first.stderr

    steps = call_with_store(store, lambda s: s.load_journal(task["id"]))
    assert [(s.kind, s.name) for s in steps][:3] == [
        ("model", "support-triage"),
        ("tool", "lookup_order"),
        ("model", "support-triage"),
    ]

    second = tether(
        "run", EXAMPLE, "I was charged twice", "--session", task["session_id"], "--json",
        store=store,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["output"]["category"] == "billing"

    session = tether("sessions", "show", task["session_id"], "--json", store=store)
    messages = json.loads(session.stdout)["messages"]
    assert [(m["role"], m["content"]) for m in messages if m["role"] == "user"] == [
        ("user", "Where is my order A-1042?"),
        ("user", "I was charged twice"),
    ]
    calls = [c["name"] for m in messages for c in m.get("tool_calls", ())]
    assert calls == ["lookup_order", "final_result", "final_result"]
