"""The group committer: every caller hears its own commit's result; a caller cancelled
while its commit waits for the batch does not stop that commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tether import types
from tether.execution.committer import Committer
from tether.store import open_store


def _commit(claim_lease: types.Lease, index: int) -> types.StepCommit:
    now = types.now()
    step = types.StepRecord(
        task_id=claim_lease.task_id,
        index=index,
        kind="custom",
        name=f"s{index}",
        fingerprint=f"fp{index}",
        status="completed",
        output=index,
        error=None,
        attempts=1,
        started_at=now,
        finished_at=now,
        worker="w",
    )
    return types.StepCommit(lease=claim_lease, step=step)


def test_a_cancelled_caller_leaves_its_commit_in_the_batch(tmp_path: Path) -> None:
    async def main() -> None:
        store = open_store(f"sqlite:///{tmp_path / 't.db'}")
        await store.open()
        try:
            task = await store.submit_task(types.NewTask(tenant="t", agent="a", input="go"))
            claim = await store.claim_task("w", lease_ttl=30)
            assert claim is not None
            committer = Committer(store)
            kept = asyncio.ensure_future(committer.commit(_commit(claim.lease, 0)))
            dropped = asyncio.ensure_future(committer.commit(_commit(claim.lease, 1)))
            await asyncio.sleep(0)  # both queued in one batch
            dropped.cancel()
            assert isinstance(await kept, types.CommitResult)  # the batch is written
            assert dropped.cancelled()
            assert [s.index for s in await store.load_journal(task.id)] == [0, 1]
        finally:
            await store.close()

    asyncio.run(main())
