"""Cut the release fixture of tether VERSION: stores written by this code, for upgrade tests.

    .venv/bin/python scripts/make_release_fixture.py 0.1.0
    .venv/bin/python scripts/make_release_fixture.py 0.2.0 --pg postgresql://postgres@127.0.0.1:5432/test

Writes ``tests/fixtures/stores/<VERSION>/`` (or ``--out``):

- ``store.sqlite``: a SQLite store (``VACUUM INTO``: one self-contained file);
- ``store.postgres.sql``: a plain ``pg_dump`` of a fresh PostgreSQL database holding the
  same workload (the database is created on the server named by ``--pg`` and dropped);
- ``effects.<engine>.jsonl``: every tool execution the workload made while cutting;
- ``manifest.json``: what is inside, per engine: every session (its messages, its
  context state, its memory), every task, the half-finished task (its journal and
  how to finish it) and a queued task.

The workload is ``tests/fixtures/stores/workload.py`` (stable across releases):
completed ``counter`` tasks in two tenants, a ``summarizer`` session whose summary
has folded older messages, a ``rememberer`` session whose older messages moved to
vector memory, a ``counter`` task run by a ``tether worker`` subprocess that is
SIGKILLed inside its third tool call (its journal ends mid-way, its lease expires),
and a queued ``summarizer`` task that no worker has started.

Run it from a clean checkout of the release, once, and commit the folder. Never
re-cut a released version's fixture: it must keep what that release wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "stores"))

import workload  # noqa: E402

from tether import types  # noqa: E402
from tether.runtime import Runtime  # noqa: E402
from tether.store import Store, migrations, open_store  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
TENANTS = ("acme", "globex")
HALF_FINISHED = "count to 4"
STALL_AT = 2
QUEUED = "count to 2"


def _completed(runtime: Runtime) -> None:
    """Sessions whose tasks all completed (summaries and memory included)."""
    plan = [
        ("counter", TENANTS[0], ["count to 2", "count to 3"]),
        ("counter", TENANTS[1], ["count to 1"]),
        ("summarizer", TENANTS[0], ["count to 2", "count to 3", "count to 2", "count to 3"]),
        ("rememberer", TENANTS[1], ["count to 2", "count to 3", "count to 2", "count to 3"]),
    ]
    for agent, tenant, inputs in plan:
        session: str | None = None
        for text in inputs:
            task = runtime.submit(agent, text, tenant=tenant, session=session)
            session = task.session_id
            result = runtime.run(task.id)
            if result.status != "completed":
                raise SystemExit(f"{agent} task {task.id} ended {result.status}: {result.error}")


def _half_finished(url: str, work: Path, effects: Path) -> tuple[str, str]:
    """Submit a counter task, start a worker, SIGKILL it inside tool call ``STALL_AT``."""
    with Runtime(store=url, worker_id="fixture-cut:submit") as runtime:
        runtime.register(workload.counter, spec=workload.SPECS["counter"])
        task = runtime.submit("counter", HALF_FINISHED, tenant=TENANTS[0])
    mark = work / "stalled"
    env = {
        **os.environ,
        workload.EFFECTS: str(effects),
        workload.STALL: str(STALL_AT),
        workload.STALL_MARK: str(mark),
    }
    log = (work / "worker.log").open("w")
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "tether", "worker", workload.SPECS["counter"],
            "--store", url, "--worker-id", "fixture-cut:worker", "--concurrency", "1",
            "--lease-ttl", "2", "--poll", "0.05",
        ],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not mark.exists():
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            raise SystemExit(f"the worker never reached the stall; see {work / 'worker.log'}")
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    log.close()
    return task.id, mark.read_text()


def _message(m: types.StoredMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"seq": m.seq, "task_id": m.task_id}
    out.update(m.message.to_dict())
    return out


async def _describe(store: Store) -> dict[str, Any]:
    sessions = []
    for s in sorted(await store.list_sessions(limit=1000), key=lambda s: s.created_at):
        messages = await store.list_messages(s.id)
        memory = await store.list_memory(s.id)
        sessions.append(
            {
                "id": s.id,
                "tenant": s.tenant,
                "agent": s.agent,
                "last_seq": s.last_seq,
                "messages": [_message(m) for m in messages],
                "state": s.state,
                "memory_seqs": [item.seq for item in memory],
            }
        )
    tasks = [
        {
            "id": t.id,
            "session_id": t.session_id,
            "tenant": t.tenant,
            "agent": t.agent,
            "status": t.status,
            "input": t.input,
            "output": t.output,
            "steps": len(await store.load_journal(t.id)),
        }
        for t in sorted(await store.list_tasks(limit=1000), key=lambda t: t.created_at)
    ]
    return {"schema_version": await store.schema_version(), "sessions": sessions, "tasks": tasks}


async def _read(url: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    store = open_store(url, migrate=False)
    await store.open()
    try:
        described = await _describe(store)
        half = next(t for t in described["tasks"] if t["status"] == "running")
        journal = [
            {"index": s.index, "kind": s.kind, "name": s.name, "fingerprint": s.fingerprint}
            for s in await store.load_journal(half["id"])
        ]
        return described, journal
    finally:
        await store.close()


def cut(engine: str, url: str, out: Path) -> dict[str, Any]:
    """Write the workload into the empty store at ``url``; describe it."""
    effects = out / f"effects.{engine}.jsonl"
    effects.unlink(missing_ok=True)
    os.environ[workload.EFFECTS] = str(effects)
    with tempfile.TemporaryDirectory(prefix="tether-fixture-") as tmp:
        with Runtime(store=url, worker_id="fixture-cut:run") as runtime:
            for agent in (workload.counter, workload.summarizer, workload.rememberer):
                runtime.register(agent, spec=workload.SPECS[agent.name])
            _completed(runtime)
        half_id, stalled_key = _half_finished(url, Path(tmp), effects)
        with Runtime(store=url, worker_id="fixture-cut:submit") as runtime:
            runtime.register(workload.summarizer, spec=workload.SPECS["summarizer"])
            summarized = next(
                s for s in runtime.run_on_store(lambda s: s.list_sessions(limit=1000))
                if s.agent == "summarizer"
            )  # fmt: skip
            queued = runtime.submit("summarizer", QUEUED, tenant=TENANTS[0], session=summarized.id)
    del os.environ[workload.EFFECTS]
    described, journal = asyncio.run(_read(url))
    half = next(t for t in described["tasks"] if t["id"] == half_id)
    if half["status"] != "running" or not journal:
        raise SystemExit(f"task {half_id} should be running mid-way, got {half}")
    return {
        **described,
        "effects": effects.name,
        "half_finished": {
            "task_id": half_id,
            "session_id": half["session_id"],
            "agent": "counter",
            "spec": workload.SPECS["counter"],
            "journal": journal,
            "stalled_key": stalled_key,
            "expected_output": f"counted to {HALF_FINISHED.split()[-1]}",
        },
        "queued": {
            "task_id": queued.id,
            "session_id": queued.session_id,
            "agent": "summarizer",
            "spec": workload.SPECS["summarizer"],
            "expected_output": f"counted to {QUEUED.split()[-1]}",
        },
    }


def sqlite_fixture(out: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tether-fixture-") as tmp:
        path = Path(tmp) / "store.db"
        described = cut("sqlite", f"sqlite:///{path}", out)
        target = out / "store.sqlite"
        target.unlink(missing_ok=True)
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM INTO ?", (str(target),))
        finally:
            conn.close()
        return {**described, "file": target.name}


def _with_database(admin: str, name: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(admin)._replace(path=f"/{name}"))


def postgres_fixture(out: Path, admin: str) -> dict[str, Any]:
    import psycopg

    name = f"tether_fixture_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    url = _with_database(admin, name)
    try:
        described = cut("postgres", url, out)
        target = out / "store.postgres.sql"
        subprocess.run(
            ["pg_dump", "--no-owner", "--no-privileges", "--format=plain",
             "--dbname", url, "--file", str(target)],
            check=True,
        )  # fmt: skip
        return {**described, "file": target.name}
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version", help="the release, e.g. 0.1.0")
    parser.add_argument("--out", type=Path, help="default tests/fixtures/stores/VERSION")
    parser.add_argument("--pg", default=DEFAULT_PG, help="an admin URL of the PostgreSQL server")
    parser.add_argument(
        "--engines", default="sqlite,postgres", help="comma-separated: sqlite, postgres"
    )
    args = parser.parse_args(argv)
    out: Path = args.out or ROOT / "tests" / "fixtures" / "stores" / args.version
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)  # the specs recorded in the store are relative to the repository root
    engines: dict[str, Any] = {}
    for engine in args.engines.split(","):
        if engine == "sqlite":
            engines[engine] = sqlite_fixture(out)
        elif engine == "postgres":
            engines[engine] = postgres_fixture(out, args.pg)
        else:
            parser.error(f"unknown engine {engine!r}")
    manifest = {
        "version": args.version,
        "payload_version": types.PAYLOAD_VERSION,
        "migrations": {e: [m.label for m in migrations.load(e)] for e in engines},
        "engines": engines,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(out / "__pycache__", ignore_errors=True)
    print(f"wrote {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))


if __name__ == "__main__":
    main()
