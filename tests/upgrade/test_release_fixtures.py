"""Stores written by every released tether open with this code, on both engines.

For each ``tests/fixtures/stores/<version>/`` and each engine: the store is restored
into a store of the test's own, migrated with ``tether migrate`` to exactly the
schema of a fresh store, every session's history, context state and memory read back
as the manifest recorded them, and a ``tether worker`` of this code (a rolling
upgrade) finishes the task a worker of that release was killed in the middle of,
from its journal, without running a completed step again, and the queued task
that release left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from release_fixtures import ROOT, Fixture, cases, fixtures, restore, schema
from upgrade_support import with_store

import pg
from tether import errors, types
from tether.store import Store, migrations

WORKLOAD = ROOT / "tests" / "fixtures" / "stores" / "workload.py"
EFFECTS = "TETHER_FIXTURE_EFFECTS"


def _tether(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


def _migrate(url: str, described: dict[str, Any], engine: str) -> None:
    """Refused while out of date (naming the command), then ``tether migrate``."""
    current = len(migrations.load(engine))
    if described["schema_version"] < current:
        with pytest.raises(errors.StoreVersionError, match="tether migrate --store"):
            with_store(url, lambda s: s.schema_version(), migrate=False)
    done = _tether("migrate", "--store", url)
    assert done.returncode == 0, done.stderr
    assert with_store(url, lambda s: s.schema_version(), migrate=False) == current


def test_every_release_has_a_fixture_on_both_engines() -> None:
    found = fixtures()
    assert found, "no release fixture under tests/fixtures/stores/"
    for fixture in found:
        assert set(fixture.manifest["engines"]) == {"postgres", "sqlite"}, fixture.version
        for engine in ("postgres", "sqlite"):
            assert (fixture.folder / fixture.engine(engine)["file"]).is_file()
            assert (fixture.folder / fixture.engine(engine)["effects"]).is_file()


@pytest.mark.parametrize(("fixture", "engine"), cases())
def test_a_release_store_migrates_to_a_fresh_stores_schema(
    fixture: Fixture, engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = restore(fixture, engine, tmp_path, request)
    described = fixture.engine(engine)
    assert with_store(url, lambda s: s.schema_version(), check=False) == described["schema_version"]
    _migrate(url, described, engine)
    if engine == "sqlite":
        fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
        with_store(fresh, lambda s: s.schema_version())
    else:
        fresh = pg.fresh_url()
        request.addfinalizer(lambda: pg.drop_url(fresh))
    assert schema(url) == schema(fresh)


@pytest.mark.parametrize(("fixture", "engine"), cases())
def test_every_session_reads_back_intact(
    fixture: Fixture, engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = restore(fixture, engine, tmp_path, request)
    described = fixture.engine(engine)
    _migrate(url, described, engine)
    half = described["half_finished"]["task_id"]

    async def check(store: Store) -> None:
        sessions = described["sessions"]
        assert len(await store.list_sessions(limit=10_000)) == len(sessions)
        for recorded in sessions:
            session = await store.get_session(recorded["id"], tenant=recorded["tenant"])
            assert (session.agent, session.last_seq) == (recorded["agent"], recorded["last_seq"])
            assert session.state == recorded["state"]
            messages = await store.list_messages(session.id)
            assert len(messages) == len(recorded["messages"]) == recorded["last_seq"]
            for stored, expected in zip(messages, recorded["messages"], strict=True):
                assert stored.seq == expected["seq"] and stored.task_id == expected["task_id"]
                rest = {k: v for k, v in expected.items() if k not in ("seq", "task_id")}
                assert stored.message == types.Message.from_dict(rest)
            memory = await store.list_memory(session.id)
            assert [item.seq for item in memory] == recorded["memory_seqs"]
        for recorded in described["tasks"]:
            task = await store.get_task(recorded["id"], tenant=recorded["tenant"])
            assert (task.status, task.output, task.input) == (
                recorded["status"],
                recorded["output"],
                recorded["input"],
            )
            assert len(await store.load_journal(task.id)) == recorded["steps"]
        findings = await store.doctor()
        assert [(f.check, f.refs) for f in findings] == [("expired_leases", (half,))]

    with_store(url, check)


def _wait_final(url: str, task_ids: list[str], worker: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while True:
        tasks = [with_store(url, lambda s, t=t: s.get_task(t)) for t in task_ids]
        if all(t.status in types.FINAL_STATUSES for t in tasks):
            return
        if worker.poll() is not None:
            raise AssertionError(f"the worker exited ({worker.returncode}) before finishing")
        if time.monotonic() > deadline:
            raise AssertionError(f"tasks not finished: {[(t.id, t.status) for t in tasks]}")
        time.sleep(0.2)


@pytest.mark.parametrize(("fixture", "engine"), cases())
def test_a_current_worker_finishes_what_the_release_left(
    fixture: Fixture, engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = restore(fixture, engine, tmp_path, request)
    described = fixture.engine(engine)
    _migrate(url, described, engine)
    half, queued = described["half_finished"], described["queued"]
    effects = tmp_path / "effects.jsonl"
    shutil.copyfile(fixture.folder / described["effects"], effects)
    recorded_keys = [json.loads(line)["key"] for line in effects.read_text().splitlines()]

    specs = sorted({half["spec"], queued["spec"]})
    worker = subprocess.Popen(
        [sys.executable, "-m", "tether", "worker", *specs, "--store", url,
         "--worker-id", "upgrade-test:1", "--poll", "0.05", "--lease-ttl", "30"],
        cwd=ROOT,
        env={**os.environ, EFFECTS: str(effects)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _wait_final(url, [half["task_id"], queued["task_id"]], worker)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr[-2000:]

    async def check(store: Store) -> None:
        finished = await store.get_task(half["task_id"])
        assert (finished.status, finished.output) == ("completed", half["expected_output"])
        journal = await store.load_journal(half["task_id"])
        old = half["journal"]
        assert [
            {"index": s.index, "kind": s.kind, "name": s.name, "fingerprint": s.fingerprint}
            for s in journal[: len(old)]
        ] == old
        assert len(journal) > len(old)
        runs = await store.list_runs(half["task_id"])
        assert runs[-1].worker.startswith("upgrade-test:1")
        assert (runs[-1].reason, runs[-1].from_step) == ("recovery", len(old))
        later = await store.get_task(queued["task_id"])
        assert (later.status, later.output) == ("completed", queued["expected_output"])
        session = await store.get_session(queued["session_id"])
        recorded = next(s for s in described["sessions"] if s["id"] == queued["session_id"])
        assert session.last_seq > recorded["last_seq"]
        kept = await store.list_messages(session.id, upto_seq=recorded["last_seq"])
        assert [m.seq for m in kept] == [m["seq"] for m in recorded["messages"]]

    with_store(url, check)

    executions = [json.loads(line) for line in effects.read_text().splitlines()]
    counts = Counter(e["key"] for e in executions)
    assert [k for k, n in counts.items() if n > 1] == [], "a completed step ran again"
    assert executions[: len(recorded_keys)] == [
        json.loads(x) for x in (fixture.folder / described["effects"]).read_text().splitlines()
    ]
    resumed = [e for e in executions[len(recorded_keys) :] if e["task"] == half["task_id"]]
    assert resumed and resumed[0]["key"] == half["stalled_key"]
    before = {k for k in recorded_keys if k.startswith(half["task_id"] + ":")}
    assert before and before.isdisjoint(e["key"] for e in resumed)
