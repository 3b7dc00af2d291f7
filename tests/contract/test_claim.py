"""Claiming: the candidate order, its reasons, one running task per session."""

from __future__ import annotations

from contract_support import StoreCase, claim, commit, submit

from tether.store import Store


def test_nothing_to_claim_returns_none(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        assert await s.claim_task("w1", lease_ttl=30) is None

    store.run(body)


def test_first_claim_starts_the_task_and_appends_its_input(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s, input="what is 2+2?")
        got = await claim(s, "w1")
        assert got.reason == "start"
        assert got.task.id == task.id
        assert (got.task.status, got.task.lease_owner, got.task.runs) == ("running", "w1", 1)
        assert got.lease.epoch == got.task.lease_epoch == 1
        assert got.lease.owner == "w1" and got.lease.task_id == task.id
        assert got.task.lease_expires_at == got.lease.expires_at
        assert got.lease.expires_at > task.created_at + 50  # the ttl asked for was 60 s
        assert got.task.input_seq == 1
        (msg,) = await s.list_messages(task.session_id)
        assert (msg.seq, msg.task_id) == (1, task.id)
        assert (msg.message.role, msg.message.content) == ("user", "what is 2+2?")
        (run,) = await s.list_runs(task.id)
        assert (run.run, run.worker, run.epoch, run.from_step, run.reason) == (
            1,
            "w1",
            1,
            0,
            "start",
        )

    store.run(body)


def test_a_worker_takes_its_own_lease_back_first(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        older = await submit(s)
        mine = await submit(s)
        await claim(s, "other", task_id=older.id)
        await s.expire_lease(older.id)  # an expired lease of someone else is a candidate too
        first = await claim(s, "w1", task_id=mine.id)
        again = await claim(s, "w1")
        assert again.reason == "resume"
        assert again.task.id == mine.id
        assert again.lease.epoch == first.lease.epoch + 1
        assert again.task.input_seq == first.task.input_seq  # the input is appended once
        assert len(await s.list_messages(mine.session_id)) == 1
        assert [r.reason for r in await s.list_runs(mine.id)] == ["start", "resume"]

    store.run(body)


def test_expired_lease_is_recovered_before_queued_work(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        stuck = await submit(s)
        await claim(s, "crashed")
        waiting = await submit(s)
        await s.expire_lease(stuck.id)
        got = await claim(s, "w2")
        assert (got.task.id, got.reason, got.task.runs) == (stuck.id, "recovery", 2)
        assert got.task.lease_owner == "w2"
        nxt = await claim(s, "w3")
        assert (nxt.task.id, nxt.reason) == (waiting.id, "start")

    store.run(body)


def test_a_live_lease_of_another_worker_is_not_claimable(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        await claim(s, "w1")
        assert await s.claim_task("w2", lease_ttl=30) is None
        assert await s.claim_task("w2", lease_ttl=30, task_id=task.id) is None

    store.run(body)


def test_claim_tasks_takes_one_per_owner_and_keeps_sessions_apart(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        first = await submit(s, input="one")
        await submit(s, session_id=first.session_id, input="two")
        other = await submit(s, input="elsewhere")
        got = await s.claim_tasks(["w1", "w2", "w3"], lease_ttl=30)
        assert {c.task.id for c in got} == {first.id, other.id}  # "two" waits for "one"
        assert {c.lease.owner for c in got} <= {"w1", "w2", "w3"} and len(got) == 2
        assert {c.reason for c in got} == {"start"}
        assert await s.claim_tasks(["w4", "w5"], lease_ttl=30) == []

    store.run(body)


def test_one_running_task_per_session_in_submission_order(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        first = await submit(s, input="one")
        second = await submit(s, session_id=first.session_id, input="two")
        third = await submit(s, session_id=first.session_id, input="three")
        other = await submit(s, input="elsewhere")
        a = await claim(s, "w1")
        assert a.task.id == first.id
        b = await claim(s, "w2")  # the session is busy: the other session's task comes next
        assert b.task.id == other.id
        assert await s.claim_task("w3", lease_ttl=30) is None
        assert await s.claim_task("w3", lease_ttl=30, task_id=third.id) is None
        await s.finish_task(a.lease, status="completed", output="1")
        c = await claim(s, "w3")
        assert c.task.id == second.id
        assert await s.claim_task("w4", lease_ttl=30, task_id=third.id) is None
        await s.finish_task(c.lease, status="completed", output="2")
        d = await claim(s, "w4")
        assert d.task.id == third.id
        history = await s.list_messages(first.session_id)
        assert [m.message.content for m in history] == ["one", "two", "three"]
        assert [m.seq for m in history] == [1, 2, 3]
        assert (c.task.input_seq, d.task.input_seq) == (2, 3)

    store.run(body)


def test_an_older_queued_task_blocks_its_session_even_when_filtered_out(
    store: StoreCase,
) -> None:
    async def body(s: Store) -> None:
        first = await submit(s, agent="alpha")
        second = await submit(s, agent="beta", session_id=first.session_id)
        assert await s.claim_task("w1", lease_ttl=30, task_id=second.id) is None
        assert await s.claim_task("w1", lease_ttl=30, agents=["beta"]) is None
        got = await claim(s, "w1", agents=["alpha", "beta"])
        assert got.task.id == first.id

    store.run(body)


def test_cancelled_task_does_not_block_its_session(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        first = await submit(s)
        second = await submit(s, session_id=first.session_id)
        await s.request_cancel(first.id)
        got = await claim(s)
        assert got.task.id == second.id

    store.run(body)


def test_agents_and_task_id_narrow_the_candidates(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        a = await submit(s, agent="alpha")
        b = await submit(s, agent="beta")
        c = await submit(s, agent="beta")
        assert await s.claim_task("w1", lease_ttl=30, agents=[]) is None
        assert await s.claim_task("w1", lease_ttl=30, agents=["gamma"]) is None
        got = await claim(s, "w1", agents={"beta"})
        assert got.task.id == b.id
        got = await claim(s, "w1", task_id=c.id)
        assert got.task.id == c.id
        got = await claim(s, "w2", agents=("alpha", "beta"))
        assert got.task.id == a.id

    store.run(body)


def test_release_hands_the_task_over(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        first = await claim(s, "draining")
        await s.commit_steps([commit(first.lease, 0)])
        await s.release_lease(first.lease)
        queued = await s.get_task(task.id)
        assert (queued.status, queued.lease_owner, queued.lease_expires_at) == (
            "queued",
            None,
            None,
        )
        assert queued.lease_epoch == first.lease.epoch  # kept: the next claim bumps it
        got = await claim(s, "w2")
        assert (got.task.id, got.reason, got.lease.epoch) == (task.id, "handover", 2)
        assert len(await s.list_messages(task.session_id)) == 1  # the input is not repeated
        runs = await s.list_runs(task.id)
        assert [(r.reason, r.worker, r.from_step) for r in runs] == [
            ("start", "draining", 0),
            ("handover", "w2", 1),
        ]

    store.run(body)


def test_cancel_requested_task_is_still_claimable(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        first = await claim(s, "w1")
        marked = await s.request_cancel(task.id)
        assert (marked.status, marked.cancel_requested) == ("running", True)
        await s.release_lease(first.lease)
        got = await claim(s, "w2")
        assert got.task.id == task.id and got.task.cancel_requested

    store.run(body)
