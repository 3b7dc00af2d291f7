"""The console's read views: task pages (keyset, filters), journal pages, session events,
the overview's aggregates, and operator keys."""

from __future__ import annotations

import pytest
from contract_support import StoreCase, claim, commit, submit

from tether import errors, types
from tether.store import Store, views


def test_task_pages_follow_the_cursor_and_filters(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        made = [
            await submit(s, tenant="acme" if i % 2 else "globex", agent=f"a{i % 3}")
            for i in range(7)
        ]
        newest_first = [t.id for t in reversed(made)]
        first = await s.page_tasks(views.TaskQuery(), limit=3)
        assert [t.id for t in first.tasks] == newest_first[:3]
        assert first.next_before is not None
        second = await s.page_tasks(views.TaskQuery(), before=first.next_before, limit=3)
        third = await s.page_tasks(views.TaskQuery(), before=second.next_before, limit=3)
        assert [t.id for t in second.tasks + third.tasks] == newest_first[3:]
        assert third.next_before is None

        acme = await s.page_tasks(views.TaskQuery(tenant="acme"), limit=10)
        assert [t.id for t in acme.tasks] == [t.id for t in reversed(made) if t.tenant == "acme"]
        both = await s.page_tasks(views.TaskQuery(tenant="globex", agent="a0"), limit=10)
        assert {(t.tenant, t.agent) for t in both.tasks} == {("globex", "a0")}
        one = await s.page_tasks(views.TaskQuery(session_id=made[2].session_id), limit=10)
        assert [t.id for t in one.tasks] == [made[2].id]
        got = await claim(s, task_id=made[4].id)
        running = await s.page_tasks(views.TaskQuery(status="running"), limit=10)
        assert [t.id for t in running.tasks] == [got.task.id]

        cut = made[4].created_at
        later = await s.page_tasks(views.TaskQuery(since=cut), limit=10)
        assert {t.id for t in later.tasks} == {t.id for t in made if t.created_at >= cut}
        earlier = await s.page_tasks(views.TaskQuery(until=cut), limit=10)
        assert {t.id for t in earlier.tasks} == {t.id for t in made if t.created_at < cut}
        future = await s.page_tasks(views.TaskQuery(since=types.now() + 3600), limit=10)
        assert future.tasks == [] and future.next_before is None
        with pytest.raises(errors.InvalidInput, match="1 to 500"):
            await s.page_tasks(views.TaskQuery(), limit=views.MAX_PAGE + 1)

    store.run(body)


def test_journal_pages_and_session_events(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        compacted = types.NewEvent("context.compacted", {"strategy": "summarize", "folded": 3})
        await s.commit_steps(
            [commit(got.lease, i, f"m{i}", events=(compacted,) if i == 2 else ()) for i in range(5)]
        )
        page = await s.journal_page(task.id, after_index=1, limit=2)
        assert [st.index for st in page.steps] == [2, 3]
        assert page.total == 5
        assert page.steps == (await s.load_journal(task.id))[2:4]
        assert (await s.journal_page(task.id, after_index=4)).steps == []
        with pytest.raises(errors.NotFound):
            await s.journal_page(task.id, tenant="globex")
        with pytest.raises(errors.NotFound):
            await s.journal_page("no-such-task")

        found = await s.session_events(task.session_id, "context.compacted", tenant="acme")
        assert [(e.task_id, e.data["folded"]) for e in found] == [(task.id, 3)]
        with pytest.raises(errors.NotFound):
            await s.session_events(task.session_id, "context.compacted", tenant="globex")

    store.run(body)


def test_overview_counts_the_window_and_scopes_the_tenant(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        since = types.now() - 1
        done = await submit(s, agent="writer")
        other = await submit(s, tenant="globex", agent="writer")
        got = await claim(s, task_id=done.id)
        started = types.NewEvent("step.started", step=0)
        completed = types.NewEvent("step.completed", step=0)
        await s.commit_steps([commit(got.lease, 0, "a", events=(started, completed))])
        await s.append_events(done.id, [types.NewEvent("step.started", step=1)], lease=got.lease)
        await s.record_attempt(
            got.lease,
            types.StepAttempt(
                done.id, 1, 1, {"type": "ToolFailed", "error_class": "tool"}, 0.1, "w1", types.now()
            ),
        )
        error = {"type": "ToolFailed", "error_class": "tool", "retryable": False, "message": "x"}
        await s.finish_task(got.lease, status="failed", error=error)
        held = await claim(s, worker="w2", task_id=other.id)
        await s.expire_lease(other.id)

        acme = await s.overview(tenant="acme", since=since)
        assert [(c.agent, c.status, c.count) for c in acme.statuses] == [("writer", "failed", 1)]
        assert [(f.step, f.started, f.completed) for f in acme.funnel] == [(0, 1, 1), (1, 1, 0)]
        assert {(e.source, e.type, e.error_class, e.count) for e in acme.errors} == {
            ("task", "ToolFailed", "tool", 1),
            ("retry", "ToolFailed", "tool", 1),
        }
        assert acme.stuck == [] and acme.workers == []

        everyone = await s.overview(since=since)
        assert sum(c.count for c in everyone.statuses) == 2
        assert [(x.task_id, x.worker, x.step) for x in everyone.stuck] == [(other.id, "w2", 0)]
        assert [(w.worker, w.leases) for w in everyone.workers] == [("w2", 1)]
        assert held.reason == "start" and everyone.runs == []

        empty = await s.overview(since=types.now() + 3600)
        assert empty.statuses == [] and empty.funnel == []
        assert [x.task_id for x in empty.stuck] == [other.id]  # leases are "now", not windowed

    store.run(body)


def test_operator_keys_are_marked(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        plain = await s.create_api_key("acme", "h1", prefix="tk_1")
        op = await s.create_api_key("*", "h2", prefix="tk_2", operator=True)
        assert (plain.operator, op.operator) == (False, True)
        found = await s.find_api_key("h2")
        assert found is not None and found.operator and found.to_public()["operator"] is True

    store.run(body)
