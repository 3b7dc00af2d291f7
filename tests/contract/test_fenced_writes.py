"""Fencing: a worker that lost its lease can change nothing."""

from __future__ import annotations

import pytest
from contract_support import StoreCase, claim, commit, submit

from tether import errors, types
from tether.store import Store


async def _snapshot(s: Store, task: types.TaskRecord) -> tuple[object, ...]:
    return (
        await s.get_task(task.id),
        await s.get_session(task.session_id),
        await s.list_messages(task.session_id),
        await s.load_journal(task.id),
        await s.list_events(task.id),
        await s.list_attempts(task.id),
        await s.list_runs(task.id),
    )


def test_every_write_from_a_lost_lease_is_fenced(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        old = await claim(s, "slow")
        (ok,) = await s.commit_steps([commit(old.lease, 0, "first")])
        assert isinstance(ok, types.CommitResult)
        await s.expire_lease(task.id)
        new = await claim(s, "fast")
        assert (new.reason, new.lease.epoch) == ("recovery", old.lease.epoch + 1)
        before = await _snapshot(s, task)

        (fenced,) = await s.commit_steps([commit(old.lease, 1, "late", state={"x": 1})])
        assert isinstance(fenced, errors.LeaseLost)
        assert task.id in str(fenced) and fenced.task == task.id
        with pytest.raises(errors.LeaseLost, match=task.id):
            await s.renew_lease(old.lease, lease_ttl=60)
        with pytest.raises(errors.LeaseLost):
            await s.release_lease(old.lease, events=(types.NewEvent("task.released"),))
        with pytest.raises(errors.LeaseLost):
            await s.finish_task(
                old.lease, status="completed", output="stale", events=(types.NewEvent("x"),)
            )
        with pytest.raises(errors.LeaseLost):
            await s.record_attempt(
                old.lease,
                types.StepAttempt(task.id, 1, 1, {"message": "boom"}, 0.5, "slow", 1.0),
            )
        with pytest.raises(errors.LeaseLost):
            await s.append_events(task.id, [types.NewEvent("late")], lease=old.lease)

        assert await _snapshot(s, task) == before
        # the current lease still works
        renewed = await s.renew_lease(new.lease, lease_ttl=120)
        assert renewed.epoch == new.lease.epoch and renewed.expires_at >= new.lease.expires_at
        (landed,) = await s.commit_steps([commit(renewed, 1, "fresh")])
        assert isinstance(landed, types.CommitResult)

    store.run(body)


def test_lease_lost_is_not_an_exception_user_code_can_swallow(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        await submit(s)
        got = await claim(s)
        await s.finish_task(got.lease, status="completed")

        async def renew_swallowing_exceptions() -> str:
            try:
                await s.renew_lease(got.lease, lease_ttl=10)
            except Exception:
                return "swallowed by except Exception"
            return "renewed a finished task's lease"

        # It must be raised at all (a renewal that raises nothing fails here), and must
        # pass through user code's ``except Exception``.
        with pytest.raises(errors.LeaseLost, match=got.task.id):
            await renew_swallowing_exceptions()

    store.run(body)


def test_finished_or_released_task_fences_its_old_lease(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        await submit(s)
        first = await claim(s)
        await s.release_lease(first.lease)
        (fenced,) = await s.commit_steps([commit(first.lease, 0)])
        assert isinstance(fenced, errors.LeaseLost)
        second = await claim(s, "w2")
        done = await s.finish_task(second.lease, status="failed", error={"message": "x"})
        assert (done.status, done.lease_owner, done.error) == ("failed", None, {"message": "x"})
        with pytest.raises(errors.LeaseLost):
            await s.finish_task(second.lease, status="completed")

    store.run(body)


def test_a_release_writes_its_events_with_it(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        await s.append_events(task.id, [types.NewEvent("task.started")], lease=got.lease)
        released = types.NewEvent("task.released", data={"from_step": 0})
        await s.release_lease(got.lease, events=(released,))
        after = await s.get_task(task.id)
        assert (after.status, after.lease_owner) == ("queued", None)
        found = await s.list_events(task.id)
        assert [(e.seq, e.name, e.data) for e in found] == [
            (1, "task.started", {}),
            (2, "task.released", {"from_step": 0}),
        ]
        again = await claim(s, "w2")
        assert (again.reason, again.task.id) == ("handover", task.id)

    store.run(body)


def test_group_commit_reports_the_fenced_commit_and_lands_the_others(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        t1 = await submit(s)
        t2 = await submit(s)
        t3 = await submit(s)
        c1, c2, c3 = await claim(s, "w1"), await claim(s, "w2"), await claim(s, "w3")
        await s.expire_lease(t2.id)
        await claim(s, "thief", task_id=t2.id)
        results = await s.commit_steps(
            [
                commit(c1.lease, 0, "one", state={"owner": "t1"}),
                commit(c2.lease, 0, "two", state={"owner": "t2"}),
                commit(c3.lease, 0, "three", events=(types.NewEvent("step.done", step=0),)),
            ]
        )
        assert isinstance(results[0], types.CommitResult)
        assert isinstance(results[1], errors.LeaseLost)
        assert isinstance(results[2], types.CommitResult)
        assert results[0].message_seqs == (2,) and results[2].message_seqs == (2,)
        assert [st.index for st in await s.load_journal(t1.id)] == [0]
        assert await s.load_journal(t2.id) == []
        assert [st.index for st in await s.load_journal(t3.id)] == [0]
        assert (await s.get_session(t1.session_id)).state == {"owner": "t1"}
        assert (await s.get_session(t2.session_id)).state == {}
        assert len(await s.list_messages(t2.session_id)) == 1  # only the input
        assert [e.name for e in await s.list_events(t3.id)] == ["step.done"]

    store.run(body)


def test_a_duplicate_step_is_a_conflict_that_spares_its_neighbours(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        t1 = await submit(s)
        t2 = await submit(s)
        c1, c2 = await claim(s, "w1"), await claim(s, "w2")
        await s.commit_steps([commit(c1.lease, 0, "a")])
        results = await s.commit_steps([commit(c1.lease, 0, "again"), commit(c2.lease, 0, "b")])
        assert isinstance(results[0], errors.Conflict)
        assert results[0].task == t1.id and results[0].step == 0
        assert isinstance(results[1], types.CommitResult)
        history = await s.list_messages(t1.session_id)
        assert [m.message.content for m in history] == ["hello", "a"]  # "again" rolled back
        assert len(await s.load_journal(t2.id)) == 1

    store.run(body)


def test_writes_for_unknown_tasks_are_not_found(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        ghost = types.Lease(task_id="ghost", owner="w1", epoch=1, expires_at=0.0)
        with pytest.raises(errors.NotFound, match="ghost"):
            await s.renew_lease(ghost, lease_ttl=5)
        with pytest.raises(errors.NotFound, match="ghost"):
            await s.expire_lease("ghost")
        with pytest.raises(errors.NotFound, match="ghost"):
            await s.fail_task("ghost", error={"message": "x"})
        with pytest.raises(errors.NotFound, match="ghost"):
            await s.append_events("ghost", [types.NewEvent("x")])
        (result,) = await s.commit_steps([commit(ghost, 0)])
        assert isinstance(result, errors.NotFound)

    store.run(body)
