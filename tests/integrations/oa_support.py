"""What the Agents SDK tests share: the stand-in model server, worker processes
running ``oa_agents`` agents, and what the tests read back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import oa_agents
import pytest

from store_view import call_with_store
from tether import types
from tether.store import Store
from tether.testing import StandInModelServer
from waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
AGENTS = Path(oa_agents.__file__).resolve()


def serve_script(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInModelServer]:
    """The stand-in server answering ``oa_agents.script``; its URL in the environment
    that ``oa_agents.build()`` and worker processes read. Each test module makes it
    its ``oa_server`` fixture (no conftest: the folder is shared with other
    frameworks' tests)."""
    with StandInModelServer(oa_agents.script) as server:
        monkeypatch.setenv("TETHER_TEST_MODEL_URL", server.base_url)
        yield server


@dataclass
class Files:
    """The files the tools write and the test controls."""

    root: Path

    @property
    def effects(self) -> Path:
        return self.root / "effects.jsonl"

    @property
    def marks(self) -> Path:
        return self.root / "marks.txt"

    @property
    def gate(self) -> Path:
        return self.root / "gate"

    def env(self, model_url: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TETHER_TEST_MODEL_URL=model_url,
            TETHER_TEST_EFFECTS=str(self.effects),
            TETHER_TEST_MARKS=str(self.marks),
            TETHER_TEST_GATE=str(self.gate),
            PYTHONUNBUFFERED="1",
        )
        env.pop("TETHER_STORE", None)
        return env

    def read_marks(self) -> list[str]:
        return self.marks.read_text().splitlines() if self.marks.exists() else []


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def stop(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def start_worker(
    files: Files,
    model_url: str,
    store_url: str,
    worker_id: str,
    agent: str = "counter",
    *,
    lease_ttl: float = 1.5,
    grace: float = 10.0,
) -> Worker:
    log = files.root / f"worker-{worker_id}.log"
    command = [
        sys.executable, "-m", "tether", "worker", f"{AGENTS}:{agent}",
        "--store", store_url, "--worker-id", worker_id, "--lease-ttl", str(lease_ttl),
        "--grace", str(grace), "--concurrency", "4", "--poll", "0.05",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=files.env(model_url),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    return Worker(proc, log)


def submit(store_url: str, agent: str, text: str, session: str | None = None) -> types.TaskRecord:
    return call_with_store(
        store_url,
        lambda s: s.submit_task(
            types.NewTask(tenant="default", agent=agent, input=text, session_id=session)
        ),
    )


def finished(store_url: str, task_id: str, timeout: float = 90.0) -> types.TaskRecord:
    def done() -> types.TaskRecord | None:
        task = call_with_store(store_url, lambda s: s.get_task(task_id))
        return task if task.status in types.FINAL_STATUSES else None

    return wait_until(done, what=f"task {task_id} to finish", timeout=timeout)


def journal(store_url: str, task_id: str) -> list[types.StepRecord]:
    return call_with_store(store_url, lambda s: s.load_journal(task_id))


def events(store_url: str, task_id: str) -> list[types.EventRecord]:
    async def read(s: Store) -> list[types.EventRecord]:
        return await s.list_events(task_id, limit=100_000)

    return call_with_store(store_url, read)
