"""A real `tether run` child is SIGKILLed at distinct points; `tether resume` finishes it.

After the resume, every completed step ran exactly once, the step in flight ran
again with the same idempotency key, and the final output and message history are
exactly those of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tether.models.scripted import ScriptedModel, reply_index
from tether.testing import StandInModelServer
from tether.types import ModelRequest

HERE = Path(__file__).parent
SPEC = f"{HERE / 'killpoint_workload.py'}:runtime"
SCRIPT = [*(ScriptedModel.call("effect", n=n) for n in (1, 2, 3, 4)), "done"]


class BlockingScript:
    """Answers like ScriptedModel(SCRIPT); in `model` mode the third model call of the
    killed run hangs (a slow reply) until the test has killed the child."""

    def __init__(self) -> None:
        self.block_index: int | None = None
        self.in_flight = threading.Event()
        self.release = threading.Event()
        self._model = ScriptedModel(SCRIPT)

    def __call__(self, request: ModelRequest) -> Any:
        if self.block_index is not None and reply_index(request.messages) == self.block_index:
            self.block_index = None
            self.in_flight.set()
            self.release.wait(60)
        return self._model._choose(request)


@pytest.fixture
def server() -> Iterator[tuple[StandInModelServer, BlockingScript]]:
    script = BlockingScript()
    with StandInModelServer(script) as srv:
        yield srv, script
    script.release.set()


def tether(args: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tether", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def ledger(folder: Path) -> list[dict[str, Any]]:
    path = folder / "ledger.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def wait_until(cond: Callable[[], bool], child: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if child.poll() is not None:
            _, err = child.communicate()
            raise AssertionError(f"child exited {child.returncode} before the kill point:\n{err}")
        time.sleep(0.01)
    raise AssertionError("the kill point was never reached")


def history(db: Path, task_id: str) -> list[tuple[Any, ...]]:
    """The session's messages, with the task id written as <task> so runs compare."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT seq, payload FROM messages ORDER BY session_id, seq").fetchall()
    out = []
    ids: dict[str, str] = {}

    def norm(call_id: str | None) -> str | None:
        # ScriptedModel's call ids hash the conversation, which holds the task id.
        return None if call_id is None else ids.setdefault(call_id, f"call-{len(ids)}")

    for seq, payload in rows:
        m = json.loads(payload)
        m = m.get("message", m)
        calls = tuple((norm(c["id"]), c["name"], c["arguments"]) for c in m.get("tool_calls") or ())
        content = (m.get("content") or "").replace(task_id, "<task>")
        out.append((seq, m["role"], content, calls, norm(m.get("tool_call_id"))))
    return out


def base_env(folder: Path, url: str, mode: str) -> dict[str, str]:
    return {
        **os.environ,
        "KILL_DIR": str(folder),
        "KILL_MODE": mode,
        "TETHER_TEST_MODEL_URL": url,
        "TETHER_WORKER_ID": "killpoint-host:run",
    }


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("baseline")
    db = folder / "t.db"
    with StandInModelServer(ScriptedModel(SCRIPT).reply) as srv:
        child = tether(
            ["run", SPEC, "record", "--store", f"sqlite:///{db}"],
            base_env(folder, srv.base_url, "none"),
        )
        out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    task_id = next(line.split()[1] for line in err.splitlines() if line.startswith("task "))
    return {"output": out.strip(), "history": history(db, task_id), "ledger": ledger(folder)}


@pytest.mark.parametrize("mode", ["model", "tool", "after_tool", "after_commit"])
def test_kill_and_resume(
    mode: str,
    tmp_path: Path,
    server: tuple[StandInModelServer, BlockingScript],
    baseline: dict[str, Any],
) -> None:
    srv, script = server
    db = tmp_path / "t.db"
    store = f"sqlite:///{db}"
    env = base_env(tmp_path, srv.base_url, mode)
    if mode == "model":
        script.block_index = 2  # the third model call (after effect 1 and 2)

    child = tether(["run", SPEC, "record", "--store", store], env)
    lock: sqlite3.Connection | None = None
    if mode == "model":
        wait_until(script.in_flight.is_set, child)
    elif mode == "tool":
        wait_until(lambda: any(e.get("n") == 3 for e in ledger(tmp_path)), child)
    elif mode == "after_tool":
        wait_until(lambda: any(e["phase"] == "returning" for e in ledger(tmp_path)), child)
        lock = sqlite3.connect(db, timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # the child's commit of step 5 now waits on this lock
        (tmp_path / "lock-held").touch()
        time.sleep(0.5)
    elif mode == "after_commit":
        wait_until(lambda: any(e["phase"] == "committed" for e in ledger(tmp_path)), child)
    child.send_signal(signal.SIGKILL)
    _, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    task_id = next(line.split()[1] for line in err.splitlines() if line.startswith("task "))
    if lock is not None:
        lock.execute("ROLLBACK")
        lock.close()
    script.release.set()

    with sqlite3.connect(db) as conn:
        committed = conn.execute("SELECT idx FROM steps WHERE task_id = ?", (task_id,)).fetchall()
    committed_steps = {row[0] for row in committed}
    requests_before = srv.count

    resume_env = {**env, "KILL_MODE": "none"}
    resumed = tether(["resume", task_id, "--store", store], resume_env)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert out.strip() == baseline["output"] == "done"
    assert history(db, task_id) == baseline["history"]

    # Tool steps are 1, 3, 5, 7 (n = 1..4). Each ran once, except the one in flight.
    starts = Counter(e["key"] for e in ledger(tmp_path) if e["phase"] == "start")
    keys = sorted(starts, key=lambda k: int(k.split(":")[1]))
    assert [int(k.split(":")[1]) for k in keys] == [1, 3, 5, 7]
    assert all(k.startswith(task_id + ":") for k in keys)
    for key, count in starts.items():
        step = int(key.split(":")[1])
        if step in committed_steps:
            assert count == 1, f"completed step {step} ran {count} times"
        else:
            assert count <= 2, f"step {step} ran {count} times"
    rerun = [k for k, n in starts.items() if n == 2]
    expected_rerun = {"tool": 5, "after_tool": 5}.get(mode)
    if expected_rerun is None:
        assert rerun == []
    else:
        assert rerun == [f"{task_id}:{expected_rerun}"]

    # Model calls: the resumed run asks only for the steps the journal did not have.
    model_steps = {0, 2, 4, 6, 8}
    missing_model_steps = len(model_steps - committed_steps)
    assert srv.count - requests_before == missing_model_steps
    if mode == "after_commit":
        assert 5 in committed_steps and 6 not in committed_steps
    if mode == "after_tool":
        assert 5 not in committed_steps and 4 in committed_steps
    if mode == "model":
        assert committed_steps == {0, 1, 2, 3}
