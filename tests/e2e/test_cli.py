"""The `tether` command as an operator uses it: real subprocesses, a real SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

AGENTS = Path(__file__).with_name("cli_agents.py")


def tether(*args: str, store: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", *args, "--store", store],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TETHER_WORKER_ID": "cli-test:run"},
    )


def test_run_prints_task_id_first_and_json_contract(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 't.db'}"
    done = tether("run", f"{AGENTS}:echo", "hello", "--tenant", "acme", store=store)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    first = done.stderr.splitlines()[0]
    assert first.startswith("task ")
    task_id = first.split()[1]
    assert "step   0" in done.stderr.splitlines()[1]

    listed = json.loads(tether("tasks", "list", "--json", store=store).stdout)
    assert isinstance(listed, list) and len(listed) == 1
    task = listed[0]
    assert {"id", "session_id", "tenant", "agent", "status", "output", "error"} <= set(task)
    assert (task["id"], task["tenant"], task["agent"], task["status"], task["output"]) == (
        task_id,
        "acme",
        "echo",
        "completed",
        "ok",
    )
    assert task["error"] is None

    shown = json.loads(tether("tasks", "show", task_id, "--json", store=store).stdout)
    assert [
        (s["index"], s["kind"], s["name"], s["status"], s["attempts"]) for s in shown["steps"]
    ] == [
        (0, "model", "scripted", "completed", 1),
        (1, "tool", "shout", "completed", 1),
        (2, "model", "scripted", "completed", 1),
        (3, "tool", "shout", "completed", 1),
        (4, "model", "scripted", "completed", 1),
    ]
    session = json.loads(
        tether("sessions", "show", task["session_id"], "--json", store=store).stdout
    )
    assert [m["role"] for m in session["messages"]] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert session["messages"][2]["content"] == "HI"

    other = json.loads(tether("tasks", "list", "--json", "--tenant", "other", store=store).stdout)
    assert other == []


def test_run_exits_nonzero_with_the_classified_error(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 't.db'}"
    done = tether("run", f"{AGENTS}:stubborn", "go", store=store)
    assert done.returncode == 1
    assert "agent/MaxStepsExceeded" in done.stderr
    task = json.loads(tether("tasks", "list", "--json", store=store).stdout)[0]
    assert task["status"] == "failed"
    assert task["error"]["type"] == "agent"
    assert task["error"]["error_class"] == "MaxStepsExceeded"
    assert task["error"]["retryable"] is False


def test_submit_then_resume_with_the_recorded_spec(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 't.db'}"
    submitted = tether("submit", f"{AGENTS}:echo", "hello", "--json", store=store)
    assert submitted.returncode == 0, submitted.stderr
    task = json.loads(submitted.stdout)
    assert task["status"] == "queued"
    resumed = tether("resume", task["id"], store=store)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "ok"
    again = tether("tasks", "show", task["id"], "--json", store=store)
    assert json.loads(again.stdout)["status"] == "completed"


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 't.db'}"
    assert tether("migrate", store=store).returncode == 0  # read-only commands need a store
    missing = tether("tasks", "show", "nope", store=store)
    assert missing.returncode == 2
    assert "nope" in missing.stderr
    bad_spec = tether("run", f"{tmp_path}/absent.py:agent", "go", store=store)
    assert bad_spec.returncode == 2
    assert "absent.py" in bad_spec.stderr
    bad_store = tether("tasks", "list", store="mysql://x")
    assert bad_store.returncode == 2
    assert "unknown store URL" in bad_store.stderr


def test_migrate_reports_version(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 't.db'}"
    absent = tether("migrate", "--dry-run", store=store)
    assert absent.returncode == 2 and "no SQLite store" in absent.stderr  # creates nothing
    assert not (tmp_path / "t.db").exists()
    (tmp_path / "t.db").touch()  # an empty file: a dry run shows what migrate would do
    dry = tether("migrate", "--dry-run", store=store)
    assert dry.returncode == 0, dry.stderr
    assert "would apply 0001_initial" in dry.stdout
    assert "schema version 0" in dry.stdout
    done = tether("migrate", store=store)
    assert done.returncode == 0, done.stderr
    assert "applied 0001_initial" in done.stdout
    again = tether("migrate", store=store)
    assert "nothing to do" in again.stdout
