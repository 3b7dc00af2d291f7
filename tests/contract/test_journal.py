"""The journal, messages, session state, attempts, events, cancel and storage size."""

from __future__ import annotations

import dataclasses

import pytest
from contract_support import StoreCase, claim, commit, step, submit

from tether import errors, types
from tether.store import Store, rows
from tether.store.base import Finish


def test_commits_assign_session_seqs_and_journal_them(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        r0, r1 = await s.commit_steps(
            [commit(got.lease, 0, "a", "b"), commit(got.lease, 1, "c", state={"summary": "s"})]
        )
        assert isinstance(r0, types.CommitResult) and isinstance(r1, types.CommitResult)
        assert (r0.message_seqs, r1.message_seqs) == ((2, 3), (4,))
        journal = await s.load_journal(task.id)
        assert [(st.index, st.message_seqs) for st in journal] == [(0, (2, 3)), (1, (4,))]
        assert journal[0] == dataclasses.replace(step(task.id, 0), message_seqs=(2, 3))
        session = await s.get_session(task.session_id)
        assert (session.last_seq, session.state) == (4, {"summary": "s"})
        history = await s.list_messages(task.session_id)
        assert [(m.seq, m.message.content, m.task_id) for m in history] == [
            (1, "hello", task.id),
            (2, "a", task.id),
            (3, "b", task.id),
            (4, "c", task.id),
        ]

    store.run(body)


def test_messages_round_trip_and_read_by_range(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        call = types.ToolCall(id="call-1", name="record", arguments='{"n": 1}')
        messages = (
            types.Message(role="assistant", content=None, tool_calls=(call,)),
            types.Message(role="tool", content="recorded 1", tool_call_id="call-1", name="record"),
            types.Message(role="assistant", content="done ✓"),
        )
        await s.commit_steps([types.StepCommit(got.lease, step(task.id, 0), messages)])
        history = await s.list_messages(task.session_id)
        assert tuple(m.message for m in history[1:]) == messages
        middle = await s.list_messages(task.session_id, after_seq=1, upto_seq=3)
        assert [m.seq for m in middle] == [2, 3]
        assert [m.seq for m in await s.list_messages(task.session_id, limit=2)] == [1, 2]
        assert [m.seq for m in await s.list_messages(task.session_id, after_seq=4)] == []

    store.run(body)


def test_step_without_messages_keeps_the_session(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        failed = types.StepRecord(
            task_id=task.id,
            index=0,
            kind="tool",
            name="record",
            fingerprint="fp",
            status="failed",
            error={"type": "tool", "error_class": "ToolFailed", "retryable": False, "message": "x"},
            attempts=3,
        )
        (result,) = await s.commit_steps([types.StepCommit(got.lease, failed)])
        assert result == types.CommitResult(message_seqs=())
        (journaled,) = await s.load_journal(task.id)
        assert journaled == failed
        session = await s.get_session(task.session_id)
        assert (session.last_seq, session.state) == (1, {})

    store.run(body)


def test_attempts_and_runs_are_recorded(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        for attempt in (1, 2):
            await s.record_attempt(
                got.lease,
                types.StepAttempt(
                    task.id, 0, attempt, {"message": f"try {attempt}"}, 0.25, "w1", 5.0
                ),
            )
        attempts = await s.list_attempts(task.id)
        assert [(a.index, a.attempt, a.error, a.delay, a.worker) for a in attempts] == [
            (0, 1, {"message": "try 1"}, 0.25, "w1"),
            (0, 2, {"message": "try 2"}, 0.25, "w1"),
        ]
        await s.commit_steps([commit(got.lease, 0), commit(got.lease, 1)])
        await s.expire_lease(task.id)
        again = await claim(s, "w2")
        runs = await s.list_runs(task.id)
        assert [(r.run, r.worker, r.epoch, r.from_step, r.reason) for r in runs] == [
            (1, "w1", 1, 0, "start"),
            (2, "w2", 2, 2, "recovery"),
        ]
        assert again.task.runs == 2
        with pytest.raises(errors.NotFound):
            await s.list_attempts("ghost")
        with pytest.raises(errors.NotFound):
            await s.list_runs("ghost")
        with pytest.raises(errors.NotFound):
            await s.load_journal("ghost")

    store.run(body)


def test_events_are_ordered_and_scoped_by_tenant(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s, tenant="acme")
        got = await claim(s)
        await s.append_events(task.id, [types.NewEvent("task.submitted", {"by": "api"})])
        await s.commit_steps(
            [commit(got.lease, 0, events=(types.NewEvent("step.completed", {"i": 0}, step=0),))]
        )
        await s.append_events(
            task.id, [types.NewEvent("lease.renewed"), types.NewEvent("x")], lease=got.lease
        )
        await s.finish_task(
            got.lease, status="completed", output={"answer": 4}, events=(types.NewEvent("done"),)
        )
        events = await s.list_events(task.id, tenant="acme")
        assert [(e.seq, e.name) for e in events] == [
            (1, "task.submitted"),
            (2, "step.completed"),
            (3, "lease.renewed"),
            (4, "x"),
            (5, "done"),
        ]
        assert events[0].data == {"by": "api"} and events[1].step == 0
        assert [e.seq for e in await s.list_events(task.id, after_seq=3)] == [4, 5]
        assert [e.seq for e in await s.list_events(task.id, after_seq=1, limit=2)] == [2, 3]
        with pytest.raises(errors.NotFound, match=task.id):
            await s.list_events(task.id, tenant="globex")
        assert len(await s.list_events(task.id)) == 5  # the operator's view

    store.run(body)


def test_finish_task_records_the_outcome(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        with pytest.raises(errors.InvalidInput):
            await s.finish_task(got.lease, status="running")
        done = await s.finish_task(got.lease, status="completed", output={"answer": 4})
        assert (done.status, done.output, done.error) == ("completed", {"answer": 4}, None)
        assert (done.lease_owner, done.lease_expires_at) == (None, None)
        assert await s.get_task(task.id) == done
        assert await s.claim_task("w9", lease_ttl=5) is None

    store.run(body)


def test_commit_batch_commits_steps_and_ends_each_fenced_alone(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        a, b, c = await submit(s), await submit(s), await submit(s)
        got_a, got_b, got_c = await claim(s, "w1"), await claim(s, "w2"), await claim(s, "w3")
        await s.expire_lease(c.id)
        await claim(s, "w4", task_id=c.id)  # c's first lease is fenced off now
        ended = types.NewEvent(name="task.completed", data={"n": 1})
        steps, ends = await s.commit_batch(
            [commit(got_a.lease, 0, "x")],
            [
                Finish(got_b.lease, "completed", output="ok", events=(ended,)),
                Finish(got_c.lease, "completed"),
                Finish(got_a.lease, "running"),
            ],
        )
        assert isinstance(steps[0], types.CommitResult)
        done, lost, bad = ends
        assert isinstance(done, types.TaskRecord) and (done.status, done.output) == (
            "completed",
            "ok",
        )
        assert isinstance(lost, errors.LeaseLost) and isinstance(bad, errors.InvalidInput)
        assert [e.name for e in await s.list_events(b.id)] == ["task.completed"]
        assert [t.status for t in [await s.get_task(t.id) for t in (a, b, c)]] == [
            "running",
            "completed",
            "running",
        ]
        assert len(await s.load_journal(a.id)) == 1

    store.run(body)


def test_fail_task_needs_no_lease(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        queued = await submit(s)
        error = {"type": "input", "error_class": "UnknownAgent", "retryable": False, "message": "m"}
        failed = await s.fail_task(queued.id, error=error)
        assert (failed.status, failed.error) == ("failed", error)
        running = await submit(s)
        got = await claim(s)
        failed = await s.fail_task(running.id, error=error)
        assert (failed.status, failed.lease_owner) == ("failed", None)
        with pytest.raises(errors.LeaseLost):
            await s.renew_lease(got.lease, lease_ttl=5)
        assert await s.fail_task(running.id, error={"message": "later"}) == failed

    store.run(body)


def test_cancel_semantics(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        queued = await submit(s, tenant="acme")
        cancelled = await s.request_cancel(queued.id, tenant="acme")
        assert cancelled.status == "cancelled"
        running = await submit(s)
        got = await claim(s)
        marked = await s.request_cancel(running.id)
        assert (marked.status, marked.cancel_requested) == ("running", True)
        (ok,) = await s.commit_steps([commit(got.lease, 0)])  # it runs to its next boundary
        assert isinstance(ok, types.CommitResult)
        done = await s.finish_task(got.lease, status="cancelled")
        assert await s.request_cancel(running.id) == done  # finished: unchanged
        with pytest.raises(errors.NotFound):
            await s.request_cancel(queued.id, tenant="globex")

    store.run(body)


def test_storage_per_step_does_not_grow_with_the_session(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        batch: list[types.StepCommit] = []
        for index in range(500):
            batch.append(commit(got.lease, index, f"reply {index % 10}", state={"n": index}))
            if len(batch) == 50:
                results = await s.commit_steps(batch)
                assert all(isinstance(r, types.CommitResult) for r in results)
                batch = []
        early = await s.step_storage_bytes(task.id, 4)
        late = await s.step_storage_bytes(task.id, 499)
        assert early > 100
        assert abs(late - early) <= early * 0.10, (early, late)
        with pytest.raises(errors.NotFound):
            await s.step_storage_bytes(task.id, 500)

    store.run(body)


def test_a_steps_stored_bytes_are_its_values_as_text_on_every_engine(store: StoreCase) -> None:
    """The same step measures the same on both engines: each stored value counted as its
    text (numbers as Python writes them), plus its messages' payloads."""

    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        done = commit(got.lease, 0, "héllo")
        [result] = await s.commit_steps([done])
        assert isinstance(result, types.CommitResult)
        values = rows.step_values(done.step, result.message_seqs, done.messages)
        payloads = [rows.dumps(m.to_dict(), "message") for m in done.messages]
        expected = sum(len(str(v).encode()) for v in (*values, *payloads) if v is not None)
        assert await s.step_storage_bytes(task.id, 0) == expected

    store.run(body)


def test_a_claimed_task_reads_its_start_in_one_call(store: StoreCase) -> None:
    """``read_task_start`` gives what the four reads it replaces give: the journal (with
    the outputs its messages hold), the attempts on a later run, the session, and the
    messages up to the task's input (not the ones its own steps appended)."""

    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        first = await s.read_task_start(got.task)
        assert (first.journal, first.attempts) == ([], [])
        assert [m.seq for m in first.history] == [1]
        await s.record_attempt(
            got.lease, types.StepAttempt(task.id, 0, 1, {"message": "try"}, 0.5, "w1", 5.0)
        )
        out = types.Message(role="assistant", content="a").to_dict()
        first_step = dataclasses.replace(
            commit(got.lease, 0, "a"), step=step(task.id, 0, output=out)
        )
        await s.commit_steps([first_step, commit(got.lease, 1)])
        await s.expire_lease(task.id)
        again = await claim(s, "w2")
        start = await s.read_task_start(again.task)
        assert start.journal == await s.load_journal(task.id)
        assert start.journal[0].output == out
        assert start.attempts == await s.list_attempts(task.id) != []
        assert start.session == await s.get_session(task.session_id)
        assert start.history == await s.list_messages(task.session_id, upto_seq=1)

    store.run(body)
