"""Real ``tether worker`` processes running the graphs of ``langgraph_graphs``, and the
test's own reads of what they left in the store (tasks, events, checkpoint chains)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import langgraph_graphs

from store_view import call_with_store
from tether import types
from tether.integrations.langgraph import TetherSaver
from tether.store import Store
from tether.store.sqlite_connection import parse_url

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
GRAPHS = str(Path(langgraph_graphs.__file__).resolve())


def spec(name: str) -> str:
    return f"{GRAPHS}:{name}"


def env_for(graph_dir: Path, worker_id: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TETHER_TEST_GRAPH_DIR=str(graph_dir),
        TETHER_TEST_WORKER=worker_id,
        TETHER_WORKER_ID=worker_id,
        PYTHONUNBUFFERED="1",
    )
    env.pop("TETHER_STORE", None)
    return env


@dataclass
class Worker:
    worker_id: str
    proc: subprocess.Popen[bytes]
    log: Path

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def stop_between_writes(self, url: str, tries: int = 50) -> None:
        """SIGSTOP the worker outside a SQLite write transaction. An idle slot's claim
        poll is a ``BEGIN IMMEDIATE`` write: stopped inside one, the worker would hold
        the file's write lock for as long as it stays stopped, and nobody else could
        write. So check that the lock is free, and if not let it run on a moment and
        stop it again. (On PostgreSQL a stopped transaction locks only its rows.)"""
        if not url.startswith("sqlite:"):
            self.signal(signal.SIGSTOP)
            return
        path, _ = parse_url(url)
        for _ in range(tries):
            self.signal(signal.SIGSTOP)
            probe = sqlite3.connect(path, timeout=0.5, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
                return
            except sqlite3.OperationalError:
                self.signal(signal.SIGCONT)
                time.sleep(0.02)
            finally:
                probe.close()
        raise AssertionError(f"worker {self.worker_id} held the store's write lock {tries} times")

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Workers:
    """Starts workers on one store; SIGCONT+SIGKILLs whatever is left at the end."""

    tmp_path: Path
    url: str
    started: list[Worker] = field(default_factory=list)

    def start(
        self,
        worker_id: str,
        graph: str = "fanout",
        *,
        lease_ttl: float = 1.5,
        heartbeat: float | None = None,
        concurrency: int = 4,
        grace: float | None = None,
    ) -> Worker:
        log = self.tmp_path / f"worker-{len(self.started)}-{worker_id}.log"
        command = [
            sys.executable, "-m", "tether", "worker", spec(graph),
            "--store", self.url,
            "--worker-id", worker_id,
            "--lease-ttl", str(lease_ttl),
            "--concurrency", str(concurrency),
            "--poll", "0.05",
        ]  # fmt: skip
        if heartbeat is not None:
            command += ["--heartbeat", str(heartbeat)]
        if grace is not None:
            command += ["--grace", str(grace)]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env_for(self.tmp_path, worker_id),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        worker = Worker(worker_id, proc, log)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for w in self.started:
            if w.proc.poll() is None:
                w.signal(signal.SIGCONT)
                w.signal(signal.SIGKILL)
                w.proc.wait(timeout=30)


def wait_until(check: Callable[[], T], what: str, timeout: float = 90.0, every: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy (a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def call(url: str, fn: Callable[[Store], Awaitable[T]]) -> T:
    return call_with_store(url, fn)


def submit(url: str, graph: str, text: str, session: str | None = None) -> types.TaskRecord:
    return call(
        url,
        lambda s: s.submit_task(
            types.NewTask(tenant="acme", agent=graph, input=text, session_id=session)
        ),
    )


def checkpoints(url: str, thread_id: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    """The thread's checkpoints, newest first: (id, parent id, metadata)."""
    with TetherSaver(url) as saver:
        return [
            (
                t.config["configurable"]["checkpoint_id"],
                t.parent_config["configurable"]["checkpoint_id"] if t.parent_config else None,
                dict(t.metadata),
            )
            for t in saver.list({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
        ]


def snapshot(url: str, thread_id: str) -> list[tuple[str, str | None, int]]:
    """What a stale writer must not change: each checkpoint with its pending writes."""
    with TetherSaver(url) as saver:
        return [
            (
                t.config["configurable"]["checkpoint_id"],
                t.parent_config["configurable"]["checkpoint_id"] if t.parent_config else None,
                len(t.pending_writes or []),
            )
            for t in saver.list({"configurable": {"thread_id": thread_id}})
        ]


def assert_one_chain(url: str, thread_id: str) -> int:
    """Every checkpoint but the first has a parent in the thread, and no two share one:
    the checkpoints form a single chain (no fork). Returns its length."""
    found = checkpoints(url, thread_id)
    ids = {cid for cid, _, _ in found}
    parents = [parent for _, parent, _ in found]
    roots = [cid for cid, parent, _ in found if parent is None]
    assert len(roots) == 1, f"thread {thread_id} has {len(roots)} roots: {found}"
    assert all(p in ids for p in parents if p is not None), f"dangling parent in {found}"
    children = [p for p in parents if p is not None]
    assert len(children) == len(set(children)), f"thread {thread_id} forked: {found}"
    return len(found)


def pending_write_of(url: str, thread_id: str, channel: str, value: Any) -> bool:
    with TetherSaver(url) as saver:
        latest = saver.get_tuple({"configurable": {"thread_id": thread_id}})
    return latest is not None and any(
        ch == channel and v == value for _, ch, v in latest.pending_writes or []
    )
