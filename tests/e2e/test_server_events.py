"""The event stream: resumable with Last-Event-ID without losing an event, ended by the
task's end, by cancellation, and cleanly by a drain (``stream.reconnect``)."""

from __future__ import annotations

import threading
from pathlib import Path

import server_support as support

from tether.store.base import Store
from waiting import wait_until


def _stored_seqs(store_url: str, task_id: str) -> list[int]:
    async def seqs(s: Store) -> list[int]:
        return [e.seq for e in await s.list_events(task_id)]

    found: list[int] = support.call_with_store(store_url, seqs)
    return found


def _submit(c: object, agent: str, text: str) -> tuple[str, str]:
    import httpx

    assert isinstance(c, httpx.Client)
    sid = c.post("/v1/sessions", json={"agent": agent}).json()["id"]
    response = c.post(f"/v1/sessions/{sid}/tasks", json={"input": text})
    assert response.status_code == 202, response.text
    return sid, response.json()["id"]


def test_resume_with_last_event_id_loses_no_event(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'tether.db'}"
    key = support.make_key(store_url, "acme")
    with support.serve_in_thread(store_url, workers=1) as srv:
        c = srv.client(key)
        sid, tid = _submit(c, "steps", "8:0.15")

        first = support.read_events(c, tid, stop_after=3)
        seen = [e.id for e in first if e.id is not None]
        assert len(seen) == 3
        rest = support.read_events(c, tid, last_event_id=seen[-1])
        assert rest[-1].event == "stream.end" and rest[-1].data["status"] == "completed"
        resumed = [e.id for e in rest if e.id is not None]
        assert resumed[0] == seen[-1] + 1

        stored = _stored_seqs(store_url, tid)
        assert seen + resumed == stored, "an event was lost or repeated across the resume"
        names = [e.event for e in first + rest if e.id is not None]
        assert names[0] == "task.started" and names[-1] == "task.completed"
        assert names.count("step.completed") == 8
        for e in first + rest:
            if e.id is not None:
                assert e.data["seq"] == e.id and e.data["task_id"] == tid

        # a stream opened after the end replays everything, then ends
        again = support.read_events(c, tid)
        assert [e.id for e in again if e.id is not None] == stored
        assert again[-1].event == "stream.end"

        task = c.get(f"/v1/tasks/{tid}").json()
        assert task["status"] == "completed" and task["output"] == list(range(8))
        assert [s["index"] for s in task["steps"]] == list(range(8))
        assert {s["kind"] for s in task["steps"]} == {"custom"}
        messages = c.get(f"/v1/sessions/{sid}/messages").json()["messages"]
        assert [m["role"] for m in messages] == ["user"] and messages[0]["content"] == "8:0.15"

        chat_sid, chat_tid = _submit(c, "echo", "hi")
        chat = support.read_events(c, chat_tid)
        assert chat[-1].data["status"] == "completed"
        page = c.get(f"/v1/sessions/{chat_sid}/messages", params={"limit": 1}).json()
        assert [m["role"] for m in page["messages"]] == ["user"]
        assert page["next_after_seq"] == 1
        more = c.get(
            f"/v1/sessions/{chat_sid}/messages", params={"after_seq": page["next_after_seq"]}
        ).json()
        assert more["messages"][-1]["content"] == "hello from echo"
        assert more["next_after_seq"] is None


def test_cancel_stops_a_running_task_at_a_step_boundary(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'tether.db'}"
    key = support.make_key(store_url, "acme")
    with support.serve_in_thread(store_url, workers=1) as srv:
        c = srv.client(key)
        _, tid = _submit(c, "steps", "40:0.1")
        wait_until(lambda: c.get(f"/v1/tasks/{tid}").json()["steps"], what="a first committed step")
        cancelled = c.post(f"/v1/tasks/{tid}/cancel")
        assert cancelled.status_code == 202
        assert cancelled.json()["cancel_requested"] is True
        events = support.read_events(c, tid)
        assert events[-1].event == "stream.end" and events[-1].data["status"] == "cancelled"
        assert events[-2].event == "task.cancelled"
        task = c.get(f"/v1/tasks/{tid}").json()
        assert task["status"] == "cancelled"
        assert 0 < len(task["steps"]) < 40
        assert all(s["status"] == "completed" for s in task["steps"])


def test_a_queued_task_cancels_at_once_and_its_stream_ends(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'tether.db'}"
    key = support.make_key(store_url, "acme")
    with support.serve_in_thread(store_url, workers=0) as srv:
        c = srv.client(key)
        _, tid = _submit(c, "echo", "never runs")
        assert c.post(f"/v1/tasks/{tid}/cancel").json()["status"] == "cancelled"
        events = support.read_events(c, tid)
        assert [e.event for e in events] == ["stream.end"]
        assert events[0].data == {"task_id": tid, "status": "cancelled"}


def test_drain_ends_open_streams_cleanly_and_readyz_turns_503(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'tether.db'}"
    key = support.make_key(store_url, "acme")
    with support.serve_in_thread(store_url, workers=0, drain_delay=1.5) as srv:
        c = srv.client(key)
        _, tid = _submit(c, "echo", "waits in the queue")
        assert c.get("/readyz").json() == {"status": "ready", "detail": None}
        got: list[support.Event] = []
        stream_open = threading.Event()

        def follow() -> None:
            stream_open.set()
            got.extend(support.read_events(srv.client(key), tid))

        reader = threading.Thread(target=follow)
        reader.start()
        stream_open.wait(5)
        wait_until(
            lambda: 'route="/v1/tasks/{task_id}/events"' in c.get("/metrics").text,
            what="the stream to open",
        )
        srv.service.request_drain()
        reader.join(10)
        assert not reader.is_alive(), "the stream did not end on drain"
        assert [e.event for e in got] == ["stream.reconnect"]
        assert got[0].data == {"task_id": tid, "last_event_id": 0}
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        assert c.get("/healthz").status_code == 200
