"""A rolling restart of ``tether serve`` (real subprocesses, SIGTERM): during the drain
``/readyz`` answers 503 while the in-flight step finishes; open event streams end with
``stream.reconnect``; the task is released at its step boundary, and a second server on
the same store finishes it while the client resumes its stream there with Last-Event-ID:
no task, no event and no step is lost or run twice."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import server_support as support

from tether import types
from tether.store.base import Store
from waiting import wait_until


def test_rolling_restart_loses_no_task_and_no_event(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'tether.db'}"
    key = support.make_key(store_url, "acme")
    first = support.start_serve(store_url, tmp_path, "--grace", "20", name="first")
    second: support.ServeProcess | None = None
    try:
        c = first.client(key)
        sid = c.post("/v1/sessions", json={"agent": "slow"}).json()["id"]
        tid = c.post(f"/v1/sessions/{sid}/tasks", json={"input": "2.5"}).json()["id"]
        wait_until(
            lambda: c.get(f"/v1/tasks/{tid}").json()["status"] == "running", what="the claim"
        )
        seen: list[support.Event] = []
        reader = threading.Thread(
            target=lambda: seen.extend(support.read_events(first.client(key), tid))
        )
        reader.start()
        wait_until(
            lambda: 'route="/v1/tasks/{task_id}/events"' in c.get("/metrics").text,
            what="the stream to open",
        )
        assert c.get("/readyz").status_code == 200

        first.stop(signal.SIGTERM)
        ready = wait_until(
            lambda: (r := c.get("/readyz")).status_code == 503 and r, what="readyz 503"
        )
        assert ready.json()["status"] == "draining"
        # still draining: the long step is in flight, and the API still answers
        assert c.get(f"/v1/tasks/{tid}").json()["status"] == "running"
        reader.join(10)
        assert not reader.is_alive(), "the open stream did not end on drain"
        assert seen and seen[-1].event == "stream.reconnect"

        assert first.proc.wait(30) == 0, first.log.read_text()
        log = first.log.read_text()
        assert "draining" in log and "drained" in log

        async def state(s: Store) -> tuple[types.TaskRecord, list[types.StepRecord]]:
            return await s.get_task(tid), await s.load_journal(tid)

        task, journal = support.call_with_store(store_url, state)
        assert task.status == "queued" and task.lease_owner is None, task  # released, not lost
        assert [(s.name, s.status) for s in journal] == [("long", "completed")]

        second = support.start_serve(store_url, tmp_path, name="second")
        last = max(e.id for e in seen if e.id is not None) if any(e.id for e in seen) else 0
        rest = support.read_events(second.client(key), tid, last_event_id=last)
        assert rest[-1].event == "stream.end" and rest[-1].data["status"] == "completed"

        async def stored(s: Store) -> list[types.EventRecord]:
            return await s.list_events(tid)

        log_events = support.call_with_store(store_url, stored)
        got = [e.id for e in seen + rest if e.id is not None]
        assert got == [e.seq for e in log_events], "an event was lost or repeated"
        assert "task.released" in [e.name for e in log_events]

        done = second.client(key).get(f"/v1/tasks/{tid}").json()
        assert done["status"] == "completed" and done["output"] == "done"
        assert [(s["name"], s["attempts"]) for s in done["steps"]] == [("long", 1), ("short", 1)]

        async def runs(s: Store) -> list[types.TaskRun]:
            return await s.list_runs(tid)

        history = support.call_with_store(store_url, runs)
        assert [(r.reason, r.from_step) for r in history] == [("start", 0), ("handover", 1)]
    finally:
        for served in (first, second):
            if served is not None:
                served.close_clients()
                if served.proc.poll() is None:
                    served.proc.kill()
                    served.proc.wait(10)
