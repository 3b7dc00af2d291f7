"""PostgreSQL-only behaviour: concurrent migrators, SKIP LOCKED claiming, one running task
per session under racing claimers, LISTEN/NOTIFY wake-ups, the database clock, and
connection loss mapped to ``StoreUnavailable`` and ridden out.

Every test runs against the machine's server (see ``tests/pg.py``); what the Store
promises on both engines is in ``tests/contract/``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import psycopg
import pytest

import pg
from tether import errors, types
from tether.execution.context import TaskContext
from tether.execution.runner import FunctionWorkflow
from tether.execution.settings import ExecutionSettings
from tether.execution.worker import Worker
from tether.store import counts, migrations, open_store
from tether.store import postgres_connection as connection
from tether.store import postgres_queries as queries
from tether.store.base import Claim, MemoryItem
from tether.store.postgres import PostgresStore

T = TypeVar("T")


def run(url: str, body: Callable[[PostgresStore], Awaitable[T]]) -> T:
    async def main() -> T:
        store = PostgresStore(url)
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def new_task(session_id: str | None = None, agent: str = "agent") -> types.NewTask:
    return types.NewTask(tenant="acme", agent=agent, input="hello", session_id=session_id)


def sql(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query.encode())
        return cur.fetchall() if cur.description else []


@pytest.fixture
def empty_url() -> Iterator[str]:
    url = pg.empty_url()
    try:
        yield url
    finally:
        pg.drop_url(url)


def test_open_store_picks_postgres_by_scheme(pg_url: str) -> None:
    assert isinstance(open_store(pg_url), PostgresStore)
    assert isinstance(open_store(pg_url.replace("postgresql://", "postgres://")), PostgresStore)


def test_ten_concurrent_migrators_end_at_one_version(empty_url: str) -> None:
    shipped = migrations.load("postgres")
    failures: list[BaseException] = []
    start = threading.Barrier(10)

    def migrator() -> None:
        async def main() -> None:
            store = PostgresStore(empty_url)
            start.wait()
            await store.open()
            await store.close()

        try:
            asyncio.run(main())
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=migrator) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert run(empty_url, lambda s: s.schema_version()) == shipped[-1].version
    recorded = sql(empty_url, "SELECT version FROM schema_migrations ORDER BY version")
    assert [v for (v,) in recorded] == [m.version for m in shipped]


def test_migration_numbers_match_sqlite() -> None:
    assert [m.label for m in migrations.load("postgres")] == [
        m.label for m in migrations.load("sqlite")
    ]


def test_a_store_newer_than_the_code_is_refused(pg_url: str) -> None:
    sql(
        pg_url,
        "INSERT INTO schema_migrations (version, name, checksum, applied_at)"
        " VALUES (999, 'future', 'x', 0)",
    )
    with pytest.raises(errors.StoreVersionError, match="999"):
        run(pg_url, lambda s: s.schema_version())


def test_pending_migrations_refused_without_migrate(empty_url: str) -> None:
    async def main() -> None:
        store = PostgresStore(empty_url, migrate=False)
        with pytest.raises(errors.StoreVersionError, match="tether migrate"):
            await store.open()
        await store.close()

    asyncio.run(main())


def test_racing_claimers_take_each_task_once(pg_url: str) -> None:
    async def body(s: PostgresStore) -> None:
        submitted = {(await s.submit_task(new_task())).id for _ in range(24)}
        stores = [PostgresStore(pg_url) for _ in range(6)]
        for other in stores:
            await other.open()
        try:

            async def drain(store: PostgresStore, worker: str) -> list[str]:
                got: list[str] = []  # a new worker id per claim: a worker resumes its own
                while c := await store.claim_task(f"{worker}-{len(got)}", lease_ttl=60):
                    assert c.reason == "start"
                    got.append(c.task.id)
                return got

            taken = await asyncio.gather(*(drain(st, f"w{i}") for i, st in enumerate(stores)))
        finally:
            for other in stores:
                await other.close()
        flat = [t for got in taken for t in got]
        assert sorted(flat) == sorted(submitted)  # every task once, none twice

    run(pg_url, body)


def test_racing_claimers_start_one_task_per_session(pg_url: str) -> None:
    async def body(s: PostgresStore) -> None:
        first = await s.submit_task(new_task())
        for _ in range(5):
            await s.submit_task(new_task(first.session_id))
        stores = [PostgresStore(pg_url) for _ in range(6)]
        for other in stores:
            await other.open()
        try:
            claims = await asyncio.gather(
                *(st.claim_task(f"w{i}", lease_ttl=60) for i, st in enumerate(stores))
            )
        finally:
            for other in stores:
                await other.close()
        got = [c for c in claims if c is not None]
        assert [c.task.id for c in got] == [first.id]
        running = await s.list_tasks(session_id=first.session_id, status="running")
        assert [t.id for t in running] == [first.id]

    run(pg_url, body)


def test_the_schema_refuses_two_running_tasks_in_one_session(pg_url: str) -> None:
    async def body(s: PostgresStore) -> tuple[str, str]:
        a = await s.submit_task(new_task())
        b = await s.submit_task(new_task(a.session_id))
        await s.claim_task("w1", lease_ttl=60)
        return a.id, b.id

    _, b = run(pg_url, body)
    with pytest.raises(psycopg.errors.UniqueViolation, match="tasks_one_running_per_session"):
        sql(pg_url, f"UPDATE tasks SET status = 'running' WHERE id = '{b}'")


def test_a_claim_skips_a_task_another_transaction_holds(pg_url: str) -> None:
    async def body(s: PostgresStore) -> None:
        held = await s.submit_task(new_task())
        free = await s.submit_task(new_task())
        with psycopg.connect(pg_url) as other:  # a transaction holding the oldest task's row
            other.execute(f"SELECT 1 FROM tasks WHERE id = '{held.id}' FOR UPDATE".encode())
            claim = await s.claim_task("w1", lease_ttl=60)
            assert claim is not None and claim.task.id == free.id
            other.rollback()
        again = await s.claim_task("w2", lease_ttl=60)
        assert again is not None and again.task.id == held.id

    run(pg_url, body)


def test_lease_times_come_from_the_database_clock(pg_url: str) -> None:
    async def body(s: PostgresStore) -> None:
        await s.submit_task(new_task())
        (before,) = sql(pg_url, "SELECT extract(epoch from clock_timestamp())::float8")[0]
        claim = await s.claim_task("w1", lease_ttl=30)
        (after,) = sql(pg_url, "SELECT extract(epoch from clock_timestamp())::float8")[0]
        assert claim is not None
        assert isinstance(before, float) and isinstance(after, float)
        assert before + 30 <= claim.lease.expires_at <= after + 30
        renewed = await s.renew_lease(claim.lease, lease_ttl=60)
        assert renewed.expires_at >= after + 60
        stored = await s.get_task(claim.task.id)
        assert stored.lease_expires_at == renewed.expires_at

    run(pg_url, body)


def test_an_idle_worker_is_woken_by_a_submit_elsewhere(pg_url: str) -> None:
    async def body(s: PostgresStore) -> None:
        assert await s.wait_for_work(0.05) is False  # nothing happened: the wait times out
        submitter = PostgresStore(pg_url)
        await submitter.open()
        try:
            waiting = asyncio.ensure_future(s.wait_for_work(60))
            await asyncio.wait_for(s._listener.listening.wait(), 60)
            await submitter.submit_task(new_task())
            assert await waiting is True  # woken by the NOTIFY, long before the 60 s timeout
            claim = await s.claim_task("w1", lease_ttl=60)
            assert claim is not None
            finished = asyncio.ensure_future(s.wait_for_work(60))
            await submitter.finish_task(claim.lease, status="completed", output="ok")
            assert await finished is True  # a finish may free the session's next task
        finally:
            await submitter.close()

    run(pg_url, body)


def test_an_idle_worker_claims_a_task_submitted_elsewhere_without_waiting_for_its_poll(
    pg_url: str,
) -> None:
    """The worker's idle wait listens: with a 60 s poll it still starts a task that
    another process submits (the submit's NOTIFY wakes it)."""

    async def echo(ctx: TaskContext, input: str) -> str:
        return await ctx.step("echo", lambda: input.upper())

    async def body(s: PostgresStore) -> None:
        worker = Worker(
            s,
            {"echo": FunctionWorkflow(echo, name="echo")},
            worker_id="listening",
            settings=ExecutionSettings(poll_interval=60.0),
        )
        serving = asyncio.ensure_future(worker.serve())
        submitter = PostgresStore(pg_url)
        await submitter.open()
        try:
            await asyncio.sleep(0.2)  # the worker has looked once and is idle now
            await asyncio.wait_for(s._listener.listening.wait(), 30)
            task = await submitter.submit_task(new_task(agent="echo"))
            for _ in range(300):  # 30 s at most, half the poll interval
                if (await submitter.get_task(task.id)).status == "completed":
                    break
                await asyncio.sleep(0.1)
            done = await submitter.get_task(task.id)
            assert (done.status, done.output) == ("completed", "HELLO")
        finally:
            await worker.shutdown(grace=5)
            await serving
            await submitter.close()

    run(pg_url, body)


def test_the_listener_reconnects_after_its_connection_is_killed(pg_url: str) -> None:
    async def body(s: PostgresStore) -> None:
        await s.wait_for_work(0.01)
        await asyncio.wait_for(s._listener.listening.wait(), 60)
        sql(
            pg_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        while s._listener.listening.is_set():
            await asyncio.sleep(0.01)
        await asyncio.wait_for(s._listener.listening.wait(), 60)
        waiting = asyncio.ensure_future(s.wait_for_work(60))
        await s.submit_task(new_task())
        assert await waiting is True

    run(pg_url, body)


def test_lost_connections_are_store_unavailable_then_ridden_out(pg_url: str) -> None:
    async def body(s: PostgresStore) -> None:
        task = await s.submit_task(new_task())
        sql(
            pg_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        with pytest.raises(errors.StoreUnavailable) as caught:
            await s.get_task(task.id)
        assert caught.value.retryable and caught.value.where == "infra"
        assert isinstance(caught.value.__cause__, psycopg.OperationalError)
        assert (await s.get_task(task.id)).id == task.id  # broken connections were dropped

    run(pg_url, body)


def test_no_server_is_store_unavailable() -> None:
    async def main() -> None:
        store = PostgresStore("postgresql://postgres@127.0.0.1:1/test?pool_timeout=1")
        with pytest.raises(errors.StoreUnavailable, match=r"127\.0\.0\.1:1"):
            await store.open()

    asyncio.run(main())


def test_url_options_are_checked() -> None:
    with pytest.raises(errors.InvalidInput, match="pool_max"):
        PostgresStore("postgresql://127.0.0.1/test?pool_max=many")
    with pytest.raises(errors.InvalidInput, match="pool_min"):
        PostgresStore("postgresql://127.0.0.1/test?pool_min=5&pool_max=2")


def test_a_retried_commit_after_a_lost_acknowledgement_is_idempotent(pg_url: str) -> None:
    async def body(s: PostgresStore) -> None:
        await s.submit_task(new_task())
        claim = await s.claim_task("w1", lease_ttl=60)
        assert claim is not None
        commit = types.StepCommit(
            lease=claim.lease,
            step=types.StepRecord(
                task_id=claim.task.id, index=0, kind="model", name="m", fingerprint="fp",
                status="completed", output={"ok": 1}, started_at=1.0, finished_at=2.0,
            ),
            messages=(types.Message(role="assistant", content="hi"),),
        )  # fmt: skip
        (first,) = await s.commit_steps([commit])
        (again,) = await s.commit_steps([commit])  # the same commit, sent again
        assert isinstance(first, types.CommitResult) and again == first
        assert len(await s.load_journal(claim.task.id)) == 1
        assert len(await s.list_messages(claim.task.session_id)) == 2  # input + "hi", once

    run(pg_url, body)


def test_vector_memory_is_fenced_and_searchable(pg_url: str) -> None:
    async def body(s: PostgresStore) -> None:
        task = await s.submit_task(new_task())
        claim = await s.claim_task("w1", lease_ttl=60)
        assert claim is not None
        items = [
            MemoryItem(seq=1, role="user", text="cats", vector=(1.0, 0.0)),
            MemoryItem(seq=2, role="assistant", text="dogs", vector=(0.0, 1.0)),
        ]
        await s.add_memory(claim.lease, task.session_id, items)
        hits = await s.search_memory(task.session_id, [0.9, 0.1], 1)
        assert [h.item.text for h in hits] == ["cats"]
        assert [i.seq for i in await s.list_memory(task.session_id)] == [1, 2]
        with pytest.raises(errors.InvalidInput, match="dimensions"):
            await s.add_memory(
                claim.lease, task.session_id, [MemoryItem(3, "user", "x", (1.0, 0.0, 0.0))]
            )
        await s.expire_lease(task.id)
        await s.claim_task("w2", lease_ttl=60)
        with pytest.raises(errors.LeaseLost):
            await s.add_memory(claim.lease, task.session_id, items)

    run(pg_url, body)


def test_a_batch_commits_in_one_round_trip_and_a_refused_step_spares_the_others(
    pg_url: str,
) -> None:
    """Group commit is pipelined (BEGIN, fence, one write per commit, COMMIT in one round
    trip); a step the schema refuses aborts that transaction, and the batch is then
    written commit by commit, so only the refused one fails."""

    def commit(claim: Claim, index: int, kind: str = "model") -> types.StepCommit:
        return types.StepCommit(
            lease=claim.lease,
            step=types.StepRecord(
                task_id=claim.task.id, index=index, kind=kind, name="m",  # type: ignore[arg-type]
                fingerprint=f"fp{index}", status="completed", output=None,
                started_at=1.0, finished_at=2.0,
            ),
            messages=(types.Message(role="assistant", content=f"step {index}"),),
        )  # fmt: skip

    async def body(s: PostgresStore) -> None:
        claims = []
        for worker in ("w1", "w2", "w3"):
            await s.submit_task(new_task())
            claim = await s.claim_task(worker, lease_ttl=60)
            assert claim is not None
            claims.append(claim)
        before = counts.POSTGRES.snapshot()
        first = await s.commit_steps([commit(c, 0) for c in claims])
        assert counts.POSTGRES.round_trips - before.round_trips == 1
        assert all(isinstance(r, types.CommitResult) for r in first)
        a, b, c = claims
        results = await s.commit_steps([commit(a, 1), commit(b, 1, kind="bogus"), commit(c, 1)])
        assert isinstance(results[0], types.CommitResult)
        assert isinstance(results[1], errors.InvalidInput)
        assert results[2] == types.CommitResult(message_seqs=(3,))
        assert [len(await s.load_journal(x.task.id)) for x in claims] == [2, 1, 2]
        assert len(await s.list_messages(b.task.session_id)) == 2  # input + step 0

    run(pg_url, body)


def test_array_parameters_written_as_literals_read_back_exactly(pg_url: str) -> None:
    """The commit sends its lists as array literals (``text_array``, ``number_array``):
    every string (quotes, backslashes, braces, the word NULL, JSON) and number comes
    back as given, and None as a null element."""
    texts = ['a "quoted" \\ back\\slash', "{,}", "NULL", "", None, '{"k": ["v\\"\\\\"]}', "é\n\t"]
    numbers = [0, -3, 2**40, None]
    floats = [1796080048.2087839, 0.1, -1e-300, float("inf"), None]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT %s::text[], %s::bigint[], %s::double precision[], %s::text[]",
            (
                connection.text_array(texts),
                connection.number_array(numbers),
                connection.number_array(floats),
                connection.text_array([]),
            ),
        ).fetchone()
    assert row == (texts, numbers, floats, [])


def test_step_writes_run_on_generic_plans(pg_url: str) -> None:
    """The batch's fence sets ``plan_cache_mode`` for its transaction: once psycopg has
    prepared the step write, PostgreSQL runs it on its generic plan, never planning it
    afresh for each commit's parameters (about 0.4 ms of server CPU a step)."""

    async def body(s: PostgresStore) -> list[tuple[int, int]]:
        await s.submit_task(new_task())
        claim = await s.claim_task("w1", lease_ttl=60)
        assert claim is not None
        for index in range(12):
            step = types.StepRecord(
                task_id=claim.task.id, index=index, kind="model", name="m",
                fingerprint=f"fp{index}", status="completed", output=None,
                started_at=1.0, finished_at=2.0,
            )  # fmt: skip
            [done] = await s.commit_steps([types.StepCommit(lease=claim.lease, step=step)])
            assert isinstance(done, types.CommitResult)
        found = await s._run(
            lambda conn: queries.fetch_all(
                conn,
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE '%INSERT INTO steps%'",
            )
        )
        return [(r["generic_plans"], r["custom_plans"]) for r in found]

    [(generic, custom)] = run(pg_url + "?pool_max=1", body)
    assert generic >= 5 and custom == 0


def test_a_pipelined_batch_cut_short_commits_nothing(pg_url: str) -> None:
    """A batch has no BEGIN: the pipeline's Sync commits it. An error raised in the block
    after statements were queued must not let that Sync commit them."""

    async def body(s: PostgresStore) -> int:
        async def cut_short(conn: queries.Connection) -> int:
            await conn.execute("CREATE TEMP TABLE cut (x int)")
            with pytest.raises(RuntimeError):
                async with connection.pipelined_batch(conn):
                    await conn.execute("INSERT INTO cut VALUES (1)")
                    raise RuntimeError("cut short")
            async with connection.pipelined_batch(conn):
                await conn.execute("INSERT INTO cut VALUES (2)")
            row = await queries.fetch_one(conn, "SELECT COALESCE(SUM(x), 0) AS n FROM cut")
            assert row is not None
            return int(row["n"])

        return await s._run(cut_short)

    assert run(pg_url, body) == 2


def test_a_batch_of_many_tasks_numbers_messages_and_events_per_session_and_task(
    pg_url: str,
) -> None:
    """One statement writes a batch of several tasks' steps (``_WRITE_STEPS``): each
    session's messages and each task's events are numbered on from their own last, a
    repeated commit in a batch is answered as already done, and the journal refers to
    the seqs it got."""

    def commit(claim: Claim, index: int, *texts: str, events: int = 0) -> types.StepCommit:
        return types.StepCommit(
            lease=claim.lease,
            step=types.StepRecord(
                task_id=claim.task.id, index=index, kind="model", name="m",
                fingerprint=f"fp{index}", status="completed", output={"i": index},
                started_at=1.0, finished_at=2.0,
            ),
            messages=tuple(types.Message(role="assistant", content=t) for t in texts),
            events=tuple(types.NewEvent(name=f"e{index}.{k}", step=index) for k in range(events)),
            session_state={"at": index} if index else None,
        )  # fmt: skip

    async def body(s: PostgresStore) -> None:
        claims = []
        for worker in ("w1", "w2", "w3"):
            await s.submit_task(new_task())
            claim = await s.claim_task(worker, lease_ttl=60)
            assert claim is not None
            claims.append(claim)
        a, b, c = claims
        before = counts.POSTGRES.snapshot()
        first = await s.commit_steps(
            [commit(a, 0, "a0", 'a"1\\', events=2), commit(b, 0), commit(c, 0, "c0", events=1)]
        )
        assert first == [
            types.CommitResult(message_seqs=(2, 3)),
            types.CommitResult(message_seqs=()),
            types.CommitResult(message_seqs=(2,)),
        ]
        assert counts.POSTGRES.statements - before.statements == 2  # the fence, one write
        second = await s.commit_steps(
            [commit(c, 1, "c1", events=2), commit(b, 1, "b1", "b2", events=1)]
        )
        assert second == [
            types.CommitResult(message_seqs=(3,)),
            types.CommitResult(message_seqs=(2, 3)),
        ]
        again = await s.commit_steps([commit(a, 0, "a0", 'a"1\\', events=2), commit(c, 2)])
        assert again == [
            types.CommitResult(message_seqs=(2, 3)),
            types.CommitResult(message_seqs=()),
        ]
        texts = {
            x.task.id: [
                (m.seq, m.message.content) for m in await s.list_messages(x.task.session_id)
            ]
            for x in claims
        }
        assert texts[a.task.id] == [(1, "hello"), (2, "a0"), (3, 'a"1\\')]
        assert texts[b.task.id] == [(1, "hello"), (2, "b1"), (3, "b2")]
        assert texts[c.task.id] == [(1, "hello"), (2, "c0"), (3, "c1")]
        events = {
            x.task.id: [(e.seq, e.name) for e in await s.list_events(x.task.id)] for x in claims
        }
        assert events[a.task.id] == [(1, "e0.0"), (2, "e0.1")]
        assert events[b.task.id] == [(1, "e1.0")]
        assert events[c.task.id] == [(1, "e0.0"), (2, "e1.0"), (3, "e1.1")]
        assert len(await s.load_journal(c.task.id)) == 3
        journal = [(st.index, st.message_seqs) for st in await s.load_journal(b.task.id)]
        assert journal == [(0, ()), (1, (2, 3))]
        session = await s.get_session(b.task.session_id)
        assert (session.last_seq, session.state) == (3, {"at": 1})

    run(pg_url, body)
