"""``Store.doctor`` and ``tether doctor``: each kind of damage is found and named, on both
engines, and a healthy store passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from upgrade_support import raw, raw_unchecked, with_store

from tether import types
from tether.store import Store, migrations
from tether.store.base import Finding


async def _doctor(store: Store) -> list[Finding]:
    return await store.doctor()


async def _populate(store: Store) -> dict[str, str]:
    """A completed-looking session, a running task, a queued task: a healthy store."""
    first = await store.submit_task(types.NewTask(tenant="acme", agent="a", input="one"))
    got = await store.claim_task("w1", lease_ttl=600.0, task_id=first.id)
    assert got is not None
    await store.finish_task(got.lease, status="completed", output="done")
    second = await store.submit_task(types.NewTask(tenant="acme", agent="a", input="two"))
    running = await store.claim_task("w1", lease_ttl=600.0, task_id=second.id)
    assert running is not None
    queued = await store.submit_task(
        types.NewTask(tenant="acme", agent="a", input="three", session_id=first.session_id)
    )
    return {
        "done": first.id,
        "session": first.session_id,
        "running": second.id,
        "running_session": second.session_id,
        "queued": queued.id,
    }


def _tether(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_a_healthy_store_has_no_findings(empty_store_url: str) -> None:
    url = empty_store_url
    with_store(url, _populate)
    assert with_store(url, _doctor) == []
    done = _tether("doctor", "--store", url, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["findings"] == []
    assert report["schema_version"] == report["code_schema_version"] > 0


def test_every_kind_of_damage_is_found_and_named(empty_store_url: str) -> None:
    url = empty_store_url
    ids = with_store(url, _populate)

    async def expire(store: Store) -> None:
        await store.expire_lease(ids["running"])

    with_store(url, expire)
    raw_unchecked(
        url,
        [
            # steps, attempts, runs and events of a task that does not exist
            (
                "INSERT INTO steps (task_id, idx, kind, name, fingerprint, status, attempts,"
                " started_at, finished_at, message_seqs, payload_version)"
                " VALUES ('ghost-task', 0, 'model', 'm', 'fp', 'completed', 1, 1, 2, '[]', 1)",
                (),
            ),
            (
                "INSERT INTO events (task_id, seq, name, at, data, payload_version)"
                " VALUES ('ghost-task', 1, 'x', 1, '{}', 1)",
                (),
            ),
            # a message of a session that does not exist
            (
                "INSERT INTO messages (session_id, seq, payload, payload_version, created_at)"
                " VALUES ('ghost-session', 1, ?, 1, 1)",
                (json.dumps({"role": "user", "content": "lost"}),),
            ),
            # a session that claims more messages than it has
            ("UPDATE sessions SET last_seq = last_seq + 5 WHERE id = ?", (ids["session"],)),
            # a finished task that still holds a lease
            ("UPDATE tasks SET lease_owner = 'w9' WHERE id = ?", (ids["done"],)),
        ],
    )
    findings = {f.check: f for f in with_store(url, _doctor)}
    assert set(findings) == {
        "orphaned_steps",
        "orphaned_events",
        "orphaned_messages",
        "session_last_seq",
        "expired_leases",
        "lease_on_idle_task",
    }
    assert findings["orphaned_steps"].refs == ("ghost-task:0",)
    assert findings["orphaned_messages"].refs == ("ghost-session:1",)
    assert findings["session_last_seq"].refs == (ids["session"],)
    assert findings["lease_on_idle_task"].refs == (ids["done"],)
    expired = findings["expired_leases"]
    assert expired.severity == "warning" and expired.refs == (ids["running"],)
    assert "tether worker" in expired.message
    assert all(f.severity == "error" for k, f in findings.items() if k != "expired_leases")
    assert "1 steps of unknown tasks: ghost-task:0" in findings["orphaned_steps"].message

    done = _tether("doctor", "--store", url, "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    assert {f["check"] for f in report["findings"]} == set(findings)
    text = _tether("doctor", "--store", url)
    assert text.returncode == 1
    assert "session_last_seq" in text.stdout and ids["session"] in text.stdout


def test_many_problems_are_counted_and_the_first_named(empty_store_url: str) -> None:
    url = empty_store_url
    with_store(url, lambda s: s.list_sessions())
    raw_unchecked(
        url,
        [
            (
                "INSERT INTO task_runs (task_id, run, worker, epoch, started_at, from_step, reason)"
                " VALUES (?, 1, 'w', 1, 1, 0, 'start')",
                (f"ghost-{n:02d}",),
            )
            for n in range(25)
        ],
    )
    [finding] = with_store(url, _doctor)
    assert finding.check == "orphaned_task_runs" and finding.count == 25
    assert len(finding.refs) == 20 and finding.refs[0] == "ghost-00:1"
    assert "and 5 more" in finding.message


def test_pending_and_newer_schemas_and_unreadable_payloads(
    engine: str, empty_store_url: str
) -> None:
    url = empty_store_url
    ids = with_store(url, _populate)
    last = len(migrations.load(engine))

    raw(url, "UPDATE messages SET payload_version = 99 WHERE session_id = ?", (ids["session"],))
    [payload] = with_store(url, _doctor)
    assert payload.check == "payload_versions" and payload.refs == ("messages",)
    assert "at version 99" in payload.message and "upgrade tether" in payload.message
    raw(url, "UPDATE messages SET payload_version = ?", (types.PAYLOAD_VERSION,))

    saved = raw(url, "SELECT version, name, checksum, applied_at FROM schema_migrations")
    raw(url, "DELETE FROM schema_migrations WHERE version = ?", (last,))
    [pending] = with_store(url, _doctor, migrate=False, check=False)
    assert pending.check == "pending_migrations" and pending.count == 1
    assert "tether migrate --store" in pending.message
    done = _tether("doctor", "--store", url)
    assert done.returncode == 1 and "pending_migrations" in done.stdout

    row = next(r for r in saved if r[0] == last)
    raw(url, "INSERT INTO schema_migrations VALUES (?, ?, ?, ?)", row)
    raw(url, "INSERT INTO schema_migrations VALUES (?, 'future', 'x', 1)", (last + 1,))
    [newer] = with_store(url, _doctor, migrate=False, check=False)
    assert newer.check == "schema" and "upgrade tether" in newer.message
    assert raw(url, "SELECT MAX(version) FROM schema_migrations") == [(last + 1,)]


def test_a_store_without_a_schema(engine: str, empty_store_url: str, tmp_path: Path) -> None:
    url = empty_store_url
    if engine == "sqlite":
        Path(url.removeprefix("sqlite:///")).touch()
    [finding] = with_store(url, _doctor, migrate=False, check=False)
    assert finding.check == "schema" and "tether migrate --store" in finding.message
    missing = _tether("doctor", "--store", f"sqlite:///{tmp_path / 'nothing.db'}")
    assert missing.returncode == 2 and "no SQLite store" in missing.stderr
    assert not (tmp_path / "nothing.db").exists()
