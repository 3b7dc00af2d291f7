"""Pydantic AI agents under real ``tether worker`` processes, killed and stopped mid-tool.

The workers run ``pai_workload.py:agent``; its ``record`` tool writes an effects ledger
keyed by tether's idempotency key and blocks, after its effect, on a flag file the test
controls, so the test knows a worker is inside a tool when it signals it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pai_workload
import pytest

from store_view import call_with_store
from tether import types
from tether.runtime import Runtime
from waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
SPEC = f"{Path(pai_workload.__file__).resolve()}:agent"
EXPECTED = "counted: recorded 1, recorded 2, recorded 3"


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


class Workers:
    """Starts ``tether worker`` processes on one store; kills what is left at the end."""

    def __init__(self, tmp_path: Path, store_url: str) -> None:
        self.dir = tmp_path / "effects"
        self.dir.mkdir()
        self.store_url = store_url
        self.started: list[Worker] = []

    def start(self, name: str, *, grace: float = 10.0, **env: str) -> Worker:
        log = self.dir.parent / f"worker-{name}.log"
        environ = {**os.environ, "TETHER_PAI_DIR": str(self.dir), "PYTHONUNBUFFERED": "1", **env}
        environ.pop("TETHER_STORE", None)
        command = [
            sys.executable, "-m", "tether", "worker", SPEC,
            "--store", self.store_url, "--worker-id", name,
            "--lease-ttl", "1.5", "--grace", str(grace), "--poll", "0.05",
        ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=out, stderr=out)
        worker = Worker(name, proc, log)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for w in self.started:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()

    def submit(self, text: str) -> types.TaskRecord:
        new = types.NewTask(tenant="acme", agent="pai_counter", input=text)
        return call_with_store(self.store_url, lambda s: s.submit_task(new))

    def task(self, task_id: str) -> types.TaskRecord:
        return call_with_store(self.store_url, lambda s: s.get_task(task_id))

    def finished(self, task_id: str) -> types.TaskRecord | None:
        task = self.task(task_id)
        return task if task.status in types.FINAL_STATUSES else None

    def starts(self) -> list[tuple[str, int, int]]:
        """Every execution of ``record``: (idempotency key, n, pid)."""
        path = self.dir / "starts.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [(k, int(n), int(pid)) for k, n, pid in (line.split() for line in lines)]

    def effects(self) -> list[str]:
        path = self.dir / "effects.log"
        return path.read_text().splitlines() if path.exists() else []

    def block_at(self, n: int | str) -> None:
        (self.dir / "block").write_text(str(n))

    def model_calls(self) -> list[tuple[int, int]]:
        """Every model turn that blocked: (turn, pid)."""
        path = self.dir / "model.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [(int(t), int(pid)) for t, pid in (line.split() for line in lines)]

    def release(self) -> None:
        (self.dir / "release").write_text("go")


def _blocked(workers: Workers, count: int) -> list[tuple[str, int, int]] | None:
    inside = [s for s in workers.starts() if s[1] == 2]
    return inside if len(inside) >= count else None


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'tether.db'}"
    call_with_store(url, lambda s: s.schema_version())
    return url


def _workers(tmp_path: Path, url: str) -> Iterator[Workers]:
    w = Workers(tmp_path, url)
    try:
        yield w
    finally:
        w.stop_all()


@pytest.fixture
def on_sqlite(tmp_path: Path, sqlite_url: str) -> Iterator[Workers]:
    yield from _workers(tmp_path, sqlite_url)


@pytest.fixture
def on_postgres(tmp_path: Path, pg_url: str) -> Iterator[Workers]:
    call_with_store(pg_url, lambda s: s.schema_version())
    yield from _workers(tmp_path, pg_url)


def _uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, list[str]]:
    """The same task run straight through in this process: its output and messages."""
    alone = tmp_path / "alone"
    alone.mkdir()
    monkeypatch.setenv("TETHER_PAI_DIR", str(alone))
    rt = Runtime(store=f"sqlite:///{alone / 'tether.db'}")
    try:
        rt.register(pai_workload.agent)
        task = rt.submit(agent="pai_counter", input="count to 3", tenant="acme", session=None)
        done = rt.run(task.id)
        messages = rt.run_on_store(lambda s: s.list_messages(task.session_id))
    finally:
        rt.close()
    return done.output, _readable(messages)


def _readable(messages: list[types.StoredMessage]) -> list[str]:
    """Roles and contents, without the idempotency keys (they name the task)."""
    return [f"{m.message.role}:{(m.message.content or '').split(' key ')[0]}" for m in messages]


def test_sigkill_mid_tool_two_workers_on_postgres_resume_with_the_same_key(
    on_postgres: Workers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers = on_postgres
    workers.block_at(2)
    tasks = [workers.submit("count to 3") for _ in range(3)]
    a, b = workers.start("a"), workers.start("b")
    inside = wait_until(
        lambda: _blocked(workers, 3), what="every task inside record(2)", timeout=60
    )
    victim = a if any(pid == a.proc.pid for _, _, pid in inside) else b
    survivor = b if victim is a else a
    in_flight = {key for key, _, pid in inside if pid == victim.proc.pid}
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    workers.release()

    done = [
        wait_until(lambda t=t: workers.finished(t.id), what="task done", timeout=60) for t in tasks
    ]
    want_output, want_messages = _uninterrupted(tmp_path, monkeypatch)
    assert want_output == EXPECTED
    for task in done:
        assert task.status == "completed", task.error
        assert task.output == want_output
        messages = call_with_store(
            workers.store_url, lambda s, t=task: s.list_messages(t.session_id)
        )
        assert _readable(messages) == want_messages

    # Each side effect once per key. A step ran again only where a new run of its task
    # began at it: the killed worker's in-flight tool (and, should a loaded machine let
    # a live worker's lease lapse, that task's step in flight), always with the same key.
    effects = workers.effects()
    assert len(effects) == len(set(effects)) == 9
    expected: Counter[str] = Counter()
    for task in done:
        history = call_with_store(workers.store_url, lambda s, t=task: s.list_runs(t.id))
        expected.update(f"{task.id}:{i}" for i in (1, 3, 5))
        expected.update(f"{task.id}:{r.from_step}" for r in history[1:])
        journal = call_with_store(workers.store_url, lambda s, t=task: s.load_journal(t.id))
        assert [s.kind for s in journal] == ["model", "tool"] * 3 + ["model"]
    assert Counter(key for key, _, _ in workers.starts()) == expected
    for key in in_flight:
        pids = [pid for k, _, pid in workers.starts() if k == key]
        assert pids[:2] == [victim.proc.pid, survivor.proc.pid]
        task_id = key.split(":")[0]
        events = call_with_store(workers.store_url, lambda s, t=task_id: s.list_events(t))
        recovered = [e.data for e in events if e.name == "task.recovered"]
        assert ("recovery", 3) in [(r["reason"], r["from_step"]) for r in recovered]


def test_sigkill_mid_model_call_the_restarted_worker_takes_its_task_back(
    on_sqlite: Workers,
) -> None:
    workers = on_sqlite
    workers.block_at("model:2")
    task = workers.submit("count to 3")
    first = workers.start("same")
    wait_until(workers.model_calls, what="the model's second turn to start", timeout=60)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    workers.release()
    again = workers.start("same")  # the same worker id: it takes its lease back at once
    done = wait_until(lambda: workers.finished(task.id), what="task done", timeout=60)
    assert done.status == "completed" and done.output == EXPECTED
    runs = call_with_store(workers.store_url, lambda s: s.list_runs(task.id))
    assert [r.from_step for r in runs][:2] == [0, 2]  # the model step in flight ran again
    assert [pid for _, pid in workers.model_calls()][:2] == [first.proc.pid, again.proc.pid]
    effects = workers.effects()
    assert [line.split()[0] for line in effects] == [f"{task.id}:{i}" for i in (1, 3, 5)]
    assert len(workers.starts()) == 3  # no tool ran twice


def test_sigterm_mid_tool_drains_and_another_worker_finishes(on_sqlite: Workers) -> None:
    workers = on_sqlite
    workers.block_at(2)
    task = workers.submit("count to 3")
    first = workers.start("first", grace=0.5)
    inside = wait_until(lambda: _blocked(workers, 1), what="the task inside record(2)", timeout=60)
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=30) == 0, first.stderr()
    assert workers.task(task.id).status != "completed"
    workers.release()
    workers.start("second")
    done = wait_until(lambda: workers.finished(task.id), what="task done", timeout=60)
    assert done.status == "completed" and done.output == EXPECTED
    runs = call_with_store(workers.store_url, lambda s: s.list_runs(task.id))
    assert [(r.reason, r.from_step) for r in runs][:2] == [("start", 0), ("handover", 3)]
    key = inside[0][0]
    assert key == f"{task.id}:3"
    # run again once for the handover (and once more per run a loaded machine might add)
    again = sum(1 for r in runs[1:] if r.from_step == 3)
    assert [s[0] for s in workers.starts()].count(key) == 1 + again
    assert workers.effects().count(f"{key} 2") == 1


def test_a_replay_whose_inputs_differ_is_a_nondeterminism_error(on_sqlite: Workers) -> None:
    workers = on_sqlite
    workers.block_at(2)
    task = workers.submit("count to 3")
    first = workers.start("first")
    wait_until(lambda: _blocked(workers, 1), what="the task inside record(2)", timeout=60)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    workers.release()
    workers.start("changed", TETHER_PAI_VARIANT="changed")
    done = wait_until(lambda: workers.finished(task.id), what="task done", timeout=60)
    assert done.status == "failed"
    assert done.error is not None
    assert done.error["error_class"] == "NonDeterminism"
    assert "replay diverged at step 0" in done.error["message"]
    assert "'counter-model'" in done.error["message"]
    assert "twice as carefully" in done.error["message"]  # what the step was asked now
