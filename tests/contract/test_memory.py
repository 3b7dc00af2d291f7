"""Vector memory: fenced writes, replacement by seq, cosine top-k, one vector size."""

from __future__ import annotations

import pytest
from contract_support import StoreCase, claim, submit

from tether import errors
from tether.store.base import MemoryItem, Store


def item(seq: int, vector: tuple[float, ...], text: str = "") -> MemoryItem:
    return MemoryItem(seq=seq, role="user", text=text or f"message {seq}", vector=vector)


def test_memory_is_fenced_searched_and_replaced(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        task = await submit(s)
        got = await claim(s)
        sid = task.session_id
        await s.add_memory(
            got.lease, sid, [item(1, (1.0, 0.0)), item(2, (0.0, 1.0)), item(3, (1.0, 1.0))]
        )
        hits = await s.search_memory(sid, (1.0, 0.1), 2)
        assert [h.item.seq for h in hits] == [1, 3]
        assert hits[0].score == pytest.approx(0.995037, abs=1e-5)
        assert hits[0].item.task_id == task.id
        # the same seq again replaces it (a re-run step writes the same items)
        await s.add_memory(got.lease, sid, [item(1, (0.0, 1.0), "moved again")])
        listed = await s.list_memory(sid)
        assert [(m.seq, m.text) for m in listed][:1] == [(1, "moved again")]
        assert len(listed) == 3
        # ties are broken by seq
        assert [h.item.seq for h in await s.search_memory(sid, (0.0, 1.0), 3)] == [1, 2, 3]
        with pytest.raises(errors.InvalidInput, match="2 dimensions"):
            await s.add_memory(got.lease, sid, [item(4, (1.0, 0.0, 0.0))])
        with pytest.raises(errors.InvalidInput, match="2 dimensions"):
            await s.search_memory(sid, (1.0, 0.0, 0.0), 1)
        other = await submit(s)
        with pytest.raises(errors.InvalidInput, match="its own session"):
            await s.add_memory(got.lease, other.session_id, [item(1, (1.0, 0.0))])
        await s.expire_lease(task.id)
        await claim(s, "w2", task_id=task.id)
        with pytest.raises(errors.LeaseLost):
            await s.add_memory(got.lease, sid, [item(5, (1.0, 0.0))])
        assert len(await s.list_memory(sid)) == 3
        assert await s.search_memory(other.session_id, (1.0, 0.0), 1) == []

    store.run(body)
