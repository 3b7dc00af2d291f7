"""What the crash tests share: their own view of the store, the model server's record
of requests, worker processes and the cluster that starts them.

A module of its own, not the ``conftest``, so that test files import it by a name no
other test folder uses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import workload

from tether import types
from tether.store import Store
from tether.testing import StandInModelServer
from tether.types import ModelRequest

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = f"{Path(workload.__file__).resolve()}:chaos"


# ---- the model server ----------------------------------------------------------


@dataclass
class ModelLog:
    """Every request the stand-in model answered, with the time it arrived."""

    seen: list[tuple[float, ModelRequest]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: ModelRequest) -> Any:
        with self.lock:
            self.seen.append((time.time(), request))
        return workload.script(request)

    def requests(self) -> list[tuple[float, ModelRequest]]:
        with self.lock:
            return list(self.seen)


@dataclass
class Model:
    server: StandInModelServer
    log: ModelLog


# ---- worker processes ------------------------------------------------------------


@dataclass
class WorkerProcess:
    worker_id: str
    proc: subprocess.Popen[bytes]
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


class Cluster:
    """Starts ``tether worker`` processes on one store; kills what is left at the end."""

    def __init__(self, tmp_path: Path, store_url: str, model: Model) -> None:
        self.tmp_path = tmp_path
        self.store_url = store_url
        self.model = model
        self.effects = tmp_path / "effects.db"
        self.started: list[WorkerProcess] = []
        self._count = 0
        with workload.effects_db(self.effects):
            pass

    def start(
        self,
        worker_id: str,
        *,
        lease_ttl: float = 1.5,
        grace: float = 10.0,
        concurrency: int = 4,
        heartbeat: float | None = None,
        spec: str = WORKLOAD,
        extra: tuple[str, ...] = (),
    ) -> WorkerProcess:
        self._count += 1
        stderr_path = self.tmp_path / f"worker-{self._count}-{worker_id}.log"
        env = dict(os.environ)
        env.update(
            TETHER_TEST_MODEL_URL=self.model.server.base_url,
            TETHER_TEST_EFFECTS=str(self.effects),
            TETHER_TEST_WORKER=worker_id,
            PYTHONUNBUFFERED="1",
        )
        env.pop("TETHER_STORE", None)
        command = [
            sys.executable, "-m", "tether", "worker", spec,
            "--store", self.store_url,
            "--worker-id", worker_id,
            "--lease-ttl", str(lease_ttl),
            "--grace", str(grace),
            "--concurrency", str(concurrency),
            "--poll", "0.05",
        ]  # fmt: skip
        if heartbeat is not None:
            command += ["--heartbeat", str(heartbeat)]
        command += extra
        with stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err
            )
        started = WorkerProcess(worker_id, proc, stderr_path)
        self.started.append(started)
        return started

    def wait_ready(self, worker: WorkerProcess, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while "ready" not in worker.stderr():
            assert worker.alive(), f"worker {worker.worker_id} died:\n{worker.stderr()}"
            assert time.monotonic() < deadline, f"worker {worker.worker_id} never got ready"
            time.sleep(0.05)

    def stop_all(self) -> None:
        for w in self.started:
            if w.alive():
                w.signal(signal.SIGCONT)
                w.signal(signal.SIGKILL)
                w.wait()


# ---- the workload's tasks --------------------------------------------------------


async def submit_task(
    store: Store, *, tenant: str, session_id: str, tag: str, j: int, calls: int, pause: float
) -> types.TaskRecord:
    return await store.submit_task(
        types.NewTask(
            tenant=tenant,
            agent="chaos",
            input=workload.task_input(tag, j, calls, pause),
            session_id=session_id,
        )
    )
