"""Durable waits: parking a task, signals kept and consumed once, waking by signal or time."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest
from contract_support import StoreCase, claim, commit, submit

from tether import errors, types
from tether.store import Store
from tether.store import waits as store_waits


def _wait(step: int, name: str = "go", *, kind: str = "signal") -> dict[str, object]:
    return {"step": step, "kind": kind, "name": name, "deadline": None, "since": time.time()}


def _consume(lease: types.Lease, index: int, seq: int) -> types.StepCommit:
    """The commit of a signal step ``index`` that consumes signal ``seq``."""
    step = dataclasses.replace(commit(lease, index).step, kind="signal", name="go")
    return types.StepCommit(lease=lease, step=step, signal_seq=seq)


def test_a_parked_task_holds_no_lease_and_wakes_on_its_signal_only(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s, "w1")
        parked = await s.wait_task(
            got.lease,
            wait=_wait(0),
            wake_at=None,
            events=(types.NewEvent("task.waiting", {"n": 1}),),
        )
        assert (parked.status, parked.lease_owner, parked.lease_expires_at) == (
            "waiting",
            None,
            None,
        )
        assert parked.wake_at is None and parked.wait is not None
        assert parked.to_public()["waiting"]["name"] == "go"
        assert await s.count_tasks(status="waiting") == {"agent": 1}
        with pytest.raises(errors.LeaseLost):  # its old lease fences nothing any more
            await s.renew_lease(got.lease, lease_ttl=30)
        assert await s.claim_task("w2", lease_ttl=30) is None

        other = await s.send_signal(task.id, "other", 1)  # another name: kept, no wake
        assert (other.seq, other.woke) == (1, False)
        assert await s.claim_task("w2", lease_ttl=30) is None

        sent = await s.send_signal(task.id, "go", {"ok": True}, tenant="acme")
        assert (sent.seq, sent.name, sent.data, sent.woke) == (2, "go", {"ok": True}, True)
        woke = await claim(s, "w2")
        assert (woke.task.id, woke.reason, woke.task.status) == (task.id, "wake", "running")
        assert woke.task.wake_at is None and woke.task.wait == parked.wait
        assert [r.reason for r in await s.list_runs(task.id)] == ["start", "wake"]

        found = await s.next_signal(task.id, "go")
        assert found is not None and found.seq == 2
        (result,) = await s.commit_steps([_consume(woke.lease, 0, found.seq)])
        assert isinstance(result, types.CommitResult)
        assert await s.next_signal(task.id, "go") is None
        signals = await s.list_signals(task.id)
        assert [(g.seq, g.consumed_step) for g in signals] == [(1, None), (2, 0)]
        names = [e.name for e in await s.list_events(task.id)]
        assert names == ["task.waiting", "signal.received", "signal.received"]

    store.run(body)


def test_signals_sent_before_the_wait_are_kept_and_each_consumed_once(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s, "w1")
        first = await s.send_signal(task.id, "go", "a")  # racing: both arrive first
        second = await s.send_signal(task.id, "go", "b")
        assert (first.woke, second.woke) == (False, False)
        # The task looked before they came and parks: it is due at once, nothing is lost.
        parked = await s.wait_task(got.lease, wait=_wait(0), wake_at=None)
        assert parked.status == "waiting" and parked.wake_at is not None
        woke = await claim(s, "w2")
        assert woke.reason == "wake"
        found = await s.next_signal(task.id, "go")
        assert found is not None and (found.seq, found.data) == (1, "a")
        again = _consume(woke.lease, 0, 1)
        late = _consume(woke.lease, 1, 1)  # the same signal for another step: refused
        ok, refused = await s.commit_steps([again, late])
        assert isinstance(ok, types.CommitResult)
        assert isinstance(refused, errors.Conflict)
        assert [st.index for st in await s.load_journal(task.id)] == [0]
        nxt = await s.next_signal(task.id, "go")
        assert nxt is not None and (nxt.seq, nxt.data) == (2, "b")

    store.run(body)


def test_a_timer_wakes_the_task_when_due_and_the_session_keeps_its_order(
    store: StoreCase,
) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        later = await submit(s, session_id=task.session_id)
        got = await claim(s, "w1")
        due = time.time() + 0.4
        parked = await s.wait_task(got.lease, wait=_wait(0, "sleep", kind="sleep"), wake_at=due)
        assert parked.wake_at == pytest.approx(due)
        # The waiting task keeps its session's place: the next task waits behind it.
        assert await s.claim_task("w2", lease_ttl=30) is None
        deadline = time.monotonic() + 10
        woke = None
        while woke is None and time.monotonic() < deadline:
            woke = await s.claim_task("w2", lease_ttl=30)
        assert woke is not None and (woke.task.id, woke.reason) == (task.id, "wake")
        assert time.time() >= due
        await s.finish_task(woke.lease, status="completed", output="done")
        assert (await claim(s, "w2")).task.id == later.id

    store.run(body)


def test_a_refused_signal_writes_nothing(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s, tenant="acme")
        with pytest.raises(errors.NotFound):
            await s.send_signal("no-such-task", "go", 1)
        with pytest.raises(errors.NotFound):
            await s.send_signal(task.id, "go", 1, tenant="other")
        with pytest.raises(errors.InvalidInput):
            await s.send_signal(task.id, "bad name!", 1)
        with pytest.raises(errors.InvalidInput, match="bytes"):
            await s.send_signal(task.id, "go", "x" * (store_waits.MAX_SIGNAL_BYTES + 1))
        with pytest.raises(errors.InvalidInput, match="JSON"):
            await s.send_signal(task.id, "go", {1, 2})
        assert await s.list_signals(task.id) == []
        assert await s.list_events(task.id) == []

        got = await claim(s, "w1")
        await s.wait_task(got.lease, wait=_wait(0), wake_at=None)
        cancelled = await s.request_cancel(task.id, tenant="acme")  # at once: no lease
        assert (cancelled.status, cancelled.wake_at) == ("cancelled", None)
        with pytest.raises(errors.Conflict, match="cancelled"):
            await s.send_signal(task.id, "go", 1)
        assert await s.list_signals(task.id) == []
        assert await s.claim_task("w2", lease_ttl=30) is None

    store.run(body)


def test_a_task_cancelled_while_it_runs_does_not_park_for_nothing(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s, "w1")
        asked = await s.request_cancel(task.id)  # running: it stops at its next boundary
        assert (asked.status, asked.cancel_requested) == ("running", True)
        parked = await s.wait_task(got.lease, wait=_wait(0), wake_at=None)
        assert parked.status == "waiting" and parked.wake_at is not None  # due at once
        again = await claim(s, "w2")
        assert (again.task.id, again.reason, again.task.cancel_requested) == (
            task.id,
            "wake",
            True,
        )

    store.run(body)


def test_the_schema_accepts_exactly_the_statuses_and_step_kinds_the_code_names(
    store: StoreCase,
) -> None:
    store.run(lambda s: s.schema_version())  # migrate
    if store.engine == "sqlite":
        found = dict(store.raw("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
        checks = {"status": found["tasks"], "kind": found["steps"], "reason": found["task_runs"]}
    else:
        found = dict(
            store.raw(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conname IN ('tasks_status_check', 'steps_kind_check',"
                " 'task_runs_reason_check')"
            )
        )
        checks = {
            "status": found["tasks_status_check"],
            "kind": found["steps_kind_check"],
            "reason": found["task_runs_reason_check"],
        }

    def allowed(column: str) -> set[str]:
        match = re.search(rf"CHECK \(\(?{column}\b[^)]*\)", checks[column], re.S)
        assert match is not None, checks[column]
        return set(re.findall(r"'([a-z]+)'", match.group(0)))

    assert allowed("status") == set(types.TASK_STATUSES)
    assert allowed("kind") == set(types.STEP_KINDS)
    assert allowed("reason") == {"start", "recovery", "handover", "resume", "wake"}
