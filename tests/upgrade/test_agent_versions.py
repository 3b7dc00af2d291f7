"""A task started by one release of an agent and resumed by the next, with real workers.

A ``tether worker`` running ``agents_v1.py`` is SIGKILLed inside the task's second
tool call; a worker of "release 2" restarts under the same worker id (a rolling
upgrade on one host) and takes the task back:

- release 2 kept the steps (``agents_v2_same_steps.py``): the journal replays and
  the task finishes, no completed tool call running again;
- release 2 changed the steps in place (``agents_v2_changed_steps.py``): the task
  fails at once with ``NonDeterminismError`` naming the step, the worker keeps serving;
- release 2 versioned the agent (``agents_v2_versioned.py``, docs/upgrading.md): the
  old task finishes on ``triage`` as recorded, a new one runs on ``triage-v2``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from upgrade_support import with_store

from tether import errors, types

HERE = Path(__file__).resolve().parent
WORKER_ID = "rolling-host:1"


def _spec(module: str, name: str = "triage") -> str:
    return f"{HERE / module}:{name}"


def _env(tmp_path: Path, *, stall: int | None = None) -> dict[str, str]:
    env = {**os.environ, "TETHER_VERSIONS_EFFECTS": str(tmp_path / "effects.jsonl")}
    if stall is not None:
        env["TETHER_VERSIONS_STALL"] = str(stall)
        env["TETHER_VERSIONS_STALL_MARK"] = str(tmp_path / "stalled")
    return env


def _submit(url: str, spec: str, text: str, tmp_path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tether", "submit", spec, text, "--store", url],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(tmp_path),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split()[-1]


@contextmanager
def _worker(url: str, specs: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A ``tether worker`` subprocess; its log goes to ``worker-<pid>.log`` beside the effects."""
    log = Path(env["TETHER_VERSIONS_EFFECTS"]).with_name(f"worker-{time.monotonic_ns()}.log")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tether", "worker", *specs, "--store", url,
             "--worker-id", WORKER_ID, "--poll", "0.05", "--lease-ttl", "30",
             "--concurrency", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            text=True,
        )  # fmt: skip
        proc.args = [*proc.args, str(log)]  # where its log is, for failure messages
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _log(proc: subprocess.Popen[str]) -> str:
    return Path(proc.args[-1]).read_text()[-3000:]  # type: ignore[index]


def _start_on_v1_and_kill(url: str, tmp_path: Path) -> str:
    """Submit ``count to 3`` to release 1, and SIGKILL its worker inside ``record(n=1)``."""
    task_id = _submit(url, _spec("agents_v1.py"), "count to 3", tmp_path)
    mark = tmp_path / "stalled"
    with _worker(url, [_spec("agents_v1.py")], _env(tmp_path, stall=1)) as proc:
        deadline = time.monotonic() + 120
        while not mark.exists():
            assert proc.poll() is None, _log(proc)
            assert time.monotonic() < deadline, "release 1 never reached its second tool call"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    journal = with_store(url, lambda s: s.load_journal(task_id))
    assert [(s.index, s.kind) for s in journal] == [(0, "model"), (1, "tool"), (2, "model")]
    return task_id


def _finish(url: str, task_ids: list[str], proc: subprocess.Popen[str]) -> list[types.TaskRecord]:
    """Wait until the tasks are final, then drain the worker (SIGTERM: exit 0)."""
    deadline = time.monotonic() + 120
    while True:
        tasks = [with_store(url, lambda s, t=t: s.get_task(t)) for t in task_ids]
        if all(t.status in types.FINAL_STATUSES for t in tasks):
            break
        assert proc.poll() is None, (
            f"the worker exited: {proc.stderr.read() if proc.stderr else ''}"
        )
        assert time.monotonic() < deadline, f"not finished: {[(t.id, t.status) for t in tasks]}"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, _log(proc)
    return tasks


def _effects(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "effects.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_release_that_keeps_the_steps_finishes_the_old_task(
    empty_store_url: str, tmp_path: Path
) -> None:
    url = empty_store_url
    task_id = _start_on_v1_and_kill(url, tmp_path)
    with _worker(url, [_spec("agents_v2_same_steps.py")], _env(tmp_path)) as proc:
        [task] = _finish(url, [task_id], proc)
    assert (task.status, task.output) == ("completed", "counted to 3 (v2)")
    effects = _effects(tmp_path)
    assert [(e["key"], e["n"], e["version"]) for e in effects] == [
        (f"{task_id}:1", 0, "v1"),
        (f"{task_id}:3", 1, "v2"),
        (f"{task_id}:5", 2, "v2"),
    ]
    runs = with_store(url, lambda s: s.list_runs(task_id))
    assert [(r.reason, r.from_step) for r in runs] == [("start", 0), ("resume", 3)]


def test_a_release_that_changes_the_steps_fails_the_old_task_visibly(
    empty_store_url: str, tmp_path: Path
) -> None:
    url = empty_store_url
    task_id = _start_on_v1_and_kill(url, tmp_path)
    with _worker(url, [_spec("agents_v2_changed_steps.py")], _env(tmp_path)) as proc:
        [task] = _finish(url, [task_id], proc)
    assert task.status == "failed" and task.error is not None
    assert task.error["error_class"] == errors.NonDeterminismError().error_class
    assert task.error["type"] == "agent" and task.error["retryable"] is False
    message = task.error["message"]
    assert "replay diverged at step 0" in message and task_id in message
    assert "version the agent" in message
    assert Counter(e["key"] for e in _effects(tmp_path)) == {f"{task_id}:1": 1}
    journal = with_store(url, lambda s: s.load_journal(task_id))
    assert len(journal) == 3  # nothing was overwritten or restarted


def test_a_versioned_agent_lets_old_tasks_finish_and_new_ones_change(
    empty_store_url: str, tmp_path: Path
) -> None:
    url = empty_store_url
    old = _start_on_v1_and_kill(url, tmp_path)
    specs = [_spec("agents_v2_versioned.py"), _spec("agents_v2_versioned.py", "triage_v2")]
    new = _submit(url, specs[1], "count to 2", tmp_path)
    with _worker(url, specs, _env(tmp_path)) as proc:
        old_task, new_task = _finish(url, [old, new], proc)
    assert (old_task.agent, old_task.status, old_task.output) == (
        "triage",
        "completed",
        "counted to 3 (v1)",
    )
    assert (new_task.agent, new_task.status, new_task.output) == (
        "triage-v2",
        "completed",
        "counted to 2 (v2)",
    )
    by_task = Counter((e["key"].split(":")[0], e["version"]) for e in _effects(tmp_path))
    assert by_task == {(old, "v1"): 3, (new, "v2"): 2}
