"""Sessions and tasks: create, submit, read, scope by tenant."""

from __future__ import annotations

import asyncio

import pytest
from contract_support import StoreCase, claim, submit

from tether import errors, types
from tether.store import Store


def test_create_get_and_list_sessions(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        first = await s.create_session("acme", "agent")
        second = await s.create_session("acme", "other", session_id="s-fixed")
        await s.create_session("globex", "agent")
        assert second.id == "s-fixed"
        got = await s.get_session(first.id, tenant="acme")
        assert (got.tenant, got.agent, got.last_seq, got.state) == ("acme", "agent", 0, {})
        assert [x.id for x in await s.list_sessions(tenant="acme")] == ["s-fixed", first.id]
        assert len(await s.list_sessions()) == 3
        assert len(await s.list_sessions(limit=1)) == 1

    store.run(body)


def test_session_of_another_tenant_is_not_found(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        sess = await s.create_session("acme", "agent")
        with pytest.raises(errors.NotFound, match=sess.id):
            await s.get_session(sess.id, tenant="globex")
        with pytest.raises(errors.NotFound, match="nope"):
            await s.get_session("nope")
        with pytest.raises(errors.NotFound):
            await s.list_messages(sess.id, tenant="globex")
        assert (await s.get_session(sess.id)).id == sess.id  # the operator sees every tenant

    store.run(body)


def test_duplicate_session_id_is_a_conflict(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        await s.create_session("acme", "agent", session_id="dup")
        with pytest.raises(errors.Conflict, match="dup"):
            await s.create_session("acme", "agent", session_id="dup")

    store.run(body)


def test_submit_creates_a_session_and_queues_the_task(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await s.submit_task(
            types.NewTask(
                tenant="acme",
                agent="agent",
                input="hi",
                spec="app.py:agent",
                trace_context={"traceparent": "00-abc-def-01"},
            )
        )
        assert (task.status, task.input, task.runs, task.lease_epoch) == ("queued", "hi", 0, 0)
        assert task.spec == "app.py:agent"
        assert task.trace_context == {"traceparent": "00-abc-def-01"}
        assert task.input_seq is None and task.lease_owner is None
        session = await s.get_session(task.session_id, tenant="acme")
        assert (session.agent, session.last_seq) == ("agent", 0)  # input joins on first start
        assert await s.get_task(task.id, tenant="acme") == task

    store.run(body)


def test_submit_to_an_existing_session(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        first = await submit(s)
        second = await submit(s, session_id=first.session_id, input="again")
        assert second.session_id == first.session_id
        assert len(await s.list_sessions()) == 1
        assert [t.id for t in await s.list_tasks(session_id=first.session_id)] == [
            second.id,
            first.id,
        ]

    store.run(body)


def test_submit_to_another_tenants_session_is_not_found(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        theirs = await submit(s, tenant="globex")
        with pytest.raises(errors.NotFound, match=theirs.session_id):
            await submit(s, tenant="acme", session_id=theirs.session_id)
        with pytest.raises(errors.NotFound):
            await submit(s, session_id="no-such-session")
        assert [t.id for t in await s.list_tasks()] == [theirs.id]

    store.run(body)


def test_idempotency_key_returns_the_same_task(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        first = await submit(s, idempotency_key="k1")
        again = await submit(s, idempotency_key="k1", input="different")
        assert again == first
        other_tenant = await submit(s, tenant="globex", idempotency_key="k1")
        assert other_tenant.id != first.id
        assert len(await s.list_tasks()) == 2
        assert len(await s.list_sessions()) == 2

    store.run(body)


def test_explicit_task_id_is_kept_and_a_duplicate_is_a_conflict(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        new = types.NewTask(tenant="acme", agent="agent", input="x", task_id="t-1")
        assert (await s.submit_task(new)).id == "t-1"
        with pytest.raises(errors.Conflict, match="t-1"):
            await s.submit_task(new)

    store.run(body)


def test_get_task_scoped_by_tenant(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s, tenant="acme")
        with pytest.raises(errors.NotFound, match=task.id):
            await s.get_task(task.id, tenant="globex")
        with pytest.raises(errors.NotFound, match="missing"):
            await s.get_task("missing")

    store.run(body)


def test_list_tasks_newest_first_with_filters(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        a = await submit(s, tenant="acme")
        b = await submit(s, tenant="globex")
        c = await submit(s, tenant="acme")
        await claim(s, task_id=a.id)
        assert [t.id for t in await s.list_tasks()] == [c.id, b.id, a.id]
        assert [t.id for t in await s.list_tasks(tenant="acme")] == [c.id, a.id]
        assert [t.id for t in await s.list_tasks(status="running")] == [a.id]
        assert [t.id for t in await s.list_tasks(tenant="acme", status="queued")] == [c.id]
        assert [t.id for t in await s.list_tasks(limit=2)] == [c.id, b.id]

    store.run(body)


def test_concurrent_submits_all_land(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        sess = await s.create_session("acme", "agent")
        tasks = await asyncio.gather(
            *(submit(s, session_id=sess.id, input=str(i)) for i in range(30))
        )
        assert len({t.id for t in tasks}) == 30
        assert len(await s.list_tasks(session_id=sess.id)) == 30

    store.run(body)


def test_data_survives_reopening(store: StoreCase) -> None:
    created: list[types.TaskRecord] = []

    async def write(s: Store) -> None:
        created.append(await submit(s))

    async def read(s: Store) -> None:
        assert await s.get_task(created[0].id) == created[0]

    store.run(write)
    store.run(read)


def test_a_fresh_store_is_at_the_latest_schema(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        version = await s.schema_version()
        assert version >= 1
        assert await s.migrate(dry_run=True) == []
        assert await s.migrate() == []
        assert await s.schema_version() == version

    store.run(body)


def test_racing_submits_with_one_idempotency_key_make_one_task_and_one_session(
    store: StoreCase,
) -> None:
    async def body(s: Store) -> None:
        tasks = await asyncio.gather(*(submit(s, idempotency_key="once") for _ in range(10)))
        assert len({t.id for t in tasks}) == 1
        assert len(await s.list_tasks(tenant="acme")) == 1
        # the losers' new sessions were rolled back with their inserts
        assert [x.id for x in await s.list_sessions(tenant="acme")] == [tasks[0].session_id]

    store.run(body)
