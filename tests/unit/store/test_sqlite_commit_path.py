"""The SQLite step commit's write path: one read for the fence and the session's seq
counter, the step row first, and a commit of a step journaled already answered from
the journal (never written twice)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tether import errors, types
from tether.store.sqlite import SQLiteStore


def step(task_id: str, index: int, fingerprint: str = "fp") -> types.StepRecord:
    return types.StepRecord(
        task_id=task_id,
        index=index,
        kind="model",
        name="m",
        fingerprint=f"{fingerprint}-{index}",
        status="completed",
        output={"index": index},
        started_at=1.0,
        finished_at=2.0,
        worker="w1",
    )


def commit(
    lease: types.Lease,
    index: int,
    *texts: str,
    fingerprint: str = "fp",
    state: dict[str, object] | None = None,
) -> types.StepCommit:
    return types.StepCommit(
        lease=lease,
        step=step(lease.task_id, index, fingerprint),
        messages=tuple(types.Message(role="assistant", content=t) for t in texts),
        session_state=state,
        events=(types.NewEvent("step.done", step=index),),
    )


def counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("steps", "messages", "events")
        }
    finally:
        conn.close()


def test_a_commit_of_a_step_journaled_already_returns_its_seqs(tmp_path: Path) -> None:
    path = tmp_path / "t.db"

    async def main() -> None:
        store = SQLiteStore(f"sqlite:///{path}")
        await store.open()
        try:
            task = await store.submit_task(types.NewTask(tenant="a", agent="x", input="hi"))
            claim = await store.claim_task("w1", lease_ttl=60)
            assert claim is not None
            lease = claim.lease
            (first,) = await store.commit_steps([commit(lease, 0, "one", "two", state={"n": 1})])
            assert isinstance(first, types.CommitResult) and first.message_seqs == (2, 3)
            before = counts(path)
            # the same commit again (a retry after an unacknowledged commit): same seqs
            (again,) = await store.commit_steps([commit(lease, 0, "one", "two", state={"n": 1})])
            assert isinstance(again, types.CommitResult) and again.message_seqs == (2, 3)
            # a step without messages, committed twice
            (bare,) = await store.commit_steps([commit(lease, 1)])
            (bare2,) = await store.commit_steps([commit(lease, 1)])
            assert isinstance(bare2, types.CommitResult) and bare2 == bare
            assert counts(path) == {**before, "steps": 2, "events": 2}
            # another step at a journaled index (other inputs or other messages): a conflict,
            # rolled back whole
            others = await store.commit_steps(
                [commit(lease, 0, "one", "two", fingerprint="other"), commit(lease, 0, "three")]
            )
            assert all(isinstance(r, errors.Conflict) for r in others)
            assert counts(path) == {**before, "steps": 2, "events": 2}
            session = await store.get_session(task.session_id)
            assert session.last_seq == 3 and session.state == {"n": 1}
            # the next step goes on from the session's counter
            (nxt,) = await store.commit_steps([commit(lease, 2, "four")])
            assert isinstance(nxt, types.CommitResult) and nxt.message_seqs == (4,)
            journal = await store.load_journal(task.id)
            assert [s.message_seqs for s in journal] == [(2, 3), (), (4,)]
        finally:
            await store.close()

    asyncio.run(main())


def test_state_and_messages_update_the_session_once(tmp_path: Path) -> None:
    path = tmp_path / "t.db"

    async def main() -> None:
        store = SQLiteStore(f"sqlite:///{path}")
        await store.open()
        try:
            task = await store.submit_task(types.NewTask(tenant="a", agent="x", input="hi"))
            claim = await store.claim_task("w1", lease_ttl=60)
            assert claim is not None
            await store.commit_steps([commit(claim.lease, 0, state={"only": "state"})])
            session = await store.get_session(task.session_id)
            assert (session.last_seq, session.state) == (1, {"only": "state"})
            await store.commit_steps([commit(claim.lease, 1, "m")])
            session = await store.get_session(task.session_id)
            assert (session.last_seq, session.state) == (2, {"only": "state"})
            await store.commit_steps([commit(claim.lease, 2, "n", state={"s": 2})])
            session = await store.get_session(task.session_id)
            assert (session.last_seq, session.state) == (3, {"s": 2})
            history = await store.list_messages(task.session_id)
            assert [m.message.content for m in history] == ["hi", "m", "n"]
        finally:
            await store.close()

    asyncio.run(main())
