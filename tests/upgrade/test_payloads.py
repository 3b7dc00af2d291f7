"""Versioned payloads: upcasters one by one, and what a reader does with old and new rows.

The upcasters defined in this file are test-only: they pin the mechanism itself.
The shipped ones (payload version 1 → 2, where a step stores a reference to the
message it appended instead of a copy) are tested in ``tests/unit/store`` and
``test_payload_v2.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from upgrade_support import raw, with_store

from tether import errors, types
from tether.store import Store, payloads

# ---- the registry, upcaster by upcaster ---------------------------------------------


def _v1_to_v2(payload: Any) -> Any:
    """Test format 2: a message's ``content`` is a list of parts."""
    return {**payload, "content": [payload["content"]]}


def _v2_to_v3(payload: Any) -> Any:
    """Test format 3: the parts are objects."""
    return {**payload, "content": [{"text": part} for part in payload["content"]]}


def _registry() -> payloads.Upcasters:
    reg = payloads.Upcasters(current=3)
    reg.register("message", 1, _v1_to_v2)
    reg.register("message", 2, _v2_to_v3)
    return reg


def test_each_upcaster_alone() -> None:
    assert _v1_to_v2({"role": "user", "content": "hi"}) == {"role": "user", "content": ["hi"]}
    assert _v2_to_v3({"role": "user", "content": ["hi"]}) == {
        "role": "user",
        "content": [{"text": "hi"}],
    }


def test_an_old_payload_goes_through_every_step_in_order() -> None:
    reg = _registry()
    old = {"role": "user", "content": "hi"}
    assert reg.upcast("message", 1, old, table="messages", row="r") == {
        "role": "user",
        "content": [{"text": "hi"}],
    }
    assert reg.upcast("message", 2, {"role": "user", "content": ["a"]}, table="t", row="r") == {
        "role": "user",
        "content": [{"text": "a"}],
    }
    current = {"role": "user", "content": [{"text": "x"}]}
    assert reg.upcast("message", 3, current, table="t", row="r") is current


def test_a_newer_payload_names_table_row_versions_and_says_upgrade() -> None:
    with pytest.raises(errors.PayloadVersionError) as info:
        _registry().upcast("message", 4, {}, table="messages", row="(session_id s1, seq 7)")
    message = str(info.value)
    assert "table messages" in message and "(session_id s1, seq 7)" in message
    assert "payload version 4" in message and "up to 3" in message
    assert "upgrade tether" in message
    assert info.value.where == "infra" and not info.value.retryable


def test_a_missing_link_is_refused_never_passed_through() -> None:
    reg = _registry()
    assert not reg.readable("event", 1) and reg.missing("event", 1) == 1
    assert reg.readable("message", 1) and reg.missing("message", 0) == 0
    with pytest.raises(errors.PayloadVersionError, match="no upcaster from version 1"):
        reg.upcast("event", 1, {"x": 1}, table="events", row="(task_id t, seq 1)")
    with pytest.raises(errors.PayloadVersionError, match="no upcaster from version 0"):
        reg.upcast("message", 0, {"role": "user"}, table="messages", row="r")


def test_an_upcaster_that_raises_is_a_payload_version_error() -> None:
    reg = payloads.Upcasters(current=2)
    reg.register("step", 1, lambda p: p["missing"])
    with pytest.raises(errors.PayloadVersionError, match="from version 1 to 2 failed") as info:
        reg.upcast("step", 1, {}, table="steps", row="(task_id t, idx 0)")
    assert isinstance(info.value.__cause__, KeyError)


def test_registration_is_checked() -> None:
    reg = payloads.Upcasters(current=2)
    reg.register("message", 1, _v1_to_v2)
    with pytest.raises(errors.InvalidInput, match="is registered"):
        reg.register("message", 1, _v1_to_v2)
    with pytest.raises(errors.InvalidInput, match="must start below it"):
        reg.register("message", 2, _v1_to_v2)
    with pytest.raises(errors.InvalidInput, match="unknown payload kind"):
        reg.register("summary", 1, _v1_to_v2)  # type: ignore[arg-type]


def test_this_release_reads_its_own_format_with_no_upcaster() -> None:
    for kind in payloads.KINDS:
        assert payloads.REGISTRY.readable(kind, types.PAYLOAD_VERSION)
        assert not payloads.REGISTRY.readable(kind, types.PAYLOAD_VERSION + 1)


# ---- through the store, on both engines ---------------------------------------------


async def _one_step(store: Store) -> types.TaskRecord:
    """A task with its input (message 1), one committed model step writing message 2, an event."""
    task = await store.submit_task(types.NewTask(tenant="acme", agent="a", input="hello"))
    got = await store.claim_task("w1", lease_ttl=60.0, task_id=task.id)
    assert got is not None
    reply = types.Message(role="assistant", content="hi there")
    step = types.StepRecord(
        task_id=task.id,
        index=0,
        kind="model",
        name="chat",
        fingerprint="fp-0",
        status="completed",
        output={"message": reply.to_dict(), "finish_reason": "stop"},
        started_at=1.0,
        finished_at=2.0,
        usage=types.Usage(3, 4),
    )
    [result] = await store.commit_steps(
        [
            types.StepCommit(
                lease=got.lease,
                step=step,
                messages=(reply,),
                events=(types.NewEvent("step.completed", {"index": 0}, step=0),),
            )
        ]
    )
    assert isinstance(result, types.CommitResult)
    return task


def _pre_release_rows(url: str, task: types.TaskRecord) -> None:
    """Rewrite the rows as a made-up version 0 would have stored them."""
    raw(
        url,
        "UPDATE messages SET payload = ?, payload_version = 0 WHERE session_id = ? AND seq = 2",
        (json.dumps({"r": "assistant", "text": "hi there"}), task.session_id),
    )
    raw(
        url,
        "UPDATE steps SET output = ?, payload_version = 0 WHERE task_id = ? AND idx = 0",
        (json.dumps({"text": "hi there"}), task.id),
    )
    raw(
        url,
        "UPDATE events SET data = ?, payload_version = 0 WHERE task_id = ?",
        (json.dumps({"i": 0}), task.id),
    )


def _message_0_to_1(payload: Any) -> Any:
    return {"role": payload["r"], "content": payload["text"]}


def _step_0_to_1(payload: Any) -> Any:
    message = {"role": "assistant", "content": payload["output"]["text"]}
    return {**payload, "output": {"message": message, "finish_reason": "stop"}}


def _event_0_to_1(payload: Any) -> Any:
    return {"index": payload["i"]}


def test_old_rows_are_upcast_on_read(empty_store_url: str) -> None:
    url = empty_store_url
    task = with_store(url, _one_step)
    _pre_release_rows(url, task)

    async def read(store: Store) -> None:
        messages = await store.list_messages(task.session_id)
        assert [m.message for m in messages] == [
            types.Message(role="user", content="hello"),
            types.Message(role="assistant", content="hi there"),
        ]
        [step] = await store.load_journal(task.id)
        assert step.output == {
            "message": {"role": "assistant", "content": "hi there"},
            "finish_reason": "stop",
        }
        assert step.usage == types.Usage(3, 4) and step.message_seqs == (2,)
        events = await store.list_events(task.id)
        assert [e.data for e in events if e.name == "step.completed"] == [{"index": 0}]

    reg = payloads.REGISTRY
    with (
        reg.registered("message", 0, _message_0_to_1),
        reg.registered("step", 0, _step_0_to_1),
        reg.registered("event", 0, _event_0_to_1),
    ):
        with_store(url, read)
    assert reg.missing("message", 0) == 0  # the test-only upcasters are gone again


def test_old_rows_without_an_upcaster_fail_loudly(empty_store_url: str) -> None:
    url = empty_store_url
    task = with_store(url, _one_step)
    _pre_release_rows(url, task)

    async def read(store: Store) -> None:
        with pytest.raises(errors.PayloadVersionError) as info:
            await store.list_messages(task.session_id)
        assert "table messages" in str(info.value) and "seq 2" in str(info.value)
        with pytest.raises(errors.PayloadVersionError, match="table steps"):
            await store.load_journal(task.id)
        with pytest.raises(errors.PayloadVersionError, match="table events"):
            await store.list_events(task.id)

    with_store(url, read)


def test_rows_from_a_newer_tether_are_refused_not_emptied(empty_store_url: str) -> None:
    url = empty_store_url
    task = with_store(url, _one_step)
    newer = types.PAYLOAD_VERSION + 1
    raw(url, "UPDATE messages SET payload_version = ? WHERE seq = 2", (newer,))
    raw(url, "UPDATE steps SET payload_version = ?", (newer,))

    async def read(store: Store) -> None:
        with pytest.raises(errors.PayloadVersionError) as info:
            await store.list_messages(task.session_id)
        message = str(info.value)
        assert f"payload version {newer}" in message and "upgrade tether" in message
        assert task.session_id in message
        with pytest.raises(errors.PayloadVersionError, match=task.id):
            await store.load_journal(task.id)
        # rows still readable by this version stay readable
        assert len(await store.list_messages(task.session_id, upto_seq=1)) == 1

    with_store(url, read)
