"""No task runs twice at once: worker slots are keyed on what the store is (not how its
URL is spelled), a worker takes back only leases whose holder has stopped, a heartbeat
that could let a lease lapse is refused, and a task claimed again while this process
still runs it starts only after that run ends."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tether import errors, types
from tether.execution import holder
from tether.execution.context import TaskContext
from tether.execution.identity import store_key, worker_identity
from tether.execution.runner import FunctionWorkflow
from tether.execution.settings import ExecutionSettings
from tether.execution.worker import Worker
from tether.store import open_store
from tether.store.base import Store


def _run(url: str, body: Callable[[Store], Awaitable[None]]) -> None:
    async def main() -> None:
        store = open_store(url)
        await store.open()
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def _task(agent: str = "work") -> types.NewTask:
    return types.NewTask(tenant="acme", agent=agent, input="go")


def test_sqlite_slots_follow_the_file_not_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(tmp_path)
    spellings = ["sqlite:///r.db", "sqlite:///./r.db", f"sqlite:///{tmp_path}/link/r.db"]
    keys = {asyncio.run(store_key(url)) for url in spellings}
    assert len(keys) == 1
    key = keys.pop()
    with worker_identity(None, key) as first, worker_identity(None, key) as second:
        assert first != second  # two live workers of one store never share an id
    assert key != asyncio.run(store_key("sqlite:///other.db"))


def test_postgres_slots_follow_the_server_not_the_host_name(pg_url: str) -> None:
    by_name = pg_url.replace("127.0.0.1", "localhost")
    assert by_name != pg_url
    assert asyncio.run(store_key(by_name)) == asyncio.run(store_key(pg_url))


@pytest.mark.parametrize("lease_ttl, heartbeat", [(10.0, 5.0), (10.0, 20.0), (2.0, 0.0)])
def test_a_heartbeat_that_lets_a_lease_lapse_is_refused(lease_ttl: float, heartbeat: float) -> None:
    with pytest.raises(errors.InvalidInput, match="half the lease ttl"):
        ExecutionSettings(lease_ttl=lease_ttl, heartbeat_interval=heartbeat)
    with pytest.raises(errors.InvalidInput, match="lease ttl must be a positive"):
        ExecutionSettings(lease_ttl=0)


def _foreign_owner(worker_id: str) -> str:
    """A lease owner written by the same worker id on another host."""
    return f"{worker_id}/deadbeef-ffffff-1.1"


def test_a_holder_on_another_host_that_renews_keeps_its_lease(tmp_path: Path) -> None:
    fast = ExecutionSettings(lease_ttl=60.0, heartbeat_interval=0.2, poll_interval=0.05)

    async def body(s: Store) -> None:
        task = await s.submit_task(_task())
        claim = await s.claim_task(_foreign_owner("dup"), lease_ttl=60.0, agents=["work"])
        assert claim is not None
        lease = claim.lease
        renewing = True

        async def renew() -> None:
            nonlocal lease
            while renewing:
                await asyncio.sleep(0.1)
                lease = await s.renew_lease(lease, lease_ttl=60.0)

        renewer = asyncio.ensure_future(renew())
        try:
            live = Worker(s, {"work": _noop()}, worker_id="dup", settings=fast)
            assert await live.take_back() == []  # its holder renews: not taken
        finally:
            renewing = False
            await renewer
        quiet = Worker(s, {"work": _noop()}, worker_id="dup", settings=fast)
        assert await quiet.take_back() == [task.id]  # stopped renewing: taken back
        await quiet.shutdown(grace=5)
        runs = await s.list_runs(task.id)
        assert [r.reason for r in runs] == ["start", "resume"]  # long before the expiry

    _run(f"sqlite:///{tmp_path / 'a.db'}", body)


def test_a_holder_process_of_this_host_that_died_is_taken_back_at_once(tmp_path: Path) -> None:
    """Its process is gone: no wait for the lease (120 s) nor for a renewal period (40 s)."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    owner = f"dup/deadbeef-{holder.HOST_TAG}-{dead.stdout.strip()}.1"

    async def body(s: Store) -> None:
        task = await s.submit_task(_task())
        assert await s.claim_task(owner, lease_ttl=120.0, agents=["work"]) is not None
        again = Worker(s, {"work": _noop()}, worker_id="dup", settings=ExecutionSettings(120.0))
        assert await asyncio.wait_for(again.take_back(), 20) == [task.id]
        await again.shutdown(grace=5)

    _run(f"sqlite:///{tmp_path / 'b.db'}", body)


def _noop() -> FunctionWorkflow:
    async def work(ctx: TaskContext, input: str) -> str:
        return await ctx.step("noop", lambda: "done")

    return FunctionWorkflow(work, name="work")


def _tracked(active: list[int], peak: list[int], release: asyncio.Event) -> FunctionWorkflow:
    async def side_effect() -> str:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        try:
            await release.wait()
        finally:
            active[0] -= 1
        return "effect"

    async def work(ctx: TaskContext, input: str) -> str:
        return await ctx.step("effect", side_effect)

    return FunctionWorkflow(work, name="work")


def test_a_live_worker_with_the_same_id_keeps_its_running_task(tmp_path: Path) -> None:
    settings = ExecutionSettings(lease_ttl=30.0, poll_interval=0.05)

    async def body(s: Store) -> None:
        active, peak, release = [0], [0], asyncio.Event()
        first = Worker(
            s, {"work": _tracked(active, peak, release)}, worker_id="twin", settings=settings
        )
        serving = asyncio.ensure_future(first.serve())
        task = await s.submit_task(_task())
        while active[0] == 0:
            await asyncio.sleep(0.02)
        second = Worker(
            s, {"work": _tracked(active, peak, release)}, worker_id="twin", settings=settings
        )
        assert await second.take_back() == []
        release.set()
        while (await s.get_task(task.id)).status != "completed":
            await asyncio.sleep(0.05)
        first.drain()
        await first.shutdown(grace=5)
        await serving
        assert peak[0] == 1
        assert (await s.get_task(task.id)).runs == 1

    _run(f"sqlite:///{tmp_path / 'c.db'}", body)


def test_a_task_claimed_again_while_running_here_never_runs_beside_itself(
    tmp_path: Path,
) -> None:
    """Its lease lapsed mid-step (a store outage, say) and this worker's own claim loop
    claimed it again: the new run starts once the old one has ended."""
    settings = ExecutionSettings(lease_ttl=30.0, poll_interval=0.05)

    async def body(s: Store) -> None:
        active, peak, release = [0], [0], asyncio.Event()
        worker = Worker(
            s, {"work": _tracked(active, peak, release)}, worker_id="solo", settings=settings
        )
        serving = asyncio.ensure_future(worker.serve())
        task = await s.submit_task(_task())
        while active[0] == 0:
            await asyncio.sleep(0.02)
        await s.expire_lease(task.id)
        while (await s.get_task(task.id)).runs < 2:  # claimed again by the same worker
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # room for a second run to (wrongly) enter the step
        release.set()
        while (await s.get_task(task.id)).status != "completed":
            await asyncio.sleep(0.05)
        worker.drain()
        await worker.shutdown(grace=5)
        await serving
        assert peak[0] == 1

    _run(f"sqlite:///{tmp_path / 'd.db'}", body)


def test_pid_check_is_not_fooled_by_this_process() -> None:
    here = f"w/abc-{holder.HOST_TAG}-{os.getpid()}.1"
    assert holder.known_verdict(here, "no-such-task") is True
    assert holder.known_verdict("w/abcdef12.1", "t") is None  # an older owner format
