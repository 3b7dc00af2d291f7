"""``tether run file.py:agent`` on an Agents SDK agent, and what ``tether sessions
show`` tells of it: the conversation's messages and the session's tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import oa_support
import pytest
from oa_support import AGENTS, ROOT

from store_view import call_with_store
from tether.testing import StandInModelServer

oa_server = pytest.fixture(name="oa_server")(oa_support.serve_script)


def tether(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_tether_run_an_agent_with_a_handoff_and_show_it(
    tmp_path: Path, oa_server: StandInModelServer
) -> None:
    store = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "TETHER_TEST_MODEL_URL": oa_server.base_url}
    ran = tether("run", f"{AGENTS}:triage", "I was charged twice", "--store", store, env=env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "refunded 5"
    task_id = next(line.split()[1] for line in ran.stderr.splitlines() if line.startswith("task "))

    steps = call_with_store(store, lambda s: s.load_journal(task_id))
    assert [(s.kind, s.name) for s in steps] == [
        ("model", "stand-in"),
        ("model", "stand-in"),
        ("tool", "refund"),
        ("model", "stand-in"),
        ("custom", "openai_agents.turn"),
    ]
    task = call_with_store(store, lambda s: s.get_task(task_id))
    assert (task.status, task.agent, task.output) == ("completed", "triage", "refunded 5")

    session = tether("sessions", "show", task.session_id, "--json", "--store", store, env=env)
    assert session.returncode == 0, session.stderr
    data = json.loads(session.stdout)
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("user", "I was charged twice"),
        ("assistant", None),
        ("tool", '{"assistant": "billing"}'),
        ("assistant", None),
        ("tool", "refunded 5"),
        ("assistant", "refunded 5"),
    ]
    assert [c["name"] for m in data["messages"] for c in m.get("tool_calls", [])] == [
        "transfer_to_billing",
        "refund",
    ]
    context = data["context"]
    assert context["tokens"] > 0 and context["reported_tokens"] == context["tokens"]
    assert (context["limit"], context["window"]) == (128_000 - 4_096, 128_000)
